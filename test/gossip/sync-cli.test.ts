import t from 'tap'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { expectExit, kin, lastJson } from '../enroll/_harness.ts'
import { gossipFleet } from './_fleet.ts'

t.test('kin sync: usage and errors — L0\'s home, no broker, an unreachable broker, --help', async t => {
  const fleet = await gossipFleet(t, ['admin'])
  const [l0Run, help, bad] = await Promise.all([
    kin(['sync', '--home', fleet.l0.dir, '--json']),
    kin(['sync', '--help']),
    kin(['sync', '--json']),
  ])
  expectExit(t, l0Run, 2, 'on L0\'s home: exit 2')
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
  const [admin, lock] = fleet.devices as Array<typeof fleet.devices[0]>
  const runs = await Promise.all([
    kin(['ledger', 'bundle', '--home', admin!.home, '--json']),
    kin(['ledger', 'bundle', 'not-a-name', '--home', admin!.home, '--json']),
    kin(['ledger', 'bundle', lock!.cn, '--home', admin!.home, '--known-size', 'zero', '--json']),
    kin(['revoke', '--home', admin!.home, lock!.cn, '--reason', 'bored', '--json']),
    kin(['revoke', '--home', admin!.home, lock!.cn, '--effective', 'yesterday', '--json']),
    kin(['revoke', '--home', admin!.home, '--json']),
  ])
  const expected = [/give the CN/, /not a device name/, /--known-size/, /--reason must be one of compromised, lost, retired/, /--effective expects/, /give the CN to revoke/]
  runs.forEach((r, i) => {
    expectExit(t, r, 2, `usage error ${i}`)
    t.match(lastJson(r.stdout), { ok: false, code: 'USAGE', message: expected[i] })
  })
  t.notOk(existsSync(join(admin!.home, 'ledger.lock')), 'nothing was left locked')
})
