import t from 'tap'
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { expectExit, kin } from '../enroll/_harness.ts'
import { gossipFleet, startKinLines } from '../gossip/_fleet.ts'

// DESIGN.md "Storage": a ledger file that goes backwards against what the agent verified is an alarm, not a new truth.
// A `kin serve` that follows L0 decides on the replica it holds in memory: a file swapped for an older copy behind
// its back raises LEDGER_ROLLBACK and changes no decision, and what the follower adopts afterwards still counts.
const fleet = await gossipFleet(t, ['admin', 'device', 'guest', 'guest'])
const [admin, lock, first, second] = fleet.devices as [
  (typeof fleet.devices)[0],
  (typeof fleet.devices)[0],
  (typeof fleet.devices)[0],
  (typeof fleet.devices)[0],
]

t.test(
  'kin serve following L0: its ledger file swapped for an older copy, it keeps deciding on what it follows',
  async t => {
    const serve = startKinLines(t, ['serve', '--home', lock.home, '--port', '0', '--json'])
    const listening = await serve.waitJson(d => d['listening'] === true && d['following'] === true, 60_000)
    await serve.waitJson(d => d['broker'] === 'online', 60_000)
    const target = `127.0.0.1:${String(listening['port'])}`
    const unlock = (home: string) => kin(['access', '--home', home, '--target', target, '--action', 'unlock', '--json'])
    /** Asks until the answer's exit status is `status` (gossip takes a moment), at most 60 s. */
    const until = async (home: string, status: number) => {
      const end = Date.now() + 60_000
      let run = await unlock(home)
      while (run.status !== status && Date.now() < end) {
        await new Promise(r => setTimeout(r, 500))
        run = await unlock(home)
      }
      return run
    }
    expectExit(t, await until(first.home, 0), 0, 'the first guest is let in')
    expectExit(t, await until(second.home, 0), 0, 'the second guest is let in')
    const ledgerFile = join(lock.home, 'ledger.cbor')
    const older = readFileSync(ledgerFile)

    expectExit(
      t,
      await kin(['revoke', '--home', admin.home, first.cn, '--reason', 'lost', '--json']),
      0,
      'the admin revokes the first guest',
    )
    expectExit(t, await until(first.home, 1), 1, 'the lock learns it by gossip and refuses the first guest')

    // Someone with the disk in hand puts back the copy from before the revocation.
    writeFileSync(`${ledgerFile}.older`, older)
    renameSync(`${ledgerFile}.older`, ledgerFile)
    const alarm = await serve.waitJson(
      d => (d['alarm'] as { code?: string } | undefined)?.code === 'LEDGER_ROLLBACK',
      60_000,
    )
    t.match(String((alarm['alarm'] as { message: string }).message), /kin sync|backup/, 'the alarm says what to do')
    const stillOut = await unlock(first.home)
    expectExit(t, stillOut, 1, 'the first guest is still refused')
    t.match(stillOut.stdout, /ACCESS_REVOKED/)

    // A revocation after the swap reaches the replica the lock decides on.
    expectExit(
      t,
      await kin(['revoke', '--home', admin.home, second.cn, '--reason', 'retired', '--json']),
      0,
      'the admin revokes the second guest',
    )
    const secondOut = await until(second.home, 1)
    expectExit(t, secondOut, 1, 'the lock refuses the second guest too: what it follows still counts')
    t.match(secondOut.stdout, /ACCESS_REVOKED/)
    serve.signal('SIGTERM')
    await serve.done
  },
)
