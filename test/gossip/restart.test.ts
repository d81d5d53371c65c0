import t, { type Test } from 'tap'
import { bytesEqual } from '../../agent/codec/bytes.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { authorizeEvent } from '../../agent/ledger/builders.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import { startKin, type KinProcess } from '../enroll/_harness.ts'
import { coveredBytes, followerOf, gossipHomes, homeLedger, nowSeconds, until, type TestFollower } from './_fleet.ts'

async function startBroker(t: Test, home: string, port: number): Promise<{ proc: KinProcess; port: number }> {
  const proc = startKin(['broker', '--home', home, '--port', String(port), '--json'], { timeoutMs: 120_000 })
  t.teardown(() => proc.kill())
  const first = JSON.parse(await proc.firstLine) as { port: number }
  return { proc, port: first.port }
}

// The broker dies (SIGKILL: no goodbye, no flush) in the middle of a burst of submissions and comes back on the same
// port: devices reconnect with backoff, resubmit what no head covers yet, and all end on one head with every event.
t.test('L0 killed and restarted mid-burst: every device converges to one head, no submitted event is lost', async t => {
  const homes = await gossipHomes(t, ['admin', 'member', 'member', 'device', 'device', 'member'])
  let broker = await startBroker(t, homes.l0.dir, 0)
  const devices = homes.writeHomes(`mqtts://127.0.0.1:${broker.port}`)
  const followers: TestFollower[] = []
  for (const d of devices) followers.push(await followerOf(t, d.home, { syncRoundTimeoutMs: 2000 }))
  for (const f of followers) f.follower.start()
  t.ok(
    await until(
      () =>
        followers.every(
          f => f.follower.replica.head !== undefined && f.follower.replica.pendingOwnEvents().length === 0,
        ),
      20_000,
    ),
    'every device holds a head before the burst',
  )

  const signers = devices
    .map((d, i) => ({ d, f: followers[i]! }))
    .filter(x => x.d.role === 'admin' || x.d.role === 'member')
  const submitted: EncodedEvent[] = []
  const now = nowSeconds()
  const burst = async (round: number): Promise<void> => {
    await Promise.all(
      signers.map(async ({ d, f }, k) => {
        const self = f.follower.replica.ledger.ledger.state.currentBinding(d.cn)!
        const e = signEvent(
          nodeCrypto,
          authorizeEvent(
            nodeCrypto,
            self,
            {
              spkiHash: nodeCrypto.randomBytes(32),
              ledgerKey: nodeCrypto.ed25519KeyPair().publicKey,
              role: 'device',
              depth: 0,
              notAfter: now + 86400,
              kind: 'sensor',
              name: `s${round}.${k}`,
            },
            now,
          ),
          d.ledgerSeed,
        )
        const out = await f.follower.submit([e])
        if (out.accepted.length === 1) submitted.push(e)
      }),
    )
  }
  for (let round = 0; round < 6; round++) {
    await burst(round)
    await new Promise(r => setTimeout(r, 40))
  }
  // Kill it while submissions are in flight.
  const inFlight = burst(6)
  process.kill(broker.proc.pid!, 'SIGKILL')
  await inFlight
  await broker.proc.done
  t.ok(await until(() => followers.every(f => f.follower.status !== 'online'), 10_000), 'every follower saw L0 go away')
  for (let round = 7; round < 10; round++) await burst(round)
  t.ok(
    followers.every(f => f.follower.replica.pendingOwnEvents().length > 0 || !signers.some(s => s.f === f)),
    "events signed while L0 is down wait in the signers' ledgers",
  )
  broker = await startBroker(t, homes.l0.dir, broker.port)
  for (let round = 10; round < 13; round++) await burst(round)

  t.equal(submitted.length, 13 * signers.length, "every signed event entered its signer's own ledger")
  const l0Has = (ids: string[]) => {
    const l = homeLedger(homes.l0.dir)
    return ids.every(id => l.state.has(id))
  }
  t.ok(
    await until(() => l0Has(submitted.map(e => e.idHex)), 30_000),
    "L0's ledger holds every submitted event in the end",
  )
  const converged = (): boolean => {
    const heads = new Set(followers.map(f => f.follower.replica.headId))
    const f0 = followers[0]!.follower.replica
    return (
      heads.size === 1 &&
      followers.every(f => f.follower.replica.pendingOwnEvents().length === 0) &&
      f0.coveredSize === homeLedger(homes.l0.dir).size
    )
  }
  t.ok(await until(converged, 30_000), "every device ends on one head that covers L0's whole log, nothing left pending")
  const size = followers[0]!.follower.replica.coveredSize
  const l0Bytes = coveredBytes(homes.l0.dir, size)
  for (const [i, f] of followers.entries()) {
    t.ok(
      bytesEqual(coveredBytes(devices[i]!.home, size), l0Bytes),
      `device ${i}: byte-identical to L0's ledger for the ${size} covered events`,
    )
    t.same(f.alarms, [], `device ${i}: no alarm across the restart`)
    t.ok(
      submitted.every(e => f.follower.replica.ledger.ledger.state.has(e.idHex)),
      `device ${i} holds every submitted event`,
    )
  }
  broker.proc.kill()
  await broker.proc.done
})
