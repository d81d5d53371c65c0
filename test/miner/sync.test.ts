import t from 'tap'
import fc from 'fast-check'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { bytesEqual, toHex } from '../../agent/codec/bytes.ts'
import { decodeCbor, encodeCbor, type CborValue } from '../../agent/codec/cbor.ts'
import { KinError } from '../../agent/errors.ts'
import { headId, type BlockHead } from '../../agent/ledger/head.ts'
import { verifyConsistency } from '../../agent/ledger/merkle.ts'
import {
  MAX_SYNC_RESPONSE_BYTES,
  buildHeadAnnouncement,
  buildSyncResponse,
  decodeSyncRequest,
  decodeSyncResponse,
  encodeSyncRequest,
  encodeSyncResponse,
  type SyncResponse,
} from '../../agent/ledger/sync.ts'
import { T0, memoryStorage, openMiner, wideFleet } from './helpers.ts'
import { mineInParts } from '../../sim/memory-miner.ts'

const NOW = T0 + 5000
const DECODE = /^(DECODE_|UNKNOWN_)/

function codeOf(fn: () => unknown): string {
  try {
    fn()
    return 'returned'
  } catch (e) {
    return e instanceof KinError ? e.code : `NOT_A_KIN_ERROR: ${String(e)}`
  }
}

async function sealedMiner(phones = 12, cuts = [9, 30]) {
  const { f } = wideFleet(phones)
  const miner = await openMiner(f, memoryStorage())
  const heads = await mineInParts(miner, f.events, [...cuts, f.events.length], NOW, { sealAt: i => NOW + i })
  return { f, miner, heads }
}

t.test('sync requests: canonical [fromTreeSize, fromHeadId | null], strict decoding', async t => {
  const id = nodeCrypto.sha256(new Uint8Array([1]))
  t.same(decodeCbor(encodeSyncRequest({ fromTreeSize: 7, fromHeadId: id })), [7, id])
  t.same(decodeCbor(encodeSyncRequest({ fromTreeSize: 0, fromHeadId: undefined })), [0, null])
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.option(fc.uint8Array({ minLength: 32, maxLength: 32 }), { nil: undefined }),
      (n, h) => {
        const back = decodeSyncRequest(encodeSyncRequest({ fromTreeSize: n, fromHeadId: h }))
        return (
          back.fromTreeSize === n && (h === undefined ? back.fromHeadId === undefined : bytesEqual(back.fromHeadId!, h))
        )
      },
    ),
  )
  const bad: Array<[string, CborValue | Uint8Array]> = [
    ['not an array', 5],
    ['one item', [5]],
    ['three items', [5, null, 1]],
    ['text size', ['5', null]],
    ['short id', [5, new Uint8Array(31)]],
    ['id as text', [5, 'abc']],
    ['false for null', [5, false]],
  ]
  for (const [name, v] of bad)
    t.match(
      codeOf(() => decodeSyncRequest(encodeCbor(v as CborValue))),
      DECODE,
      name,
    )
  t.equal(
    codeOf(() => decodeSyncRequest(new Uint8Array([0x82, 0x18, 0x05, 0xf6]))),
    'DECODE_NONCANONICAL',
    '5 written in two bytes',
  )
  t.equal(
    codeOf(() => decodeSyncRequest(new Uint8Array([0x82, 0x05, 0xf6, 0x00]))),
    'DECODE_TRAILING',
  )
  t.equal(
    codeOf(() => decodeSyncRequest(new Uint8Array(100))),
    'DECODE_OVERSIZE',
  )
  t.throws(() => encodeSyncRequest({ fromTreeSize: -1, fromHeadId: undefined }), RangeError)
})

t.test(
  "the miner answers from the device's head: consistency proof, events in log order, a count cap and a more flag",
  async t => {
    const { miner, heads } = await sealedMiner()
    const [h0, h1, h2] = heads as [BlockHead, BlockHead, BlockHead]
    const log = miner.ledger.ledger.state.log

    const fresh = buildSyncResponse(miner, { fromTreeSize: 0, fromHeadId: undefined }, 10)
    t.equal(fresh.proofFrom, 0)
    t.same(fresh.consistencyProof, [])
    t.equal(fresh.from, 0)
    t.equal(fresh.events.length, 10)
    t.equal(fresh.more, true)
    t.ok(bytesEqual(fresh.headBytes, miner.latestHeadBytes()!))

    const fromH0 = buildSyncResponse(miner, { fromTreeSize: h0.treeSize, fromHeadId: headId(nodeCrypto, h0) }, 1000)
    t.equal(fromH0.proofFrom, h0.treeSize)
    t.ok(
      verifyConsistency(nodeCrypto, h0.treeSize, h2.treeSize, h0.root, h2.root, fromH0.consistencyProof),
      "RFC 9162 §2.1.4.2 from the device's head",
    )
    t.same(
      fromH0.events.map(toHex),
      log.slice(h0.treeSize).map(e => toHex(e.bytes)),
    )
    t.equal(fromH0.more, false)

    // Events from one place, the proof from another: a second round of a catch-up.
    const round2 = buildSyncResponse(miner, { fromTreeSize: h0.treeSize + 4, fromHeadId: headId(nodeCrypto, h0) }, 3)
    t.equal(round2.proofFrom, h0.treeSize)
    t.equal(round2.from, h0.treeSize + 4)
    t.same(
      round2.events.map(toHex),
      log.slice(h0.treeSize + 4, h0.treeSize + 7).map(e => toHex(e.bytes)),
    )

    const unknown = buildSyncResponse(miner, { fromTreeSize: 3, fromHeadId: new Uint8Array(32).fill(5) })
    t.equal(unknown.proofFrom, 0, 'an unknown head gets no proof (the device then refuses the head as unproven)')
    t.same(unknown.consistencyProof, [])

    const ahead = buildSyncResponse(miner, { fromTreeSize: h2.treeSize + 50, fromHeadId: headId(nodeCrypto, h1) })
    t.equal(ahead.from, h2.treeSize, 'a device ahead of the miner gets the head and no events')
    t.same(ahead.events, [])
    t.equal(ahead.more, false)

    // Events not yet sealed are never sent: the head must cover every event of a response.
    const { f } = wideFleet(12)
    const extra = f.enroll(f.l0, { role: 'admin', name: 'late', time: T0 + 4000 })
    await miner.submit(
      f.events.slice(-2).map(e => e.bytes),
      NOW,
    )
    t.ok(miner.unsealed, `events for ${extra.slice(0, 6)}… are in the log, unsealed`)
    const capped = buildSyncResponse(miner, { fromTreeSize: h1.treeSize, fromHeadId: headId(nodeCrypto, h1) })
    t.equal(capped.from + capped.events.length, h2.treeSize)

    const back = decodeSyncResponse(encodeSyncResponse(fromH0))
    t.same(back, fromH0, 'decode(encode(response)) = response')
    const announcement = buildHeadAnnouncement(nodeCrypto, miner, h1)
    t.equal(announcement.proofFrom, h1.treeSize)
    t.equal(announcement.from, h1.treeSize)
    t.equal(buildHeadAnnouncement(nodeCrypto, miner, undefined).from, 0)
    t.throws(() => buildSyncResponse(miner, { fromTreeSize: 0, fromHeadId: undefined }, 0), RangeError)
  },
)

t.test(
  'a response stays under its byte budget (the 64 KiB MQTT payload limit) yet always carries one event',
  async t => {
    const { miner } = await sealedMiner(40, [])
    const full = buildSyncResponse(miner, { fromTreeSize: 0, fromHeadId: undefined }, 1024)
    t.ok(encodeSyncResponse(full).length <= MAX_SYNC_RESPONSE_BYTES)
    for (const budget of [600, 2000, 8000]) {
      const r = buildSyncResponse(miner, { fromTreeSize: 1, fromHeadId: undefined }, 1024, budget)
      t.ok(r.events.length >= 1, `budget ${budget}: at least one event`)
      t.ok(
        encodeSyncResponse(r).length <= budget || r.events.length === 1,
        `budget ${budget}: ${encodeSyncResponse(r).length} bytes, ${r.events.length} events`,
      )
      t.equal(r.more, true)
    }
  },
)

t.test('sync responses: strict decoding, every inconsistency refused with a code', async t => {
  const { miner, heads } = await sealedMiner()
  const good = buildSyncResponse(
    miner,
    { fromTreeSize: heads[0]!.treeSize, fromHeadId: headId(nodeCrypto, heads[0]!) },
    5,
  )
  const items = (r: SyncResponse): CborValue[] => [
    r.headBytes,
    r.proofFrom,
    r.consistencyProof,
    r.from,
    r.events,
    r.more,
  ]
  const variant = (i: number, v: CborValue): Uint8Array => {
    const a = items(good)
    a[i] = v
    return encodeCbor(a)
  }
  const cases: Array<[string, Uint8Array]> = [
    ['five items', encodeCbor(items(good).slice(0, 5))],
    ['head not a byte string', variant(0, 'head')],
    ['head garbage', variant(0, new Uint8Array([1, 2, 3]))],
    ['proofFrom past the head', variant(1, good.head.treeSize + 1)],
    ['proof hash of 31 bytes', variant(2, [new Uint8Array(31)])],
    ['events past the head', variant(3, good.head.treeSize - 1)],
    ['more wrong', variant(5, !good.more)],
    ['more not a boolean', variant(5, 1)],
    ['empty event', variant(4, [new Uint8Array(0)])],
    ['event as text', variant(4, ['x'])],
  ]
  for (const [name, bytes] of cases)
    t.match(
      codeOf(() => decodeSyncResponse(bytes)),
      DECODE,
      name,
    )
  const enc = encodeSyncResponse(good)
  t.equal(
    codeOf(() => decodeSyncResponse(enc, 100)),
    'DECODE_OVERSIZE',
  )
  // Any byte flipped: a coded error or a response that decodes (events are opaque here); never anything else.
  let refused = 0
  for (let p = 0; p < enc.length; p++) {
    const bad = enc.slice()
    bad[p]! ^= 0x01
    const code = codeOf(() => decodeSyncResponse(bad))
    if (code.startsWith('NOT_A_KIN_ERROR')) t.fail(`flip at ${p}: ${code}`)
    if (code !== 'returned') refused++
  }
  t.ok(
    refused > 0,
    `${refused} of ${enc.length} flips refused by the decoder alone; the rest fail signature or root checks`,
  )
})

t.test('before the first seal the miner has nothing to answer with: HEAD_MISSING', async t => {
  const { f } = wideFleet(1)
  const miner = await openMiner(f, memoryStorage())
  await miner.submit(
    f.events.map(e => e.bytes),
    NOW,
  )
  t.equal(
    codeOf(() => buildSyncResponse(miner, { fromTreeSize: 0, fromHeadId: undefined })),
    'HEAD_MISSING',
  )
})
