import t from 'tap'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { bytesEqual, toHex } from '../../agent/codec/bytes.ts'
import { authorizeEvent, policyEvent } from '../../agent/ledger/builders.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import { encodeHead, headId, signHead, type BlockHead, type HeadFields } from '../../agent/ledger/head.ts'
import { MerkleTree } from '../../agent/ledger/merkle.ts'
import { encodeSyncResponse } from '../../agent/ledger/sync.ts'
import { expectExit, kin, lastJson } from '../enroll/_harness.ts'
import {
  followerOf,
  gossipFleet,
  homeLedger,
  nowSeconds,
  startKinLines,
  until,
  type GossipFleet,
  type TestFollower,
} from './_fleet.ts'

function signed(
  fleet: GossipFleet,
  fields: HeadFields,
  key: Uint8Array = fleet.l0.self.ledgerSeed,
): { head: BlockHead; bytes: Uint8Array } {
  const head = signHead(nodeCrypto, fields, key)
  return { head, bytes: encodeHead(head) }
}

/** A fresh event no ledger holds yet: an authorization of a made-up sensor by `signer`. */
function strayEvent(f: TestFollower, cn: string, seed: Uint8Array) {
  const now = nowSeconds()
  const self = f.follower.replica.ledger.ledger.state.currentBinding(cn)!
  return signEvent(
    nodeCrypto,
    authorizeEvent(
      nodeCrypto,
      self,
      {
        spkiHash: nodeCrypto.randomBytes(32),
        ledgerKey: nodeCrypto.ed25519KeyPair().publicKey,
        role: 'device',
        depth: 0,
        notAfter: now + 3600,
        kind: 'sensor',
        name: 'stray',
      },
      now,
    ),
    seed,
  )
}

// DESIGN.md "Blocks": a device refuses a head not signed by the miner or not consistent with one it holds, raises an
// alarm (a forking miner), and keeps its old head. The heads here are published as L0's services, past every ACL.
t.test('forged, rootless and inconsistent heads: refused, alarm raised, old head kept', async t => {
  const fleet = await gossipFleet(t, ['admin', 'member', 'device'])
  const lockF = await followerOf(t, fleet.devices[2]!.home)
  lockF.follower.start()
  const miner = fleet.services.miner.miner
  t.ok(await until(() => lockF.follower.replica.headId === miner.latestHeadId(), 15_000), 'the lock follows the miner')
  const held = lockF.follower.replica.head!
  const heldId = lockF.follower.replica.headId!
  const heldIdBytes = headId(nodeCrypto, held)
  const { topics } = fleet.services
  const alarmFor = async (code: string): Promise<boolean> =>
    until(() => lockF.alarms.some(a => a.code === code), 10_000)
  const next = {
    height: held.height + 1,
    prevHeadId: heldIdBytes,
    time: held.time + 1,
    treeSize: held.treeSize,
    root: held.root,
  }

  // 1. Not signed by the miner key (a stranger's key).
  const forged = signed(fleet, next, nodeCrypto.randomBytes(32))
  await fleet.services.publish(topics.head, forged.bytes, { retain: true })
  t.ok(await alarmFor('HEAD_SIGNATURE'), 'a head signed by another key raises HEAD_SIGNATURE')
  t.equal(lockF.follower.replica.headId, heldId, 'the old head is kept')
  const a1 = lockF.alarms.find(a => a.code === 'HEAD_SIGNATURE')!
  t.same(
    [a1.source, a1.offeredHead, a1.heldHead],
    ['head', toHex(forged.bytes), toHex(lockF.follower.replica.headBytes!)],
    'the alarm carries both heads as evidence',
  )

  // kin sync on another device meets the forged retained head: exit 1, yet it syncs to the real head by request.
  const phone = fleet.devices[1]!
  const run = await kin(['sync', '--home', phone.home, '--json'])
  expectExit(t, run, 1, 'kin sync exits 1 when it refused a head')
  const out = lastJson(run.stdout) as { ok: boolean; head: { height: number }; alarms: Array<{ code: string }> }
  t.same([out.ok, out.alarms.map(a => a.code)], [false, ['HEAD_SIGNATURE']])
  t.equal(out.head.height, held.height, "and still holds the miner's real head")

  // 2. Signed by the miner, but its root is not the root of the log the lock verified at that size.
  const rootless = signed(fleet, { ...next, root: nodeCrypto.randomBytes(32) })
  await fleet.services.publish(topics.head, rootless.bytes, { retain: true })
  t.ok(await alarmFor('HEAD_ROOT_MISMATCH'), 'a head over the same events with another root raises HEAD_ROOT_MISMATCH')
  t.equal(lockF.follower.replica.headId, heldId, 'the old head is kept')

  // 2b. An announcement whose events do not hash to the root its head signs (the head and the proof are right for another event).
  const admin = fleet.devices[0]!
  const adminState = lockF.follower.replica.ledger.ledger.state
  const promised = strayEvent(lockF, admin.cn, admin.ledgerSeed)
  const delivered = strayEvent(lockF, admin.cn, admin.ledgerSeed)
  const tree = new MerkleTree(nodeCrypto)
  for (const e of adminState.log.slice(0, held.treeSize)) tree.append(e.id)
  tree.append(promised.id)
  const bigger = signed(fleet, { ...next, treeSize: held.treeSize + 1, root: tree.root() })
  await fleet.services.publish(
    topics.events,
    encodeSyncResponse({
      headBytes: bigger.bytes,
      head: bigger.head,
      proofFrom: held.treeSize,
      consistencyProof: tree.consistencyProof(held.treeSize, held.treeSize + 1),
      from: held.treeSize,
      events: [delivered.bytes],
      more: false,
    }),
  )
  t.ok(
    await until(() => lockF.alarms.some(a => a.code === 'HEAD_ROOT_MISMATCH' && a.source === 'events'), 10_000),
    'events that do not hash to the signed root raise HEAD_ROOT_MISMATCH',
  )
  t.equal(lockF.follower.replica.headId, heldId, 'the old head is kept')
  t.notOk(
    lockF.follower.replica.ledger.ledger.state.has(delivered.idHex),
    'and the event is not adopted into the covered log',
  )

  // 3. Inconsistent with the held head: a second head at the same height, and a successor whose tree is not an extension.
  const twin = signed(fleet, { ...held, time: held.time + 5 })
  await fleet.services.publish(topics.head, twin.bytes, { retain: true })
  t.ok(await alarmFor('HEAD_FORK'), 'two different heads at one height raise HEAD_FORK')
  await fleet.services.publish(
    topics.events,
    encodeSyncResponse({
      headBytes: bigger.bytes,
      head: bigger.head,
      proofFrom: held.treeSize,
      consistencyProof: [nodeCrypto.randomBytes(32)],
      from: held.treeSize,
      events: [promised.bytes],
      more: false,
    }),
  )
  t.ok(await alarmFor('HEAD_INCONSISTENT'), 'a successor with a consistency proof that fails raises HEAD_INCONSISTENT')
  t.equal(lockF.follower.replica.headId, heldId, 'the old head is kept through all of it')
  t.ok(bytesEqual(lockF.follower.replica.headBytes!, encodeHead(held)))

  // 4. A signed head over more events than the miner then serves: the sync the lock sends after it shows a miner that went back.
  const ahead = signed(fleet, { ...next, treeSize: held.treeSize + 5, root: nodeCrypto.randomBytes(32) })
  await fleet.services.publish(topics.head, ahead.bytes, { retain: true })
  t.ok(await alarmFor('HEAD_ROLLBACK'), "a head the miner's own later answer does not reach raises HEAD_ROLLBACK")
  t.equal(lockF.alarms.find(a => a.code === 'HEAD_ROLLBACK')!.offeredHead, toHex(ahead.bytes))
  t.equal(lockF.follower.replica.headId, heldId, 'the old head is kept')

  // The real miner carries on: the lock still follows it.
  await fleet.services.miner.republishHead()
  const lockCn = fleet.devices[2]!.cn
  const policy = signEvent(
    nodeCrypto,
    policyEvent(
      adminState.currentBinding(admin.cn)!,
      adminState.currentBinding(lockCn)!,
      {
        subtree: false,
        maxHops: 6,
        maxHeadAge: 0,
        anchors: [],
        rules: [],
      },
      nowSeconds(),
    ),
    admin.ledgerSeed,
  )
  await fleet.services.miner.submit([policy.bytes], nowSeconds())
  await fleet.services.seal()
  t.ok(
    await until(
      () =>
        lockF.follower.replica.headId === miner.latestHeadId() &&
        lockF.follower.replica.ledger.ledger.state.has(policy.idHex),
      15_000,
    ),
    "after the alarms, the lock adopts the miner's next real head",
  )
  t.equal(lockF.follower.replica.head!.height, miner.latestHead()!.height)
})

t.test('kin sync --follow: one JSON line per head, a clean stop on SIGINT', async t => {
  const fleet = await gossipFleet(t, ['admin', 'device'])
  const lock = fleet.devices[1]!
  const proc = startKinLines(t, ['sync', '--home', lock.home, '--follow', '--json'])
  t.match(await proc.waitJson(d => d['following'] === true, 20_000), { following: true, cn: lock.cn })
  const current = fleet.services.miner.miner.latestHead()!
  const headLine = (height: number) => (d: Record<string, unknown>) =>
    (d['head'] as { height?: number } | undefined)?.height === height && d['following'] === undefined
  t.match(
    await proc.waitJson(headLine(current.height), 20_000),
    { head: { height: current.height, treeSize: current.treeSize } },
    'a line for the head it adopts on connecting',
  )
  const admin = fleet.devices[0]!
  const stateNow = fleet.services.ledger.ledger.state
  const policy = signEvent(
    nodeCrypto,
    policyEvent(
      stateNow.currentBinding(admin.cn)!,
      stateNow.currentBinding(lock.cn)!,
      {
        subtree: false,
        maxHops: 5,
        maxHeadAge: 0,
        anchors: [],
        rules: [],
      },
      nowSeconds(),
    ),
    admin.ledgerSeed,
  )
  await fleet.services.miner.submit([policy.bytes], nowSeconds())
  const head = (await fleet.services.seal())!
  t.match(
    await proc.waitJson(headLine(head.height), 20_000),
    { head: { height: head.height, treeSize: head.treeSize }, via: 'events', added: 1 },
    'a line for the next head, announced on the events topic',
  )
  proc.signal('SIGINT')
  const run = await proc.done
  t.equal(run.status, 0, 'SIGINT stops it with exit 0')
  const docs = run.stdout
    .trim()
    .split('\n')
    .map(l => JSON.parse(l) as Record<string, unknown>)
  t.match(docs.at(-1), { stopped: true, signal: 'SIGINT', alarms: 0 }, 'the last line says it stopped')
  t.ok(
    docs.some(d => d['status'] === 'online'),
    'a line said when it came online',
  )
  t.ok(homeLedger(lock.home).state.has(policy.idHex), 'the new event is in its ledger file')
})
