import t from 'tap'
import { bytesEqual } from '../../agent/codec/bytes.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { authorizeEvent, policyEvent } from '../../agent/ledger/builders.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import { coveredBytes, followerOf, gossipFleet, homeLedger, nowSeconds, until, type TestFollower } from './_fleet.ts'

// DESIGN.md "Blocks" and "MQTT topics": the miner's heads and events gossip to every device over L0's broker.
t.test('gossip to ten devices: one head everywhere, byte-identical ledgers for the events it covers', async t => {
  const fleet = await gossipFleet(t, [
    'admin',
    'member',
    'member',
    'device',
    'device',
    'device',
    'guest',
    'device',
    'member',
    'device',
  ])
  const followers: TestFollower[] = []
  for (const d of fleet.devices) followers.push(await followerOf(t, d.home))
  for (const f of followers) f.follower.start()
  const minerHead = () => fleet.services.miner.miner.latestHeadId()
  const converged = () =>
    followers.every(
      f => f.follower.replica.headId === minerHead() && f.follower.replica.pendingOwnEvents().length === 0,
    )
  t.ok(await until(converged, 20_000), "every device adopts the miner's head from the retained head and a sync")

  // A burst: the admin and the members sign authorizations and policies; each submits its own through its follower.
  const now = nowSeconds()
  const submitted: EncodedEvent[] = []
  const signers = fleet.devices
    .map((d, i) => ({ d, f: followers[i]! }))
    .filter(x => x.d.role === 'admin' || x.d.role === 'member')
  await Promise.all(
    signers.map(async ({ d, f }, k) => {
      for (let i = 0; i < 5; i++) {
        const state = f.follower.replica.ledger.ledger.state
        const self = state.currentBinding(d.cn)!
        const unsigned = authorizeEvent(
          nodeCrypto,
          self,
          {
            spkiHash: nodeCrypto.randomBytes(32),
            ledgerKey: nodeCrypto.ed25519KeyPair().publicKey,
            role: 'device',
            depth: 0,
            notAfter: now + 86400,
            kind: 'sensor',
            name: `sensor ${k}.${i}`,
          },
          now,
        )
        const e = signEvent(nodeCrypto, unsigned, d.ledgerSeed)
        const out = await f.follower.submit([e])
        t.equal(out.accepted.length, 1, `${d.cn.slice(0, 6)} appends its authorization ${i}`)
        submitted.push(e)
      }
    }),
  )
  const admin = fleet.devices[0]!
  const lock = fleet.devices[3]!
  const adminState = followers[0]!.follower.replica.ledger.ledger.state
  const policy = signEvent(
    nodeCrypto,
    policyEvent(
      adminState.currentBinding(admin.cn)!,
      adminState.currentBinding(lock.cn)!,
      {
        subtree: false,
        maxHops: 4,
        maxHeadAge: 0,
        anchors: [],
        rules: [{ action: 'unlock', roles: ['member'], from: 0, to: 0 }],
      },
      now,
    ),
    admin.ledgerSeed,
  )
  await followers[0]!.follower.submit([policy])
  submitted.push(policy)

  t.ok(
    await until(() => submitted.every(e => fleet.services.ledger.ledger.state.has(e.idHex)), 20_000),
    'the miner accepted every submitted event',
  )
  await fleet.services.seal()
  t.ok(await until(converged, 20_000), "every device ends on the miner's latest head with nothing left to submit")
  const head = fleet.services.miner.miner.latestHead()!
  const l0Bytes = coveredBytes(fleet.l0.dir, head.treeSize)
  for (const [i, f] of followers.entries()) {
    const d = fleet.devices[i]!
    t.equal(f.follower.replica.coveredSize, head.treeSize, `${d.cn.slice(0, 6)} covers ${head.treeSize} events`)
    t.ok(
      bytesEqual(coveredBytes(d.home, head.treeSize), l0Bytes),
      `${d.cn.slice(0, 6)}'s ledger file is byte-identical to the miner's for the covered events`,
    )
    t.equal(homeLedger(d.home).size, head.treeSize, 'and holds nothing else')
    t.same(f.alarms, [], 'no alarm')
  }
  t.ok(
    followers.some(f => f.heads.some(h => h.via === 'events' && h.added > 0)),
    'new heads arrived as announcements on the events topic',
  )
})
