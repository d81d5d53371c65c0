import t from 'tap'
import fc from 'fast-check'
import { LedgerStore, MAX_RECORD_BYTES, checkRecord, scanRecords, type StoredRecord } from '../../agent/ledger/store.ts'
import { encodeCbor, type CborValue } from '../../agent/codec/cbor.ts'
import { bytesEqual, concatBytes, fromHex, toHex, utf8 } from '../../agent/codec/bytes.ts'
import { KinError, isKinError } from '../../agent/errors.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { memoryStorage } from '../../agent/portable/memory-storage.ts'
import { LedgerFleet } from '../helpers/ledger-fleet.ts'

// ---- realistic records: the v1 event layout with deterministic bytes --------------------------------------

let counter = 0
function det(n: number): Uint8Array {
  const out = new Uint8Array(n)
  for (let o = 0; o < n; o += 32)
    out.set(nodeCrypto.sha256(utf8(`store-test-${counter++}`)).subarray(0, Math.min(32, n - o)), o)
  return out
}

const T = 1_800_000_000
function envelope(type: number, links: number, time: number, body: CborValue[]): Uint8Array {
  const ls: Uint8Array[] = []
  for (let i = 0; i < links; i++) ls.push(det(32))
  return encodeCbor([1, type, det(10), det(10), ls, time, body, det(64)])
}

/** ~20 records covering every event type, nested policy rules included. */
function sampleRecords(): Uint8Array[] {
  const out: Uint8Array[] = []
  out.push(
    envelope(0, 0, T, ['smith.home.arpa', det(32), det(32), det(32), det(32), det(12), T + 20 * 31536000, 'home pc']),
  )
  for (let i = 0; i < 7; i++) {
    out.push(
      envelope(1, 1, T + i * 60, [det(32), det(32), det(12), T + 31536000, i % 4, i % 3, 'lock', `front door ${i}`]),
    )
    out.push(envelope(2, 1, T + i * 60 + 5, [det(32)]))
  }
  out.push(envelope(3, 2, T + 900, [0, T + 800, false]))
  out.push(envelope(3, 2, T + 901, [2, T + 901, true]))
  out.push(envelope(4, 2, T + 1000, [det(32), det(32), det(12), T + 2 * 31536000]))
  out.push(
    envelope(5, 2, T + 1100, [
      true,
      8,
      3600,
      [det(10), det(10)],
      [
        ['unlock', [0, 1, 3], 0, 86400],
        ['view', [2], 3600, 7200],
      ],
    ]),
  )
  out.push(envelope(5, 2, T + 1101, [false, 2, 60, [], []]))
  out.push(
    envelope(1, 1, T + 1200, [det(32), det(32), det(32), 0, 3, 0, 'phone', 'guest phone with a long friendly name']),
  )
  return out
}

interface Sample {
  name: string
  records: Uint8Array[]
  file: Uint8Array
  starts: number[]
}

function sampleOf(name: string, records: Uint8Array[]): Sample {
  const starts: number[] = []
  let o = 0
  for (const r of records) {
    starts.push(o)
    o += r.length
  }
  return { name, records, file: concatBytes(...records), starts }
}

/** Index of the record holding byte `p` of the sample's file. */
function recordAt(s: Sample, p: number): number {
  let k = 0
  while (k + 1 < s.starts.length && s.starts[k + 1]! <= p) k++
  return k
}

/** Real signed events of a small fleet, every event type included. */
function fleetRecords(): Uint8Array[] {
  const f = LedgerFleet.create({ tag: 'store-fleet' })
  const a = f.enroll(f.l0, { role: 'admin', kind: 'phone', name: 'alice' })
  const lock = f.enroll(a, { role: 'device', kind: 'lock', name: 'front door' })
  f.enroll(a, { role: 'guest', kind: 'phone', name: 'visitor' })
  f.policy(f.l0, a, {
    subtree: true,
    maxHops: 4,
    rules: [{ action: 'unlock', roles: ['admin', 'guest'], from: 0, to: 86400 }],
  })
  f.rekey(a, lock)
  f.revoke(a, lock, { reason: 'retired' })
  return f.events.map(e => e.bytes)
}

const SYNTHETIC = sampleOf('synthetic', sampleRecords())
const FLEET = sampleOf('fleet', fleetRecords())
const { records: RECORDS, file: FILE, starts: STARTS } = SYNTHETIC

/** Undefined when `got` are exactly `want` at consecutive offsets from 0; otherwise what differs. */
function recordsDiff(got: StoredRecord[], want: Uint8Array[]): string | undefined {
  if (got.length !== want.length) return `${got.length} records, want ${want.length}`
  let o = 0
  for (let i = 0; i < want.length; i++) {
    if (!bytesEqual(got[i]!.bytes, want[i]!) || got[i]!.offset !== o) return `record ${i} differs`
    o += want[i]!.length
  }
  return undefined
}

// ---- framing of whole files --------------------------------------------------------------------------------

t.test('a file of complete records frames back into exactly those records', async t => {
  t.ok(RECORDS.length >= 20 && FILE.length > 3000, `sample: ${RECORDS.length} records, ${FILE.length} bytes`)
  const { records, tornTailAt } = scanRecords(FILE)
  t.equal(tornTailAt, undefined)
  t.equal(recordsDiff(records, RECORDS), undefined)
  t.same(scanRecords(new Uint8Array(0)), { records: [], tornTailAt: undefined }, 'empty file: no records')
})

t.test('real signed events of a fleet (every type) are records', async t => {
  for (const b of FLEET.records) t.equal(checkRecord(b), b)
  const types = FLEET.records.map(b => b[2]).sort()
  t.same([...new Set(types)], [0, 1, 2, 3, 4, 5], 'genesis, authorize, certified, revoke, rekey, policy')
  t.equal(recordsDiff(scanRecords(FLEET.file).records, FLEET.records), undefined)
})

// (a) a crash can cut the file anywhere
for (const S of [SYNTHETIC, FLEET]) {
  t.test(
    `${S.name}: truncation at every offset: the complete records survive, a cut record is a torn tail`,
    async t => {
      let torn = 0
      for (let cut = 0; cut <= S.file.length; cut++) {
        const whole = S.starts.filter((st, i) => st + S.records[i]!.length <= cut).length
        const inside = whole < S.records.length && cut > S.starts[whole]!
        let scan
        try {
          scan = scanRecords(S.file.slice(0, cut))
        } catch (err) {
          t.fail(`cut at ${cut} threw ${(err as Error).message}`)
          continue
        }
        const diff = recordsDiff(scan.records, S.records.slice(0, whole))
        if (diff !== undefined || scan.tornTailAt !== (inside ? S.starts[whole] : undefined)) {
          t.fail(`cut at ${cut}: ${diff ?? ''} torn tail ${scan.tornTailAt}`)
          continue
        }
        if (inside) torn++
      }
      t.equal(torn, S.file.length - S.records.length, 'every cut strictly inside a record was a torn tail')
    },
  )
}

t.test('reopening a truncated file rewrites it to the recovered prefix and reports the tail', async t => {
  let checked = 0
  for (let cut = 0; cut <= FILE.length; cut++) {
    const storage = memoryStorage()
    storage.files.set('ledger', FILE.slice(0, cut))
    const reports: Array<[number, number, string]> = []
    const file = await storage.openAppendFile('ledger')
    const { store, records } = await LedgerStore.open(file, {
      onTornTail: (o, d, tail) => reports.push([o, d, toHex(tail)]),
    })
    const whole = STARTS.filter((s, i) => s + RECORDS[i]!.length <= cut).length
    const keep = whole === RECORDS.length ? FILE.length : STARTS[whole]!
    const ok =
      records.length === whole &&
      store.size() === keep &&
      bytesEqual(storage.files.get('ledger')!, FILE.subarray(0, keep)) &&
      (cut === keep
        ? reports.length === 0
        : reports.length === 1 &&
          reports[0]![0] === keep &&
          reports[0]![1] === cut - keep &&
          reports[0]![2] === toHex(FILE.subarray(keep, cut)))
    if (!ok)
      t.fail(`cut at ${cut}: ${records.length} records, size ${store.size()}, reports ${JSON.stringify(reports)}`)
    else checked++
    // The store goes on appending right after the recovered prefix.
    const off = await store.append(RECORDS[whole % RECORDS.length]!)
    if (
      off !== keep ||
      !bytesEqual(storage.files.get('ledger')!, concatBytes(FILE.subarray(0, keep), RECORDS[whole % RECORDS.length]!))
    )
      t.fail(`cut at ${cut}: append after recovery`)
    await store.close()
  }
  t.equal(checked, FILE.length + 1)
})

// (b) one damaged byte anywhere
for (const S of [SYNTHETIC, FLEET]) {
  t.test(
    `${S.name}: a damaged byte at every offset is an error or stays inside one record, never a silent loss`,
    async t => {
      const masks = [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff]
      const outcome = { damaged: 0, inRecord: 0, lastRecordTorn: 0 }
      const n = S.records.length
      const last = S.starts[n - 1]!
      for (let p = 0; p < S.file.length; p++) {
        const k = recordAt(S, p)
        for (const mask of masks) {
          const bad = S.file.slice()
          bad[p]! ^= mask
          const tag = `byte ${p} (record ${k}) ^ 0x${mask.toString(16)}`
          let scan
          try {
            scan = scanRecords(bad)
          } catch (err) {
            if (!isKinError(err, 'STORAGE_DAMAGED')) {
              t.fail(`${tag}: threw ${String(err)}`)
              continue
            }
            const { offset, at } = err.detail as { offset: number; at: number }
            // Everything before the damaged record frames as before, so damage is never placed earlier than it.
            if (!(
              offset >= S.starts[k]! &&
              at >= offset &&
              at <= bad.length &&
              err.message.includes(`offset ${at}`) &&
              err.message.includes(`offset ${offset}`)
            )) {
              t.fail(`${tag}: reported offset ${offset}/${at}: ${err.message}`)
            }
            outcome.damaged++
            continue
          }
          if (scan.tornTailAt === undefined) {
            // Well-framed: exactly the damaged record differs, for event decoding and signatures to catch.
            const differs = scan.records.map((r, i) => !bytesEqual(r.bytes, S.records[i] ?? new Uint8Array(0)))
            if (scan.records.length !== n || differs.filter(Boolean).length !== 1 || !differs[k]) {
              t.fail(
                `${tag}: ${scan.records.length} records without an error, differing: ${differs.flatMap((d, i) => (d ? [i] : []))}`,
              )
            }
            outcome.inRecord++
          } else {
            // Only the last record may look torn (byte for byte a crash during its append), and it is reported.
            if (
              scan.tornTailAt < last ||
              scan.records.length !== n - 1 ||
              scan.records.some((r, i) => i !== k && !bytesEqual(r.bytes, S.records[i]!))
            ) {
              t.fail(`${tag}: torn tail at ${scan.tornTailAt} with ${scan.records.length} records`)
            }
            outcome.lastRecordTorn++
          }
        }
      }
      t.ok(outcome.damaged > 0 && outcome.inRecord > 0, `outcomes: ${JSON.stringify(outcome)}`)
      t.equal(
        outcome.damaged + outcome.inRecord + outcome.lastRecordTorn,
        S.file.length * masks.length,
        'every damaged file classified',
      )
    },
  )
}

t.test('a length flipped in a middle record never turns the rest of the file into a torn tail', async t => {
  // The byte-string head of record 3's signature (0x58 0x40) claiming 0xff bytes runs past the end of the file
  // only if the file is short; here it sits before more than 0xff bytes, so use a 2-byte length instead.
  const k = 3
  const sig = STARTS[k]! + RECORDS[k]!.length - 66
  t.equal(toHex(FILE.subarray(sig, sig + 2)), '5840', 'signature head located')
  for (const head of ['5a7fffffff', '590f00', '59' + (FILE.length - sig).toString(16).padStart(4, '0')]) {
    const bad = concatBytes(FILE.subarray(0, sig), fromHex(head), FILE.subarray(sig + 2))
    const err = t.throws(() => scanRecords(bad)) as unknown as KinError
    t.equal(err.code, 'STORAGE_DAMAGED', head)
    t.equal((err.detail as { offset: number }).offset, STARTS[k], `${head}: damaged record named`)
  }
  // An array count raised in the last-but-one record pulls the last record in as a field: F3.
  const k2 = RECORDS.length - 2
  const bad = FILE.slice()
  t.equal(bad[STARTS[k2]!], 0x88)
  bad[STARTS[k2]!] = 0x89
  const err = t.throws(() => scanRecords(bad)) as unknown as KinError
  t.equal(err.code, 'STORAGE_DAMAGED')
  t.equal((err.detail as { at: number }).at, STARTS[k2 + 1], 'the swallowed record is named')
})

// (c) arbitrary bytes
t.test('random bytes and random edits of a good file: records or a KinError, nothing else', async () => {
  const check = (bytes: Uint8Array): boolean => {
    try {
      const { records, tornTailAt } = scanRecords(bytes)
      let o = 0
      for (const r of records) {
        if (r.offset !== o) return false
        o += r.bytes.length
      }
      return tornTailAt === undefined ? o === bytes.length : tornTailAt === o && o < bytes.length
    } catch (err) {
      return err instanceof KinError && err.code === 'STORAGE_DAMAGED'
    }
  }
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), b => check(b)),
    { numRuns: 3000 },
  )
  // Mostly-valid inputs reach deeper into the scanner than random bytes do.
  const edit = fc.tuple(
    fc.nat(FILE.length - 1),
    fc.integer({ min: 0, max: 255 }),
    fc.constantFrom('set', 'insert', 'delete'),
  )
  fc.assert(
    fc.property(fc.array(edit, { minLength: 1, maxLength: 4 }), fc.nat(FILE.length), (edits, cut) => {
      let b: Uint8Array = FILE.slice()
      for (const [p, v, op] of edits) {
        const q = Math.min(p, b.length - 1)
        if (op === 'set') b[q] = v
        else if (op === 'insert') b = concatBytes(b.subarray(0, q), new Uint8Array([v]), b.subarray(q))
        else b = concatBytes(b.subarray(0, q), b.subarray(q + 1))
      }
      return check(b.subarray(0, Math.min(cut, b.length)))
    }),
    { numRuns: 3000 },
  )
})

t.test('framing rules: deterministic heads and the envelope shape', async t => {
  const good = RECORDS[1]!
  const damagedAt = (hex: string, offset: number, at: number, why: RegExp): void => {
    const err = t.throws(() => scanRecords(concatBytes(good, fromHex(hex), good))) as unknown as KinError
    t.equal(err.code, 'STORAGE_DAMAGED', hex)
    t.same(err.detail, { offset: good.length + offset, at: good.length + at }, `${hex}: offsets`)
    t.match(err.message, why, hex)
  }
  damagedAt('01', 0, 0, /must be a CBOR array/)
  damagedAt('9f', 0, 0, /indefinite length/) // RFC 8949 §3.2.1
  damagedAt('83011c', 0, 2, /reserved additional information 28/) // RFC 8949 §3.1
  damagedAt('8301181780', 0, 2, /shortest form/) // RFC 8949 §4.2.1
  damagedAt('830120', 0, 2, /negative integer/)
  damagedAt('8301a0', 0, 2, /map/)
  damagedAt('8301f93c00', 0, 2, /float/)
  damagedAt('82010280', 0, 0, /at least 3 items/)
  damagedAt('83014080', 0, 2, /two unsigned integers/)
  damagedAt('83010102', 0, 0, /hold at least one array/)
  damagedAt('8301018301028080', 0, 3, /shape of a whole record/)
  damagedAt('8301015affffffff', 0, 3, /record limit/)
  damagedAt('830101' + '81'.repeat(9) + '80', 0, 11, /nesting deeper/)
  // What the event codec writes stays legal: empty arrays, false/true/null, text, long strings.
  t.ok(checkRecord(fromHex('8701018080f4f5f6')))
  t.ok(checkRecord(encodeCbor([1, 0, [], 'x'.repeat(300), det(1000)])))
  t.equal(MAX_RECORD_BYTES, 4096)
})

t.test('append checks that a record is one complete record', async t => {
  const storage = memoryStorage()
  const { store } = await LedgerStore.open(await storage.openAppendFile('ledger'))
  for (const bad of [
    new Uint8Array(0),
    RECORDS[0]!.subarray(0, 10),
    concatBytes(RECORDS[0]!, new Uint8Array([0])),
    encodeCbor([1, 2, 3]),
    'abc' as unknown as Uint8Array,
  ]) {
    await t.rejects(store.append(bad), { code: 'BAD_ARGUMENT' })
  }
  await t.rejects(store.appendMany([RECORDS[0]!, new Uint8Array([0x88])]), { code: 'BAD_ARGUMENT' })
  t.equal(storage.files.get('ledger')!.length, 0, 'nothing written by refused appends')
  t.equal(store.size(), 0)
})

t.test('appends: offsets in call order, appendMany in one write, reopen sees the same records', async t => {
  const storage = memoryStorage()
  const { store } = await LedgerStore.open(await storage.openAppendFile('ledger'))
  const offsets = await Promise.all(RECORDS.slice(0, 5).map(r => store.append(r)))
  t.same(offsets, STARTS.slice(0, 5))
  t.same(await store.appendMany(RECORDS.slice(5)), STARTS.slice(5))
  t.same(await store.appendMany([]), [])
  t.equal(store.size(), FILE.length)
  t.ok(bytesEqual(storage.files.get('ledger')!, FILE))
  await store.close()
  await t.rejects(store.append(RECORDS[0]!), { code: 'STORAGE_IO' }, 'closed store refuses appends')
  const again = await LedgerStore.open(await storage.openAppendFile('ledger'))
  t.equal(recordsDiff(again.records, RECORDS), undefined, 'reopened')
  t.equal(again.store.size(), FILE.length)
})

t.test('a crash in the middle of appendMany keeps the complete records of the batch and drops the cut one', async t => {
  const storage = memoryStorage()
  const { store } = await LedgerStore.open(await storage.openAppendFile('ledger'))
  await store.appendMany(RECORDS.slice(0, 10))
  const cut = RECORDS[10]!.length + RECORDS[11]!.length + 40
  storage.tearNextAppend('ledger', cut)
  await t.rejects(store.appendMany(RECORDS.slice(10, 14)), { code: 'STORAGE_IO' })
  await t.rejects(store.append(RECORDS[15]!), { code: 'STORAGE_IO' }, 'the store refuses appends after a failed one')
  const tails: number[][] = []
  const again = await LedgerStore.open(await storage.openAppendFile('ledger'), {
    onTornTail: (o, d) => tails.push([o, d]),
  })
  t.equal(recordsDiff(again.records, RECORDS.slice(0, 12)), undefined, 'after the crash')
  t.same(tails, [[STARTS[12], 40]])
  t.ok(bytesEqual(storage.files.get('ledger')!, FILE.subarray(0, STARTS[12])))
})

t.test('damage found on open is reported and the file is left untouched', async t => {
  const storage = memoryStorage()
  const bad = FILE.slice()
  bad[STARTS[5]! + 1] = 0x20 // record 5's version becomes a negative integer
  storage.files.set('ledger', bad)
  const file = await storage.openAppendFile('ledger')
  await t.rejects(LedgerStore.open(file), { code: 'STORAGE_DAMAGED', detail: { offset: STARTS[5] } })
  t.ok(bytesEqual(storage.files.get('ledger')!, bad), 'no repair attempted')
})
