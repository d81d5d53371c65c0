import t from 'tap'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { bytesEqual, concatBytes, toHex } from '../../agent/codec/bytes.ts'
import { decodeCbor } from '../../agent/codec/cbor.ts'
import { KinError } from '../../agent/errors.ts'
import { checkRecord, scanRecords } from '../../agent/ledger/store.ts'
import {
  encodeHead,
  genesisPrevHeadId,
  headId,
  signHead,
  verifyHeadSignature,
  type BlockHead,
} from '../../agent/ledger/head.ts'
import { merkleRootOfIds, verifyConsistency, verifyInclusion } from '../../agent/ledger/merkle.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import { genesisEvent } from '../../agent/ledger/builders.ts'
import { HEADS_RECORD_PREFIX, Miner, decodeHeadsRecord, encodeHeadsRecord } from '../../agent/ledger/miner.ts'
import { PersistentLedger } from '../../agent/ledger/persistent.ts'
import { LedgerFleet } from '../helpers/ledger-fleet.ts'
import {
  T0,
  memoryStorage,
  minerKeyOf,
  minerSecret,
  openMiner,
  prng,
  rejection,
  wideFleet,
  type MemoryStorage,
} from './helpers.ts'

const NOW = T0 + 5000

/** A copy of every file in `s`, in fresh storage (a machine restarted on the same disk). */
function restart(s: MemoryStorage): MemoryStorage {
  const copy = memoryStorage()
  for (const [name, bytes] of s.files) copy.files.set(name, bytes.slice())
  return copy
}

/** Byte offsets of the records of a CBOR-sequence file. */
function recordsOf(file: Uint8Array): Uint8Array[] {
  return scanRecords(file).records.map(r => r.bytes)
}

function sameHead(a: BlockHead | undefined, b: BlockHead | undefined): boolean {
  return a !== undefined && b !== undefined && bytesEqual(encodeHead(a), encodeHead(b))
}

t.test('submit appends in log order and seal signs RFC 9162 heads over the tree', async t => {
  const { f } = wideFleet(6)
  const storage = memoryStorage()
  const miner = await openMiner(f, storage)
  t.equal(miner.latestHead(), undefined, 'no head before the first seal')
  t.equal(await miner.seal(NOW), undefined, 'an empty log is not sealed')

  // Out of order within the batch: every event comes after something that links to it, retried until it fits.
  const reversed = [...f.events].reverse().map(e => e.bytes)
  const r = await miner.submit(reversed, NOW)
  t.equal(r.accepted.length, f.events.length, 'all accepted')
  t.same(r.refused, [])
  t.same(r.pending, [])
  const log = miner.ledger.ledger.state.log
  t.same(
    r.accepted.map(e => e.idHex),
    log.map(e => e.idHex),
    'accepted come back in log order',
  )
  log.forEach((e, i) => t.equal(miner.indexOf(e.idHex), i))
  t.equal(miner.unsealed, true)

  const head = (await miner.seal(NOW))!
  t.equal(head.height, 0)
  t.ok(bytesEqual(head.prevHeadId, genesisPrevHeadId()))
  t.equal(head.treeSize, log.length)
  t.ok(
    bytesEqual(
      head.root,
      merkleRootOfIds(
        nodeCrypto,
        log.map(e => e.id),
      ),
    ),
    'root = MTH over the event ids in file order (RFC 9162 §2.1.1)',
  )
  t.ok(verifyHeadSignature(nodeCrypto, head, minerKeyOf(f)), 'signed with the key genesis names')
  t.equal(miner.unsealed, false)
  t.equal(await miner.seal(NOW + 1), undefined, 'nothing new: no head')

  const again = await miner.submit(
    f.events.slice(0, 3).map(e => e.bytes),
    NOW,
  )
  t.same(
    again.known,
    f.events.slice(0, 3).map(e => e.idHex),
    'resubmissions are known, not refused',
  )
  t.equal(again.accepted.length, 0)
  t.equal(await miner.seal(NOW + 2), undefined)

  // The ledger file is exactly the log, record by record.
  const records = recordsOf(storage.files.get('ledger.cbor')!)
  t.same(
    records.map(b => toHex(b)),
    log.map(e => toHex(e.bytes)),
    'file order is log order',
  )
  // The heads file holds the head inside its [1, 0, head] envelope.
  const heads = recordsOf(storage.files.get('heads.cbor')!)
  t.equal(heads.length, 1)
  t.ok(sameHead(decodeHeadsRecord(heads[0]!), head))
  t.ok(bytesEqual(miner.latestHeadBytes()!, encodeHead(head)))
  t.equal(miner.latestHeadId(), toHex(headId(nodeCrypto, head)))
})

t.test('heads need an envelope to pass the ledger store framing rules (store.ts F2)', async t => {
  const { f } = wideFleet(1)
  const miner = await openMiner(f, memoryStorage())
  await miner.submit(
    f.events.map(e => e.bytes),
    NOW,
  )
  const head = (await miner.seal(NOW))!
  t.throws(
    () => checkRecord(encodeHead(head)),
    { code: 'BAD_ARGUMENT' },
    'a bare head: second item is a byte string, no array',
  )
  const record = encodeHeadsRecord(head)
  t.same(checkRecord(record), record, 'the envelope frames as one record')
  t.same(decodeCbor(record), [1, 0, decodeCbor(encodeHead(head))], 'envelope = [1, 0, head]')
  t.same([...record.subarray(0, 3)], [...HEADS_RECORD_PREFIX])
  t.ok(sameHead(decodeHeadsRecord(record), head))
  t.equal(
    codeOfSync(() => decodeHeadsRecord(concatBytes(new Uint8Array([0x83, 0x02, 0x00]), encodeHead(head)))),
    'STORAGE_DAMAGED',
    'another version is damage',
  )
})

function codeOfSync(fn: () => unknown): string {
  try {
    fn()
    return 'returned'
  } catch (e) {
    return e instanceof KinError ? e.code : `NOT_A_KIN_ERROR: ${String(e)}`
  }
}

t.test('refusals come back with their codes; missing links come back pending', async t => {
  const { f, laptop } = wideFleet(2)
  const miner = await openMiner(f, memoryStorage())
  const genesisAndLaptop = f.events.slice(0, 3)
  await miner.submit(
    genesisAndLaptop.map(e => e.bytes),
    NOW,
  )

  const phoneAuth = f.events[3]!
  const phoneCert = f.events[4]!
  const forged = phoneAuth.bytes.slice()
  forged[forged.length - 1]! ^= 1
  const other = LedgerFleet.create({ tag: 'another fleet' })
  const r = await miner.submit([new Uint8Array([0x01, 0x02]), forged, phoneCert.bytes, other.events[0]!.bytes], NOW)
  t.equal(r.refused.length, 3)
  t.same(r.refused.map(x => x.code).sort(), ['BAD_SIGNATURE', 'DECODE_TRAILING', 'GENESIS_MISMATCH'].sort())
  t.equal(r.refused.find(x => x.code === 'DECODE_TRAILING')!.idHex, undefined, 'undecodable bytes have no id')
  t.same(
    r.pending.map(e => e.idHex),
    [phoneCert.idHex],
    'a certified event without its authorize waits for it',
  )
  t.equal(r.accepted.length, 0)

  // TIME_IN_FUTURE: the miner's clock bounds claimed times.
  const late = f.authorizeUnsigned(laptop, { role: 'member', time: NOW + 3600 })
  const lateEvent = f.sign(late.unsigned, laptop, false)
  const r2 = await miner.submit([lateEvent.bytes], NOW)
  t.same(
    r2.refused.map(x => x.code),
    ['TIME_IN_FUTURE'],
  )

  await t.rejects(miner.submit('nope' as unknown as Uint8Array[], NOW), TypeError)
  await t.rejects(miner.submit([], -1), RangeError)
  t.equal(miner.treeSize, 3, 'nothing refused entered the tree')
})

t.test('concurrent submissions are coalesced into one write and keep tree order = file order', async t => {
  const { f } = wideFleet(8)
  const storage = memoryStorage()
  const miner = await openMiner(f, storage)
  const rand = prng(7)
  const events = f.events.map(e => e.bytes)
  // Split into batches that depend on one another, fire them all at once, out of order.
  const batches: Uint8Array[][] = []
  for (let i = 0; i < events.length;) {
    const n = 1 + rand(5)
    batches.push(events.slice(i, i + n))
    i += n
  }
  const shuffled = [...batches].sort(() => rand(3) - 1)
  const results = await Promise.all(shuffled.map(b => miner.submit(b, NOW)))
  const accepted = results.reduce((n, r) => n + r.accepted.length, 0)
  t.equal(accepted, events.length, 'every event accepted exactly once across submissions')
  t.equal(
    results.reduce((n, r) => n + r.refused.length + r.pending.length, 0),
    0,
  )
  const log = miner.ledger.ledger.state.log
  t.same(
    recordsOf(storage.files.get('ledger.cbor')!).map(b => toHex(b)),
    log.map(e => toHex(e.bytes)),
  )
  const head = (await miner.seal(NOW))!
  t.ok(
    bytesEqual(
      head.root,
      merkleRootOfIds(
        nodeCrypto,
        log.map(e => e.id),
      ),
    ),
  )
})

t.test('a restarted miner rebuilds its tree, keeps its heads and continues the chain', async t => {
  const { f } = wideFleet(10)
  const events = f.events.map(e => e.bytes)
  let storage = memoryStorage()
  let miner = await openMiner(f, storage)
  const heads: BlockHead[] = []
  for (let i = 0; i < 3; i++) {
    await miner.submit(events.slice(i * 10, i * 10 + 10), NOW + i)
    heads.push((await miner.seal(NOW + i))!)
  }
  t.same(
    heads.map(h => h.height),
    [0, 1, 2],
  )
  await miner.close()
  storage = restart(storage)
  miner = await openMiner(f, storage)
  t.ok(sameHead(miner.latestHead(), heads[2]), 'the last head is back')
  t.ok(sameHead(miner.headById(toHex(headId(nodeCrypto, heads[0]!))), heads[0]), 'older heads are found by id')
  t.ok(sameHead(miner.headAt(1), heads[1]))
  t.equal(miner.treeSize, 30)
  t.equal(await miner.seal(NOW + 10), undefined, 'nothing new since the last head')
  await miner.submit(events.slice(30), NOW + 20)
  const next = (await miner.seal(NOW - 100))!
  t.equal(next.height, 3)
  t.ok(bytesEqual(next.prevHeadId, headId(nodeCrypto, heads[2]!)), 'names the head signed before the restart')
  t.equal(next.time, heads[2]!.time, 'time never goes back: max(previous time, now)')
  for (const h of heads) {
    t.ok(
      verifyConsistency(
        nodeCrypto,
        h.treeSize,
        next.treeSize,
        h.root,
        next.root,
        miner.consistencyProof(h.treeSize, next.treeSize),
      ),
      `head ${h.height} is a prefix of head 3 (RFC 9162 §2.1.4)`,
    )
  }
  const log = miner.ledger.ledger.state.log
  for (const i of [0, 7, 29, log.length - 1]) {
    t.ok(
      verifyInclusion(nodeCrypto, log[i]!.id, i, next.treeSize, miner.inclusionProof(i, next.treeSize), next.root),
      `leaf ${i} included (RFC 9162 §2.1.3)`,
    )
  }
  t.same(
    miner.eventsAfter(28, 3).map(b => toHex(b)),
    log.slice(28, 31).map(e => toHex(e.bytes)),
  )
  t.same(miner.eventsAfter(log.length), [])
  t.throws(() => miner.eventsAfter(log.length + 1), RangeError)
})

t.test('a tampered ledger file that would make the next head inconsistent: the miner refuses to start', async t => {
  const { f } = wideFleet(4)
  const storage = memoryStorage()
  const miner = await openMiner(f, storage)
  await miner.submit(
    f.events.map(e => e.bytes),
    NOW,
  )
  await miner.seal(NOW)
  await miner.close()
  const records = recordsOf(storage.files.get('ledger.cbor')!)

  // Lost events: the last record gone (a clean cut, no torn tail).
  const truncated = restart(storage)
  truncated.files.set('ledger.cbor', concatBytes(...records.slice(0, -1)))
  t.equal(await rejection(openMiner(f, truncated)), 'HEAD_INCONSISTENT', 'the head covers an event the file lost')

  // Reordered: two independent events swapped (a phone's certified and its lock's authorize), still a valid ledger.
  const swapped = [...records]
  const a = swapped[4]!,
    b = swapped[5]!
  swapped[4] = b
  swapped[5] = a
  const reordered = restart(storage)
  reordered.files.set('ledger.cbor', concatBytes(...swapped))
  const replay = await PersistentLedger.open(nodeCrypto, await reordered.openAppendFile('ledger.cbor'))
  t.equal(replay.ledger.size, records.length, 'the reordered file is still a valid ledger')
  await replay.close()
  t.equal(await rejection(openMiner(f, reordered)), 'HEAD_INCONSISTENT', 'but not the one the miner signed')

  // Appended events are fine: they are simply not sealed yet.
  const grown = restart(storage)
  const extra = f.enroll(f.l0, { role: 'admin', name: 'late laptop', time: T0 + 3000 })
  grown.files.set('ledger.cbor', concatBytes(...records, ...f.events.slice(-2).map(e => e.bytes)))
  const m2 = await openMiner(f, grown)
  t.equal(m2.unsealed, true, `events for ${extra.slice(0, 8)}… wait for the next seal`)
  t.equal((await m2.seal(NOW))!.height, 1)
})

t.test('a tampered heads file: the miner refuses to start, or at most drops a torn last head and says so', async t => {
  const { f } = wideFleet(4)
  const storage = memoryStorage()
  const miner = await openMiner(f, storage)
  const events = f.events.map(e => e.bytes)
  for (let i = 0; i < 3; i++) {
    await miner.submit(events.slice(i * 6, i * 6 + 6), NOW)
    await miner.seal(NOW + i)
  }
  await miner.close()
  const headsFile = storage.files.get('heads.cbor')!
  const records = recordsOf(headsFile)
  t.equal(records.length, 3)
  const heads = records.map(decodeHeadsRecord)

  // A middle head replaced by another one the miner key signed (same height, other time): the chain breaks.
  const resigned = signHead(nodeCrypto, { ...heads[1]!, time: heads[1]!.time + 1 }, minerSecret(f))
  const s1 = restart(storage)
  s1.files.set('heads.cbor', concatBytes(records[0]!, encodeHeadsRecord(resigned), records[2]!))
  t.equal(await rejection(openMiner(f, s1)), 'HEAD_INCONSISTENT')

  // The last head signed by another key.
  const stranger = nodeCrypto.ed25519KeyPair(nodeCrypto.sha256(new Uint8Array([9]))).secretKey
  const s2 = restart(storage)
  s2.files.set(
    'heads.cbor',
    concatBytes(records[0]!, records[1]!, encodeHeadsRecord(signHead(nodeCrypto, heads[2]!, stranger))),
  )
  t.equal(await rejection(openMiner(f, s2)), 'HEAD_SIGNATURE')

  // A head over another root at the right place in the chain.
  const s3 = restart(storage)
  s3.files.set(
    'heads.cbor',
    concatBytes(
      records[0]!,
      records[1]!,
      encodeHeadsRecord(signHead(nodeCrypto, { ...heads[2]!, root: new Uint8Array(32) }, minerSecret(f))),
    ),
  )
  t.equal(await rejection(openMiner(f, s3)), 'HEAD_INCONSISTENT')

  // Every byte flipped: refused with a code, or the last head dropped as a torn tail with a report (store.ts rule T).
  let refused = 0,
    torn = 0
  const codes = new Set<string>()
  for (let p = 0; p < headsFile.length; p++) {
    const s = restart(storage)
    const bad = headsFile.slice()
    bad[p]! ^= 0x01
    s.files.set('heads.cbor', bad)
    let reported = false
    const ledger = await PersistentLedger.open(nodeCrypto, await s.openAppendFile('ledger.cbor'))
    try {
      const m = await Miner.open(nodeCrypto, ledger, await s.openAppendFile('heads.cbor'), minerSecret(f), {
        onTornHead: () => {
          reported = true
        },
        boundTimes: false,
      })
      if (!reported) t.fail(`flip at ${p} opened silently`)
      t.ok(sameHead(m.latestHead(), heads[1]), `flip at ${p}: only the torn last head is dropped`)
      torn++
    } catch (e) {
      if (!(e instanceof KinError)) {
        t.fail(`flip at ${p}: ${String(e)}`)
        continue
      }
      codes.add(e.code)
      refused++
    }
  }
  t.equal(refused + torn, headsFile.length, `${refused} refused, ${torn} reported as torn`)
  t.ok(refused > headsFile.length * 0.9, 'almost every flip is refused')
  t.same(
    [...codes].sort().filter(c => !['HEAD_INCONSISTENT', 'HEAD_SIGNATURE', 'STORAGE_DAMAGED'].includes(c)),
    [],
    `codes: ${[...codes].join(', ')}`,
  )
})

t.test('a miner key other than genesis names is refused', async t => {
  const { f } = wideFleet(1)
  const storage = memoryStorage()
  const miner = await openMiner(f, storage)
  await miner.submit(
    f.events.map(e => e.bytes),
    NOW,
  )
  await miner.close()
  const s = restart(storage)
  const ledger = await PersistentLedger.open(nodeCrypto, await s.openAppendFile('ledger.cbor'))
  const other = nodeCrypto.sha256(new Uint8Array([1, 2, 3]))
  t.equal(
    await rejection(Miner.open(nodeCrypto, ledger, await s.openAppendFile('heads.cbor'), other, { boundTimes: false })),
    'GENESIS_MISMATCH',
  )
})

t.test('a miner over an empty ledger accepts only a genesis naming its own key', async t => {
  const f = LedgerFleet.create({ tag: 'empty start' })
  const storage = memoryStorage()
  const miner = await openMiner(f, storage)
  t.equal(miner.treeSize, 0)
  // A genesis for the same keys but a different miner key: refused before validation.
  const g = f.events[0]!.event
  if (g.type !== 'genesis') throw new Error('fixture')
  const foreign = signEvent(
    nodeCrypto,
    genesisEvent(nodeCrypto, { ...g.body, minerKey: new Uint8Array(32).fill(7) }, g.time),
    minerSecret(f),
  )
  const r = await miner.submit([foreign.bytes], NOW)
  t.same(
    r.refused.map(x => x.code),
    ['GENESIS_MISMATCH'],
  )
  const ok = await miner.submit([f.events[0]!.bytes], NOW)
  t.equal(ok.accepted.length, 1)
  t.equal((await miner.seal(NOW))!.treeSize, 1)
})

t.test('a heads-file write that fails is never returned; after a reopen the chain goes on consistently', async t => {
  const { f } = wideFleet(3)
  const storage = memoryStorage()
  const miner = await openMiner(f, storage)
  await miner.submit(
    f.events.slice(0, 5).map(e => e.bytes),
    NOW,
  )
  const h0 = (await miner.seal(NOW))!
  await miner.submit(
    f.events.slice(5).map(e => e.bytes),
    NOW,
  )
  storage.tearNextAppend('heads.cbor', 20)
  t.equal(await rejection(miner.seal(NOW + 1)), 'STORAGE_IO', 'the torn write rejects')
  t.equal(await rejection(miner.seal(NOW + 2)), 'STORAGE_IO', 'and the miner stops sealing until reopened')
  t.ok(sameHead(miner.latestHead(), h0), 'the unwritten head never became the latest')
  await miner.ledger.close()
  const s = restart(storage)
  let tornAt = -1
  const ledger = await PersistentLedger.open(nodeCrypto, await s.openAppendFile('ledger.cbor'))
  const again = await Miner.open(nodeCrypto, ledger, await s.openAppendFile('heads.cbor'), minerSecret(f), {
    onTornHead: offset => {
      tornAt = offset
    },
    boundTimes: false,
  })
  t.equal(tornAt, encodeHeadsRecord(h0).length, 'the torn head is dropped and reported at its offset')
  const h1 = (await again.seal(NOW + 3))!
  t.equal(h1.height, 1)
  t.ok(bytesEqual(h1.prevHeadId, headId(nodeCrypto, h0)))
  t.equal(h1.treeSize, f.events.length)
})

t.test('heartbeat heads: a quiet log gets a fresh head over the same tree when asked', async t => {
  const { f } = wideFleet(2)
  const miner = await openMiner(f, memoryStorage())
  await miner.submit(
    f.events.map(e => e.bytes),
    NOW,
  )
  const h0 = (await miner.seal(NOW))!
  t.equal(await miner.seal(NOW + 30, { heartbeatAfter: 60 }), undefined, 'not yet due')
  const h1 = (await miner.seal(NOW + 60, { heartbeatAfter: 60 }))!
  t.equal(h1.height, 1)
  t.equal(h1.time, NOW + 60)
  t.equal(h1.treeSize, h0.treeSize)
  t.ok(bytesEqual(h1.root, h0.root))
  t.ok(bytesEqual(h1.prevHeadId, headId(nodeCrypto, h0)))
  t.equal(await miner.seal(NOW + 61), undefined, 'without the option, still nothing new')
})
