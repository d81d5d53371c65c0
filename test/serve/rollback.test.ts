// A running kin serve whose ledger.cbor is swapped for a copy from before a revocation (DESIGN.md "Storage": a ledger
// file that goes backwards against what the device verified is an alarm, not a new truth).
import t from 'tap'
import { kin } from '../enroll/_harness.ts'
import { spawn } from 'node:child_process'
import { copyFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { signedRevoke } from '../../agent/ledger/revoke.ts'
import { appendToHome } from '../helpers/home-fleet.ts'
import { makeServeHouse } from './_house.ts'

const KIN = fileURLToPath(new URL('../../bin/kin.mjs', import.meta.url))
const house = await makeServeHouse()
const lock = house.cn['L3.3'],
  guest = house.cn['L3.4']

t.test(
  'kin serve: a ledger file swapped for its pre-revocation copy raises LEDGER_ROLLBACK and the guest stays denied',
  async t => {
    const lockHome = await house.home(lock)
    const guestHome = await house.home(guest)
    t.teardown(() => {
      lockHome.remove()
      guestHome.remove()
    })
    const ledgerPath = `${lockHome.dir}/ledger.cbor`
    const beforeRevocation = `${lockHome.dir}/backup-ledger.cbor`
    copyFileSync(ledgerPath, beforeRevocation)

    const server = spawn(process.execPath, [KIN, 'serve', '--home', lockHome.dir, '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    t.teardown(() => {
      server.kill('SIGKILL')
    })
    const lines: Array<Record<string, unknown>> = []
    let wake: () => void = () => undefined
    createInterface({ input: server.stdout }).on('line', l => {
      lines.push(JSON.parse(l) as Record<string, unknown>)
      wake()
    })
    const exited = new Promise<number | null>(resolve => server.on('close', resolve))
    /** Waits (at most 60 s) for a line that `match` accepts. */
    const waitFor = async (match: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => {
      const deadline = Date.now() + 60_000
      for (;;) {
        const found = lines.find(match)
        if (found !== undefined) return found
        if (Date.now() > deadline) throw new Error(`no such line in ${JSON.stringify(lines)}`)
        await new Promise<void>(resolve => {
          wake = resolve
          setTimeout(resolve, 500)
        })
      }
    }
    const listening = await waitFor(l => l['listening'] === true)
    const target = `127.0.0.1:${listening['port']}`
    const access = () => kin(['access', '--home', guestHome.dir, '--target', target, '--action', 'unlock', '--json'])
    const allowed = await access()
    t.equal(allowed.status, 0, allowed.stdout + allowed.stderr)

    // The guest's parent revokes it; the lock's ledger file gets the event while it serves.
    const ledger = house.fleet.l0Ledger.state
    const parent = house.fleet.device(house.cn['L2.2'])
    const now = Math.floor(Date.now() / 1000)
    const revoke = signedRevoke(
      nodeCrypto,
      ledger,
      { cn: parent.cn, ledgerSeed: parent.secrets.ledgerSeed },
      guest,
      { reason: 'lost', effective: now, subtree: false },
      now,
    )
    await appendToHome(lockHome.home, [revoke])
    const revoked = await access()
    t.equal(revoked.status, 1)
    t.match(JSON.parse(revoked.stdout), { allow: false, code: 'ACCESS_REVOKED' })

    // Eve swaps the file for the older copy, atomically (a new inode), as a restore from a backup would.
    copyFileSync(beforeRevocation, `${ledgerPath}.eve`)
    renameSync(`${ledgerPath}.eve`, ledgerPath)
    const swapped = await access()
    t.equal(swapped.status, 1, 'still denied')
    t.match(
      JSON.parse(swapped.stdout),
      { allow: false, code: 'ACCESS_REVOKED' },
      'the revocation verified before stays in force',
    )
    const alarm = await waitFor(l => l['alarm'] !== undefined)
    t.match(alarm['alarm'], {
      code: 'LEDGER_ROLLBACK',
      source: 'ledger file',
      message: /went back: it lacks 1 of the \d+ events.*kin sync/,
    })

    // And overwritten in place (same inode, shorter): the same alarm is not repeated, the guest still denied.
    writeFileSync(ledgerPath, readFileSync(beforeRevocation))
    const overwritten = await access()
    t.match(
      JSON.parse(overwritten.stdout),
      { allow: false, code: 'ACCESS_REVOKED' },
      'overwritten in place: still denied',
    )

    server.kill('SIGTERM')
    t.equal(await exited, 0, 'clean shutdown')
    const audit = readFileSync(`${lockHome.dir}/audit.log`, 'utf8')
      .trim()
      .split('\n')
      .map(l => JSON.parse(l) as Record<string, unknown>)
    t.same(
      audit.filter(a => a['alarm'] !== undefined).map(a => a['alarm']),
      ['LEDGER_ROLLBACK'],
      'the alarm is in audit.log once',
    )
    t.same(
      audit.filter(a => a['code'] !== undefined).map(a => a['code']),
      ['ALLOW', 'ACCESS_REVOKED', 'ACCESS_REVOKED', 'ACCESS_REVOKED'],
      'next to the decisions',
    )
    t.same(
      lines.filter(l => l['decision'] !== undefined).map(l => (l['decision'] as Record<string, unknown>)['code']),
      ['ALLOW', 'ACCESS_REVOKED', 'ACCESS_REVOKED', 'ACCESS_REVOKED'],
    )
  },
)
