import t from 'tap'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodeStorage } from '../../runtime/node/storage.ts'
import { bytesEqual, concatBytes, toHex } from '../../agent/codec/bytes.ts'
import { encodeCbor } from '../../agent/codec/cbor.ts'
import { KinError } from '../../agent/errors.ts'
import { encodeHead, headId, signHead, type BlockHead } from '../../agent/ledger/head.ts'
import { MerkleTree } from '../../agent/ledger/merkle.ts'
import { scanRecords } from '../../agent/ledger/store.ts'
import type { Miner } from '../../agent/ledger/miner.ts'
import type { Replica, SyncOutcome } from '../../agent/ledger/replica.ts'
import {
  buildHeadAnnouncement,
  buildSyncResponse,
  encodeSyncResponse,
  type SyncResponse,
} from '../../agent/ledger/sync.ts'
import type { LedgerFleet } from '../helpers/ledger-fleet.ts'
import {
  T0,
  memoryStorage,
  minerKeyOf,
  minerSecret,
  openMiner,
  openReplica,
  prng,
  rejection,
  wideFleet,
  type MemoryStorage,
} from './helpers.ts'

const NOW = T0 + 5000

function restart(s: MemoryStorage): MemoryStorage {
  const copy = memoryStorage()
  for (const [name, bytes] of s.files) copy.files.set(name, bytes.slice())
  return copy
}

function fileHex(s: MemoryStorage, name = 'ledger.cbor'): string {
  return toHex(s.files.get(name) ?? new Uint8Array(0))
}

/** Syncs `replica` from `miner` in rounds of at most `max` events; returns the statuses seen. */
async function catchUp(
  replica: Replica,
  miner: Miner,
  key: Uint8Array,
  max: number,
  outcomes: SyncOutcome[] = [],
): Promise<string[]> {
  const statuses: string[] = []
  for (let round = 0; round < 10_000; round++) {
    const out = await replica.applySyncResponse(
      encodeSyncResponse(buildSyncResponse(miner, replica.syncRequest(), max)),
      key,
      NOW,
    )
    outcomes.push(out)
    statuses.push(out.status)
    if (!out.more) return statuses
  }
  throw new Error('catch-up did not end')
}

/** A miner fed the fleet in `cuts`, sealing after each cut; the heads in order. */
async function minerWithHeads(
  f: LedgerFleet,
  cuts: number[],
  storage = memoryStorage(),
): Promise<{ miner: Miner; heads: BlockHead[]; storage: MemoryStorage }> {
  const miner = await openMiner(f, storage)
  const heads: BlockHead[] = []
  let at = 0
  for (const cut of cuts) {
    await miner.submit(
      f.events.slice(at, cut).map(e => e.bytes),
      NOW,
    )
    const h = await miner.seal(NOW + heads.length)
    if (h !== undefined) heads.push(h)
    at = cut
  }
  return { miner, heads, storage }
}

t.test("a replica follows a miner through many heads and ends with the miner's ledger bytes", async t => {
  const { f } = wideFleet(20)
  const key = minerKeyOf(f)
  const minerStorage = memoryStorage()
  const miner = await openMiner(f, minerStorage)
  const deviceStorage = memoryStorage()
  const replica = await openReplica(deviceStorage, nodeCrypto, key)
  const rand = prng(11)
  let previous: BlockHead | undefined
  let at = 0,
    heads = 0
  while (at < f.events.length) {
    const n = 1 + rand(6)
    await miner.submit(
      f.events.slice(at, at + n).map(e => e.bytes),
      NOW,
    )
    at += n
    const head = (await miner.seal(NOW + heads))!
    heads++
    // What the broker publishes on the events topic after each seal.
    const out = await replica.applySyncResponse(
      encodeSyncResponse(buildHeadAnnouncement(nodeCrypto, miner, previous)),
      key,
      NOW + heads,
    )
    t.equal(out.status, 'advanced', `head ${head.height}`)
    t.equal(replica.coveredSize, head.treeSize)
    t.equal(replica.headId, toHex(headId(nodeCrypto, head)))
    t.equal(fileHex(deviceStorage), fileHex(minerStorage), `same ledger bytes at head ${head.height}`)
    previous = head
  }
  t.ok(heads > 10, `${heads} heads followed`)
  t.same(replica.pendingOwnEvents(), [])
  t.equal(replica.confirmedAt, NOW + heads)

  // The same head again, and an older one: nothing to do, no alarm.
  const again = await replica.applyHead(miner.latestHeadBytes()!, key, NOW + 100)
  t.equal(again.status, 'unchanged')
  t.equal(replica.confirmedAt, NOW + 100, 'hearing the current head again refreshes confirmedAt')
  t.equal((await replica.applyHead(encodeHead(miner.headAt(2)!), key, NOW)).status, 'stale')
  const r = await replica.applySyncResponse(
    encodeSyncResponse(buildSyncResponse(miner, replica.syncRequest())),
    key,
    NOW,
  )
  t.equal(r.status, 'unchanged')

  // Reopened: the head is back and still matches the ledger's prefix.
  await replica.close()
  await replica.ledger.close()
  const reopened = await openReplica(restart(deviceStorage), nodeCrypto, key)
  t.equal(reopened.headId, toHex(headId(nodeCrypto, miner.latestHead()!)))
  t.equal(reopened.coveredSize, f.events.length)
  t.equal(reopened.confirmedAt, NOW + heads, 'confirmedAt persists with each adopted head')
})

t.test('catch-up in several rounds, with the miner sealing new heads between rounds', async t => {
  const { f } = wideFleet(25)
  const key = minerKeyOf(f)
  const total = f.events.length
  const { miner, storage: minerStorage } = await minerWithHeads(f, [40, 70])
  const deviceStorage = memoryStorage()
  const replica = await openReplica(deviceStorage)
  const statuses = await catchUp(replica, miner, key, 8)
  t.same(
    statuses,
    [...Array(Math.ceil(70 / 8) - 1).fill('partial'), 'advanced'],
    `${statuses.length} rounds of at most 8 events`,
  )
  t.equal(replica.coveredSize, 70)

  // Rounds that straddle new heads: the head of each response is newer than the one before.
  let at = 70
  const req = replica.syncRequest()
  let out = await replica.applySyncResponse(encodeSyncResponse(buildSyncResponse(miner, req, 5)), key, NOW)
  t.equal(out.status, 'unchanged')
  await miner.submit(
    f.events.slice(at, at + 12).map(e => e.bytes),
    NOW,
  )
  at += 12
  await miner.seal(NOW + 10)
  out = await replica.applySyncResponse(
    encodeSyncResponse(buildSyncResponse(miner, replica.syncRequest(), 5)),
    key,
    NOW,
  )
  t.equal(out.status, 'partial')
  await miner.submit(
    f.events.slice(at).map(e => e.bytes),
    NOW,
  )
  await miner.seal(NOW + 11)
  const rest = await catchUp(replica, miner, key, 5)
  t.equal(rest[rest.length - 1], 'advanced')
  t.equal(replica.coveredSize, total)
  t.equal(fileHex(deviceStorage), fileHex(minerStorage))

  // A gap (a response for somewhere the replica has not reached) is not an error: it asks again.
  const fresh = await openReplica(memoryStorage())
  const gap = buildSyncResponse(miner, { fromTreeSize: 10, fromHeadId: undefined }, 5)
  t.equal((await fresh.applySyncResponse(encodeSyncResponse(gap), key, NOW)).status, 'need-sync')
  t.equal(fresh.coveredSize, 0)
})

t.test('a forged head is refused (HEAD_SIGNATURE) and the old head kept', async t => {
  const { f } = wideFleet(6)
  const key = minerKeyOf(f)
  const { miner } = await minerWithHeads(f, [10, f.events.length])
  const device = memoryStorage()
  const replica = await openReplica(device)
  await replica.applySyncResponse(
    encodeSyncResponse(buildSyncResponse(miner, { fromTreeSize: 0, fromHeadId: undefined }, 1000)),
    key,
    NOW,
  )
  const held = replica.headId
  const before = { ledger: fileHex(device), sync: fileHex(device, 'sync.cbor') }

  const stranger = nodeCrypto.ed25519KeyPair(nodeCrypto.sha256(new Uint8Array([42]))).secretKey
  const latest = miner.latestHead()!
  const byStranger = signHead(
    nodeCrypto,
    { ...latest, height: latest.height + 1, prevHeadId: headId(nodeCrypto, latest) },
    stranger,
  )
  t.equal(await rejection(replica.applyHead(encodeHead(byStranger), key, NOW)), 'HEAD_SIGNATURE')
  const flipped = encodeHead(latest)
  flipped[flipped.length - 5]! ^= 0x10
  t.equal(await rejection(replica.applyHead(flipped, key, NOW)), 'HEAD_SIGNATURE')
  const response = buildSyncResponse(miner, replica.syncRequest())
  const forgedResponse: SyncResponse = { ...response, headBytes: encodeHead(byStranger), head: byStranger }
  t.equal(await rejection(replica.applySyncResponse(encodeSyncResponse(forgedResponse), key, NOW)), 'HEAD_SIGNATURE')
  t.equal(
    await rejection(replica.applyHead(encodeHead(latest), new Uint8Array(32).fill(1), NOW)),
    'GENESIS_MISMATCH',
    'a miner key other than genesis names',
  )
  t.equal(replica.headId, held)
  t.same({ ledger: fileHex(device), sync: fileHex(device, 'sync.cbor') }, before, 'nothing written')
})

t.test('a head whose events do not hash to its root is refused (HEAD_ROOT_MISMATCH), the old head kept', async t => {
  const { f } = wideFleet(8)
  const key = minerKeyOf(f)
  const { miner, heads } = await minerWithHeads(f, [12, f.events.length])
  const device = memoryStorage()
  const replica = await openReplica(device)
  const first = buildSyncResponse(miner, { fromTreeSize: 0, fromHeadId: undefined }, 1000)
  // Head 1 with head 0's events only is impossible (the decoder checks the range); swap two independent events instead.
  const swapped = [...first.events]
  const a = swapped[4]!,
    b = swapped[5]!
  swapped[4] = b
  swapped[5] = a
  t.equal(
    await rejection(replica.applySyncResponse(encodeSyncResponse({ ...first, events: swapped }), key, NOW)),
    'HEAD_ROOT_MISMATCH',
  )
  t.equal(replica.head, undefined)
  t.equal(fileHex(device), '', 'nothing written')
  // A valid event that is not the miner's (another fleet device's, re-sent in its place) is caught the same way.
  const other = wideFleet(8, 'another tag')
  const replaced = [...first.events]
  replaced[replaced.length - 1] = other.f.events[other.f.events.length - 1]!.bytes
  t.equal(
    await rejection(replica.applySyncResponse(encodeSyncResponse({ ...first, events: replaced }), key, NOW)),
    'HEAD_ROOT_MISMATCH',
  )

  const ok = await replica.applySyncResponse(encodeSyncResponse(first), key, NOW)
  t.equal(ok.status, 'advanced')
  t.equal(replica.headId, toHex(headId(nodeCrypto, heads[1]!)))
})

t.test(
  'heads inconsistent with the held one: a forking miner is refused with its code and the evidence, the old head kept',
  async t => {
    const { f } = wideFleet(8)
    const key = minerKeyOf(f)
    const honest = await minerWithHeads(f, [10, 20])
    // A forking miner: same key, same fleet, another order after the first 8 events (still a valid ledger).
    const forkOrder = [...f.events.slice(0, 8), f.events[9]!, f.events[8]!, ...f.events.slice(10)]
    const forkStorage = memoryStorage()
    const fork = await openMiner(f, forkStorage)
    const forkHeads: BlockHead[] = []
    for (const cut of [10, 20, 30]) {
      await fork.submit(
        forkOrder.slice(cut - 10, cut).map(e => e.bytes),
        NOW,
      )
      forkHeads.push((await fork.seal(NOW + forkHeads.length))!)
    }
    const device = memoryStorage()
    const replica = await openReplica(device)
    await catchUp(replica, honest.miner, key, 1000)
    t.equal(replica.head!.height, 1)
    const held = replica.headId
    const before = fileHex(device) + fileHex(device, 'sync.cbor')

    // Same height, other head.
    let err: unknown
    try {
      await replica.applyHead(encodeHead(forkHeads[1]!), key, NOW)
    } catch (e) {
      err = e
    }
    t.ok(err instanceof KinError && err.code === 'HEAD_FORK', 'two heads at one height: HEAD_FORK')
    const detail = (err as KinError).detail!
    t.equal(detail.heldHead, toHex(encodeHead(honest.heads[1]!)), 'the alarm carries the held head')
    t.equal(detail.offeredHead, toHex(encodeHead(forkHeads[1]!)), 'and the offered one: together, evidence')

    // The fork's next head names its own predecessor, not the held one.
    t.equal(await rejection(replica.applyHead(encodeHead(forkHeads[2]!), key, NOW)), 'HEAD_FORK')

    // The fork's response with a proof from the held tree size: the proof fails.
    const forkResponse = buildSyncResponse(fork, { fromTreeSize: 20, fromHeadId: headId(nodeCrypto, forkHeads[1]!) })
    t.equal(forkResponse.proofFrom, 20)
    t.equal(
      await rejection(
        replica.applySyncResponse(
          encodeSyncResponse({ ...forkResponse, head: forkHeads[2]!, headBytes: encodeHead(forkHeads[2]!) }),
          key,
          NOW,
        ),
      ),
      'HEAD_FORK',
    )
    const farFork = signHead(
      nodeCrypto,
      { ...forkHeads[2]!, height: 5, prevHeadId: new Uint8Array(32).fill(3) },
      minerSecret(f),
    )
    t.equal(
      await rejection(
        replica.applySyncResponse(
          encodeSyncResponse({ ...forkResponse, head: farFork, headBytes: encodeHead(farFork) }),
          key,
          NOW,
        ),
      ),
      'HEAD_INCONSISTENT',
      'a later head whose tree does not extend the held one',
    )

    // An older head over another tree, right below the held one: the held head does not name it.
    t.equal(await rejection(replica.applyHead(encodeHead(forkHeads[0]!), key, NOW)), 'HEAD_FORK')
    // A later head whose tree is smaller than the held one.
    const shrunk = signHead(
      nodeCrypto,
      { ...honest.heads[0]!, height: 4, prevHeadId: new Uint8Array(32).fill(9), time: NOW + 50 },
      minerSecret(f),
    )
    t.equal(await rejection(replica.applyHead(encodeHead(shrunk), key, NOW)), 'HEAD_ROLLBACK')

    // The fork answering a request it cannot place: its head directly follows the held height and names another head.
    const unplaced = buildSyncResponse(fork, replica.syncRequest())
    t.equal(unplaced.proofFrom, 0)
    t.equal(await rejection(replica.applySyncResponse(encodeSyncResponse(unplaced), key, NOW)), 'HEAD_FORK')

    t.equal(replica.headId, held, 'the old head is kept')
    t.equal(fileHex(device) + fileHex(device, 'sync.cbor'), before, 'nothing written')
    // The honest miner goes on. An answer to a request it cannot place (an unknown head id) proves nothing either
    // way: the replica asks again, without an alarm.
    await honest.miner.submit(
      f.events.slice(20).map(e => e.bytes),
      NOW,
    )
    await honest.miner.seal(NOW + 9)
    const blind = buildSyncResponse(honest.miner, { fromTreeSize: 20, fromHeadId: new Uint8Array(32).fill(1) })
    t.equal((await replica.applySyncResponse(encodeSyncResponse(blind), key, NOW)).status, 'need-sync')
    t.equal((await catchUp(replica, honest.miner, key, 1000)).pop(), 'advanced')
  },
)

t.test('every byte of a sync response flipped: never adopted, never a non-coded throw', async t => {
  const { f } = wideFleet(3)
  const key = minerKeyOf(f)
  const { miner, heads } = await minerWithHeads(f, [6, f.events.length])
  // A replica at head 0 (a miner that only got that far signs the very same head: same key, events and time).
  const atHead0 = memoryStorage()
  const r0 = await openReplica(atHead0)
  await r0.applySyncResponse(
    encodeSyncResponse(buildSyncResponse(await minerAt(f, 6), { fromTreeSize: 0, fromHeadId: undefined })),
    key,
    NOW,
  )
  t.equal(r0.headId, toHex(headId(nodeCrypto, heads[0]!)))
  await r0.close()
  await r0.ledger.close()
  const announcement = encodeSyncResponse(buildHeadAnnouncement(nodeCrypto, miner, heads[0]))
  const honest = restart(atHead0)
  const reference = await openReplica(honest)
  t.equal(
    (await reference.applySyncResponse(announcement, key, NOW)).status,
    'advanced',
    'the unflipped announcement advances',
  )
  const codes = new Set<string>()
  const statuses = new Set<string>()
  for (let p = 0; p < announcement.length; p++) {
    const s = restart(atHead0)
    const replica = await openReplica(s)
    const bad = announcement.slice()
    bad[p]! ^= 0x01
    try {
      const out = await replica.applySyncResponse(bad, key, NOW)
      statuses.add(out.status)
      if (out.status === 'advanced') t.fail(`flip at ${p} was adopted`)
    } catch (e) {
      if (!(e instanceof KinError)) t.fail(`flip at ${p}: ${String(e)}`)
      else codes.add(e.code)
    }
    if (replica.head!.height !== 0) t.fail(`flip at ${p}: the held head changed`)
  }
  t.ok(
    codes.has('HEAD_SIGNATURE') && codes.has('HEAD_ROOT_MISMATCH'),
    `codes: ${[...codes].sort().join(', ')}; statuses: ${[...statuses].sort().join(', ')}`,
  )
})

t.test('ten replicas fed the same heads in different batchings end with identical ledger bytes', async t => {
  const { f } = wideFleet(12)
  const key = minerKeyOf(f)
  const total = f.events.length
  const cuts = [3, 17, 18, 33, total]
  // The miner as the broker runs it: after each seal, the announcement goes out on the events topic.
  const minerStorage = memoryStorage()
  const miner = await openMiner(f, minerStorage)
  const announcements: Uint8Array[] = []
  let previous: BlockHead | undefined
  let at = 0
  for (const cut of cuts) {
    await miner.submit(
      f.events.slice(at, cut).map(e => e.bytes),
      NOW,
    )
    const head = (await miner.seal(NOW + announcements.length))!
    announcements.push(
      encodeSyncResponse(
        buildHeadAnnouncement(
          nodeCrypto,
          miner,
          previous,
          previous === undefined ? 1000 : 1 + announcements.length * 4,
        ),
      ),
    )
    previous = head
    at = cut
  }
  const rewritten: number[] = []
  for (let i = 0; i < 10; i++) {
    const storage = memoryStorage()
    const replica = await openReplica(storage)
    const rand = prng(100 + i)
    if (i % 3 === 1) {
      // A device that already holds part of the fleet, appended in its own order before it hears from the miner.
      await replica.applySyncResponse(announcements[0]!, key, NOW)
      const own = f.events.slice(3, 17)
      const shuffled = [...own].sort(() => rand(3) - 1)
      const r = await replica.appendLocal(shuffled)
      t.equal(r.accepted.length, 14, `replica ${i}: 14 local events in its own order`)
    }
    const seen: string[] = []
    const outcomes: SyncOutcome[] = []
    for (const a of announcements) {
      if (rand(4) === 0) continue
      const out = await replica.applySyncResponse(a, key, NOW)
      outcomes.push(out)
      seen.push(out.status)
      if (out.status === 'need-sync' && rand(2) === 0) await catchUp(replica, miner, key, 1 + rand(9), outcomes)
    }
    const statuses = await catchUp(replica, miner, key, 1 + i * 3, outcomes)
    if (outcomes.some(o => o.rewritten)) rewritten.push(i)
    t.equal(replica.coveredSize, total, `replica ${i} covered (${seen.join(' ')} | ${statuses.length} rounds)`)
    t.equal(fileHex(storage), fileHex(minerStorage), `replica ${i}: the miner's ledger bytes`)
  }
  t.same(rewritten, [1, 4, 7], 'the replicas with local events in their own order rewrote their file into miner order')
})

/** A miner holding (and having sealed) the first `n` events of `f`. */
async function minerAt(f: LedgerFleet, n: number): Promise<Miner> {
  return (await minerWithHeads(f, [n])).miner
}

t.test(
  'local events the miner ordered differently: the ledger file is rewritten in miner order, local-only events kept after',
  async t => {
    const { f, members } = wideFleet(6)
    const key = minerKeyOf(f)
    const total = f.events.length
    const device = memoryStorage()
    const replica = await openReplica(device)
    await replica.applySyncResponse(
      encodeSyncResponse(buildSyncResponse(await minerAt(f, 3), { fromTreeSize: 0, fromHeadId: undefined })),
      key,
      NOW,
    )
    t.equal(replica.coveredSize, 3)
    // The device appended phone 1's enrollment before phone 0's; the miner has them in fleet order.
    const phone0 = f.events.slice(3, 7)
    const phone1 = f.events.slice(7, 11)
    await replica.appendLocal([...phone1, ...phone0])
    t.same(
      replica.pendingOwnEvents().map(e => e.idHex),
      [...phone1, ...phone0].map(e => e.idHex),
      'uncovered: to resubmit after reconnect',
    )
    // A device event the miner never gets: kept, after the covered prefix.
    const { miner, storage: minerStorage } = await minerWithHeads(f, [3, total])
    const late = f.enroll(members[0]!, { role: 'device', name: 'local only', time: T0 + 4000 })
    const lateEvents = f.events.slice(-2)
    t.equal((await replica.appendLocal(lateEvents)).accepted.length, 2)
    const out = await replica.applySyncResponse(
      encodeSyncResponse(buildSyncResponse(miner, replica.syncRequest(), 1000)),
      key,
      NOW,
    )
    t.equal(out.status, 'advanced')
    t.equal(out.rewritten, true, "the device's order differed: rewritten")
    t.equal(out.added, total - 3 - 8, 'events the device lacked')
    t.same(out.dropped, [])
    const records = scanRecords(device.files.get('ledger.cbor')!).records.map(r => toHex(r.bytes))
    const minerRecords = scanRecords(minerStorage.files.get('ledger.cbor')!).records.map(r => toHex(r.bytes))
    t.same(records.slice(0, total), minerRecords, "covered prefix = the miner's file")
    t.same(
      records.slice(total),
      lateEvents.map(e => toHex(e.bytes)),
      `then the local-only events (${late.slice(0, 6)}…)`,
    )
    t.same(
      replica.pendingOwnEvents().map(e => e.idHex),
      lateEvents.map(e => e.idHex),
    )
    // The rewritten state is the same ledger, not a copy: the PersistentLedger's Ledger object is unchanged and reopens.
    await replica.close()
    await replica.ledger.close()
    const again = await openReplica(restart(device))
    t.equal(again.coveredSize, total)
    t.equal(again.ledger.ledger.size, total + 2)
  },
)

t.test(
  "a local event that loses a conflict in the miner's log is dropped and reported, with what builds on it",
  async t => {
    const { f, laptop, members } = wideFleet(3)
    const key = minerKeyOf(f)
    const device = memoryStorage()
    const replica = await openReplica(device)
    await replica.applySyncResponse(
      encodeSyncResponse(
        buildSyncResponse(await minerAt(f, f.events.length), { fromTreeSize: 0, fromHeadId: undefined }),
      ),
      key,
      NOW,
    )
    // A new device authorized twice for one CN: by phone 0 on the device, by phone 1 at the miner.
    const original = f.sign(
      f.authorizeUnsigned(members[0]!, { role: 'device', time: T0 + 3000 }).unsigned,
      members[0]!,
      false,
    )
    const twin = f.twinAuthorize(original, members[1]!, T0 + 3001)
    const tail = f.rekey(f.l0, laptop, T0 + 3600, false)
    await replica.appendLocal([original])
    const { miner } = await minerWithHeads(f, [f.events.length])
    await miner.submit([twin.bytes, tail.bytes], NOW)
    await miner.seal(NOW + 5)
    const out = await replica.applySyncResponse(
      encodeSyncResponse(buildSyncResponse(miner, replica.syncRequest())),
      key,
      NOW,
    )
    t.equal(out.status, 'advanced')
    t.equal(out.rewritten, true)
    t.same(
      out.dropped.map(d => [d.idHex, d.code]),
      [[original.idHex, 'CN_EXISTS']],
      "the miner's log first wins; the local one is reported",
    )
    t.same(replica.pendingOwnEvents(), [])
    t.ok(replica.ledger.ledger.state.has(twin.idHex))
  },
)

t.test('a bare head is adopted when the ledger already holds its events in order, else need-sync', async t => {
  const { f } = wideFleet(4)
  const key = minerKeyOf(f)
  const { miner, heads } = await minerWithHeads(f, [5, 12, f.events.length])
  const replica = await openReplica(memoryStorage())
  t.equal((await replica.applyHead(encodeHead(heads[0]!), key, NOW)).status, 'need-sync', 'no events yet')
  await replica.appendLocal(f.events.slice(0, 12))
  t.equal(
    (await replica.applyHead(encodeHead(heads[1]!), key, NOW)).status,
    'advanced',
    'events already here, in order',
  )
  t.equal(replica.coveredSize, 12)
  t.equal((await replica.applyHead(encodeHead(heads[0]!), key, NOW)).status, 'stale')
  t.equal((await replica.applyHead(encodeHead(heads[2]!), key, NOW)).status, 'need-sync')
  t.equal((await catchUp(replica, miner, key, 4)).pop(), 'advanced')
  t.equal(await rejection(replica.applyHead(new Uint8Array([1, 2, 3]), key, NOW)), 'DECODE_TRAILING')
})

t.test('crash between the ledger write and the sync file: the replica reopens on its old head and goes on', async t => {
  const { f } = wideFleet(5)
  const key = minerKeyOf(f)
  const { miner, heads } = await minerWithHeads(f, [8, f.events.length])
  const device = memoryStorage()
  const replica = await openReplica(device)
  await replica.applySyncResponse(
    encodeSyncResponse(buildSyncResponse(await minerAt(f, 8), { fromTreeSize: 0, fromHeadId: undefined })),
    key,
    NOW,
  )
  const oldSync = device.files.get('sync.cbor')!.slice()
  t.equal(replica.coveredSize, 8)
  t.equal(replica.head!.height, 0)
  await replica.applySyncResponse(encodeSyncResponse(buildHeadAnnouncement(nodeCrypto, miner, heads[0])), key, NOW)
  t.equal(replica.coveredSize, f.events.length)
  const crashed = restart(device)
  crashed.files.set('sync.cbor', oldSync)
  const reopened = await openReplica(crashed, nodeCrypto, key)
  t.equal(reopened.coveredSize, 8, 'the old head still matches the (longer) ledger')
  t.equal(reopened.pendingOwnEvents().length, f.events.length - 8)
  const out = await reopened.applySyncResponse(
    encodeSyncResponse(buildSyncResponse(miner, reopened.syncRequest())),
    key,
    NOW,
  )
  t.equal(out.status, 'advanced')
  t.equal(out.rewritten, false)
  t.equal(out.added, 0, 'the events were already written, in order')
  t.equal(fileHex(crashed), fileHex(device))

  // A ledger that lost covered events no longer matches the sync file: refused, never silently resynced.
  const lost = restart(device)
  const records = scanRecords(device.files.get('ledger.cbor')!).records
  lost.files.set('ledger.cbor', concatBytes(...records.slice(0, 6).map(r => r.bytes)))
  t.equal(await rejection(openReplica(lost)), 'HEAD_ROOT_MISMATCH')
  const swapped = restart(device)
  const bytes = records.map(r => r.bytes)
  const a = bytes[4]!,
    b = bytes[5]!
  bytes[4] = b
  bytes[5] = a
  swapped.files.set('ledger.cbor', concatBytes(...bytes))
  t.equal(await rejection(openReplica(swapped)), 'HEAD_ROOT_MISMATCH')
  const garbage = restart(device)
  garbage.files.set('sync.cbor', encodeCbor([2, new Uint8Array(3), 0]))
  t.equal(await rejection(openReplica(garbage)), 'STORAGE_DAMAGED')
  const otherKey = nodeCrypto.ed25519KeyPair(new Uint8Array(32).fill(4)).publicKey
  t.equal(await rejection(openReplica(restart(device), nodeCrypto, otherKey)), 'HEAD_SIGNATURE')
})

t.test('node storage: miner and replica on disk, fsync and atomic replace, across restarts', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'kin-miner-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const { f } = wideFleet(8)
  const key = minerKeyOf(f)
  const l0 = nodeStorage(join(dir, 'l0'))
  let miner = await openMiner(f, l0)
  await miner.submit(
    f.events.slice(0, 20).map(e => e.bytes),
    NOW,
  )
  const h0 = (await miner.seal(NOW))!
  const deviceDir = join(dir, 'lock')
  let replica = await openReplica(nodeStorage(deviceDir), nodeCrypto, key)
  await replica.applySyncResponse(encodeSyncResponse(buildSyncResponse(miner, replica.syncRequest(), 7)), key, NOW)
  await catchUp(replica, miner, key, 7)
  t.equal(replica.coveredSize, 20)
  await miner.close()
  await replica.close()
  await replica.ledger.close()

  miner = await openMiner(f, nodeStorage(join(dir, 'l0')))
  t.ok(bytesEqual(encodeHead(miner.latestHead()!), encodeHead(h0)))
  await miner.submit(
    f.events.slice(20).map(e => e.bytes),
    NOW,
  )
  const h1 = (await miner.seal(NOW + 1))!
  t.equal(h1.height, 1)
  replica = await openReplica(nodeStorage(deviceDir), nodeCrypto, key)
  t.equal(replica.coveredSize, 20)
  await catchUp(replica, miner, key, 7)
  t.equal(replica.coveredSize, f.events.length)
  const minerFile = await readFile(join(dir, 'l0', 'ledger.cbor'))
  const deviceFile = await readFile(join(deviceDir, 'ledger.cbor'))
  t.ok(minerFile.equals(deviceFile), 'identical ledger files on disk')
  const tree = MerkleTree.fromIds(
    nodeCrypto,
    replica.ledger.ledger.state.log.map(e => e.id),
  )
  t.ok(bytesEqual(tree.root(), h1.root))
  await miner.close()
  await replica.close()
  await replica.ledger.close()
})

t.test("a heartbeat head over the same tree advances a replica's head time, by announcement or on its own", async t => {
  const { f } = wideFleet(2)
  const key = minerKeyOf(f)
  const { miner, heads } = await minerWithHeads(f, [f.events.length])
  const a = await openReplica(memoryStorage())
  const b = await openReplica(memoryStorage())
  for (const r of [a, b])
    await r.applySyncResponse(encodeSyncResponse(buildSyncResponse(miner, r.syncRequest())), key, NOW)
  const beat = (await miner.seal(NOW + 600, { heartbeatAfter: 300 }))!
  const viaEvents = await a.applySyncResponse(
    encodeSyncResponse(buildHeadAnnouncement(nodeCrypto, miner, heads[0])),
    key,
    NOW + 601,
  )
  t.equal(viaEvents.status, 'advanced')
  t.equal(viaEvents.added, 0)
  t.equal(
    (await b.applyHead(encodeHead(beat), key, NOW + 601)).status,
    'advanced',
    'the ledger already holds the (same) tree',
  )
  for (const r of [a, b]) {
    t.equal(r.head!.time, NOW + 600)
    t.equal(r.coveredSize, heads[0]!.treeSize)
  }
})
