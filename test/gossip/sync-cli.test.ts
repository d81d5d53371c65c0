import t from 'tap'
import { existsSync, lstatSync, readFileSync, renameSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
import { expectExit, kin, lastJson } from '../enroll/_harness.ts'
import { gossipFleet } from './_fleet.ts'

t.test("kin sync: usage and errors — L0's home, no broker, an unreachable broker, --help", async t => {
  const fleet = await gossipFleet(t, ['admin'])
  const [l0Run, help, bad] = await Promise.all([
    kin(['sync', '--home', fleet.l0.dir, '--json']),
    kin(['sync', '--help']),
    kin(['sync', '--json']),
  ])
  expectExit(t, l0Run, 2, "on L0's home: exit 2")
  t.match(lastJson(l0Run.stdout), { ok: false, code: 'BAD_ARGUMENT' })
  expectExit(t, help, 0, '--help')
  t.match(help.stdout, /--follow/)
  expectExit(t, bad, 2, 'no --home: exit 2')
  await fleet.stop()
  const down = await kin(['sync', '--home', fleet.devices[0]!.home, '--timeout', '2s', '--json'])
  expectExit(t, down, 2, 'L0 down: exit 2')
  t.match(lastJson(down.stdout), { ok: false, code: /^BROKER_(UNREACHABLE|TIMEOUT)$/ })
  t.notOk(existsSync(join(fleet.devices[0]!.home, 'ledger.lock')), 'the lock is released on errors too')
})

t.test('kin ledger bundle and kin revoke: usage errors exit 2 and name the problem', async t => {
  const fleet = await gossipFleet(t, ['admin', 'device'])
  const [admin, lock] = fleet.devices as Array<(typeof fleet.devices)[0]>
  const runs = await Promise.all([
    kin(['ledger', 'bundle', '--home', admin!.home, '--json']),
    kin(['ledger', 'bundle', 'not-a-name', '--home', admin!.home, '--json']),
    kin(['ledger', 'bundle', lock!.cn, '--home', admin!.home, '--known-size', 'zero', '--json']),
    kin(['revoke', '--home', admin!.home, lock!.cn, '--reason', 'bored', '--json']),
    kin(['revoke', '--home', admin!.home, lock!.cn, '--effective', 'yesterday', '--json']),
    kin(['revoke', '--home', admin!.home, '--json']),
  ])
  const expected = [
    /give the CN/,
    /not a device name/,
    /--known-size/,
    /--reason must be one of compromised, lost, retired/,
    /--effective expects/,
    /give the CN to revoke/,
  ]
  runs.forEach((r, i) => {
    expectExit(t, r, 2, `usage error ${i}`)
    t.match(lastJson(r.stdout), { ok: false, code: 'USAGE', message: expected[i] })
  })
  t.notOk(existsSync(join(admin!.home, 'ledger.lock')), 'nothing was left locked')
})

t.test(
  'kin sync never writes through a symlink planted at ledger.cbor (FILE_NOT_REGULAR; the link target is untouched)',
  async t => {
    const fleet = await gossipFleet(t, ['admin'])
    const home = fleet.devices[0]!.home
    const ledger = join(home, 'ledger.cbor')
    const elsewhere = join(home, 'elsewhere.cbor')
    renameSync(ledger, elsewhere)
    symlinkSync(elsewhere, ledger)
    const before = readFileSync(elsewhere)
    const run = await kin(['sync', '--home', home, '--timeout', '20s', '--json'])
    expectExit(t, run, 2, 'refused: exit 2')
    t.match(lastJson(run.stdout), { ok: false, code: 'FILE_NOT_REGULAR', message: /is a symlink/ })
    t.same(readFileSync(elsewhere), before, 'nothing was written through the link')
    t.ok(lstatSync(ledger).isSymbolicLink(), 'the link is left for the owner to look at')
    t.notOk(existsSync(join(home, 'ledger.lock')), 'the lock is released')
  },
)
