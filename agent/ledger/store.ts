/** @module The ledger file: an append-only CBOR sequence of events (RFC 8742), framed by CBOR heads; torn tails dropped, damage reported. */
import { KinError } from '../errors.ts'
import { concatBytes } from '../codec/bytes.ts'
import type { AppendFile } from '../ports/platform.ts'
import { MAX_EVENT_BYTES } from './event.ts'

/*
 * File format and framing rules.
 *
 * A ledger file is a CBOR sequence (RFC 8742): records back to back, no separators, no checksums. Each
 * record is one event in deterministic CBOR (RFC 8949 §4.2.1) as agent/codec/cbor.ts writes it. The
 * scanner reads CBOR heads only (major type and argument, RFC 8949 §3) and holds every record to the
 * subset the event codec can produce, because every rule it can check turns more kinds of damage into
 * an error with an offset instead of a plausible but wrong framing:
 *   F1 heads: unsigned integers, byte and text strings, arrays, and the simple values false/true/null
 *      (major types 0, 2, 3, 4, 7); arguments of at most 4 bytes, in shortest form (§4.2.1). Negative
 *      integers, maps, tags, floats, reserved values (§3.1) and indefinite lengths (§3.2) are damage.
 *   F2 a record is an envelope: an array of at least 3 items whose first two are unsigned integers
 *      (version, type) and which holds at least one array (links, body); at most MAX_RECORD_BYTES long
 *      and nested at most 8 deep (the codec's limits).
 *   F3 no array inside a record has the envelope shape (no event field does), so a damaged array count
 *      that pulls the following records into a record never frames cleanly.
 *
 * Torn tail versus damage. After a crash the last append may be cut anywhere, so a record that runs out
 * of bytes at the end of the file is normally a torn append, to be dropped. But one flipped byte in a
 * length or count can make a record in the middle claim more bytes than the file has left, which looks
 * the same. Rule T: an incomplete last item is a torn tail only when
 *   (a) its bytes are a strict prefix of a record allowed by F1–F3 (parsing ran out of bytes, it never
 *       hit an invalid head), its declared structure fits in MAX_RECORD_BYTES, and
 *   (b) no position inside it that is not one of its own item boundaries starts a run of complete
 *       records that ends exactly at the end of the file.
 * A crash leaves a prefix of one record after the last complete one, so (b) holds for it (barring a
 * chance alignment inside hash or signature bytes, well under one in a million, which errs to an error).
 * A damaged head in record k swallows records k+1… intact: they start inside its string content or at
 * a misaligned position, caught by (b), or at one of its item boundaries, where they are complete
 * envelope-shaped children, caught by F3. What remains ambiguous is damage to the LAST record that
 * makes it claim more bytes than it has: that is byte-for-byte a crash during its append, so it is
 * dropped as a torn tail and reported (onTornTail); one damaged byte never loses more than that record.
 * Whatever a flip inside a record leaves well-framed, the semantic layer (event decoding, signatures) catches.
 */

/** Largest record the store accepts or frames: one event. */
export const MAX_RECORD_BYTES: number = MAX_EVENT_BYTES
/** Deepest nesting of an item (the record itself is depth 0), as the CBOR codec allows. */
export const MAX_RECORD_DEPTH = 8

/** One record of the ledger file: its byte offset and its bytes (a view into the file's content). */
export interface StoredRecord {
  offset: number
  bytes: Uint8Array
}

/** What a scan of a ledger file found: complete records, and the offset of a torn tail if there is one. */
export interface RecordScan {
  records: StoredRecord[]
  tornTailAt: number | undefined
}

const COMPLETE = 0
const SHORT = 1
const INVALID = 2

interface Framing {
  status: number
  end: number
  at: number
  reason: string
}

function framing(status: number, end: number, at: number, reason: string): Framing {
  return { status, end, at, reason }
}

function bounded(start: number, minEnd: number, at: number, status: number, end: number): Framing {
  if (minEnd - start > MAX_RECORD_BYTES)
    return framing(INVALID, end, at, `declared structure exceeds the ${MAX_RECORD_BYTES}-byte record limit`)
  return framing(status, end, at, '')
}

function headReason(major: number, ai: number): string {
  if (ai === 31) return 'indefinite length or break (RFC 8949 §3.2), never in deterministic encoding'
  if (ai > 27) return `reserved additional information ${ai} (RFC 8949 §3.1)`
  if (ai === 27) return '8-byte argument, never written by the ledger codec'
  if (major === 1) return 'negative integer, not in the ledger codec subset'
  if (major === 5) return 'map, not in the ledger codec subset'
  if (major === 6) return 'tag, not in the ledger codec subset'
  return 'float or simple value other than false/true/null, not in the ledger codec subset'
}

/**
 * Frames one record starting at `start` by walking CBOR heads (no decoding). Pushes every item's start
 * offset into `starts` when given. Returns COMPLETE with the end offset, SHORT when the bytes run out
 * first, or INVALID with the offending offset and why.
 */
function frameRecord(bytes: Uint8Array, start: number, starts?: number[]): Framing {
  const n = bytes.length
  // Per open array: items not yet complete, items complete, bit flags (1: item 0 uint, 2: item 1 uint, 4: holds an array), start.
  const rem: number[] = []
  const seen: number[] = []
  const flags: number[] = []
  const opened: number[] = []
  let pos = start
  for (;;) {
    // Each open array has one item in progress; the items after it need at least one byte each.
    let after = 0
    for (let i = 0; i < rem.length; i++) after += rem[i]! - 1
    if (pos >= n) return bounded(start, pos + 1 + after, pos, SHORT, pos)
    if (starts !== undefined) starts.push(pos)
    const depth = rem.length
    if (depth > MAX_RECORD_DEPTH) return framing(INVALID, pos, pos, `nesting deeper than ${MAX_RECORD_DEPTH}`)
    const ib = bytes[pos]!
    const major = ib >> 5
    const ai = ib & 0x1f
    const allowed =
      ai < 27 && (major === 0 || major === 2 || major === 3 || major === 4 || (major === 7 && ai >= 20 && ai <= 22))
    if (!allowed) return framing(INVALID, pos, pos, headReason(major, ai))
    if (depth === 0 && major !== 4) return framing(INVALID, pos, pos, 'a record must be a CBOR array')
    const index = depth === 0 ? -1 : seen[depth - 1]!
    if (depth === 1 && index < 2 && major !== 0)
      return framing(INVALID, pos, pos, 'a record must start with two unsigned integers (version, type)')
    const argLen = ai < 24 ? 0 : 1 << (ai - 24)
    const headEnd = pos + 1 + argLen
    if (headEnd > n) return bounded(start, headEnd + after, pos, SHORT, pos)
    let arg = ai
    if (argLen > 0) {
      arg = 0
      for (let i = pos + 1; i < headEnd; i++) arg = arg * 256 + bytes[i]!
      if (arg < (argLen === 1 ? 24 : argLen === 2 ? 256 : 65536))
        return framing(INVALID, pos, pos, 'argument not in shortest form (RFC 8949 §4.2.1)')
    }
    if (major === 4) {
      if (depth === 0 && arg < 3) return framing(INVALID, pos, pos, 'a record must be an array of at least 3 items')
      const checked = bounded(start, headEnd + arg + after, pos, COMPLETE, headEnd)
      if (checked.status === INVALID) return checked
      if (arg > 0) {
        rem.push(arg)
        seen.push(0)
        flags.push(0)
        opened.push(pos)
        pos = headEnd
        continue
      }
    }
    let end = headEnd
    if (major === 2 || major === 3) {
      end = headEnd + arg
      const checked = bounded(start, end + after, pos, end > n ? SHORT : COMPLETE, end)
      if (checked.status !== COMPLETE) return checked
    }
    pos = end
    // The item just read is complete: credit it to its array, closing every array it completes.
    let isUint = major === 0
    let isArray = major === 4
    while (rem.length > 0) {
      const d = rem.length - 1
      const i = seen[d]!
      if (isUint && i < 2) flags[d] = flags[d]! | (i === 0 ? 1 : 2)
      if (isArray) flags[d] = flags[d]! | 4
      seen[d] = i + 1
      rem[d] = rem[d]! - 1
      if (rem[d]! > 0) break
      const envelope = seen[d]! >= 3 && flags[d] === 7
      if (d === 0 && !envelope)
        return framing(INVALID, pos, opened[0]!, 'a record must hold at least one array (links, body)')
      if (d > 0 && envelope)
        return framing(
          INVALID,
          pos,
          opened[d]!,
          'an array inside a record has the shape of a whole record (a damaged count took in what follows)',
        )
      rem.pop()
      seen.pop()
      flags.pop()
      opened.pop()
      isUint = false
      isArray = true
    }
    if (rem.length === 0) return framing(COMPLETE, pos, pos, '')
  }
}

/**
 * Rule T (b): the first offset inside the incomplete record at `tornAt`, other than its own item
 * boundaries, from which complete records run exactly to the end of the file; undefined if none.
 */
function swallowedRecordsAt(bytes: Uint8Array, tornAt: number): number | undefined {
  const n = bytes.length
  const starts: number[] = []
  frameRecord(bytes, tornAt, starts)
  const boundary = new Uint8Array(n - tornAt + 1)
  for (const s of starts) boundary[s - tornAt] = 1
  // reaches[q - tornAt] = 1 when complete records run from q exactly to the end of the file.
  const reaches = new Uint8Array(n - tornAt + 1)
  reaches[n - tornAt] = 1
  let first: number | undefined
  for (let q = n - 1; q > tornAt; q--) {
    if (bytes[q]! >> 5 !== 4) continue
    const f = frameRecord(bytes, q)
    if (f.status !== COMPLETE || reaches[f.end - tornAt] !== 1) continue
    reaches[q - tornAt] = 1
    if (boundary[q - tornAt] !== 1) first = q
  }
  return first
}

function damaged(offset: number, at: number, reason: string): KinError {
  const where = at === offset ? `offset ${offset}` : `offset ${at} (record starting at offset ${offset})`
  return new KinError('STORAGE_DAMAGED', `ledger file damaged at ${where}: ${reason}`, { detail: { offset, at } })
}

/**
 * Splits a ledger file into complete records by CBOR heads (framing only, no decoding). A record cut off
 * at the end of the file is a torn tail (`tornTailAt`); anything else malformed throws STORAGE_DAMAGED
 * with `detail.offset` (start of the record that cannot be framed) and `detail.at` (where it broke).
 */
export function scanRecords(bytes: Uint8Array): RecordScan {
  if (!(bytes instanceof Uint8Array)) throw new KinError('BAD_ARGUMENT', '"bytes" expected Uint8Array')
  const records: StoredRecord[] = []
  let pos = 0
  while (pos < bytes.length) {
    const f = frameRecord(bytes, pos)
    if (f.status === COMPLETE) {
      records.push({ offset: pos, bytes: bytes.subarray(pos, f.end) })
      pos = f.end
      continue
    }
    if (f.status === INVALID) throw damaged(pos, f.at, f.reason)
    const q = swallowedRecordsAt(bytes, pos)
    if (q !== undefined) {
      throw damaged(
        pos,
        q,
        `record runs past the end of the file, yet complete records follow from offset ${q}: a damaged head, not a torn append`,
      )
    }
    return { records, tornTailAt: pos }
  }
  return { records, tornTailAt: undefined }
}

/** Checks that `record` is exactly one complete record as the scanner frames it; throws BAD_ARGUMENT otherwise. */
export function checkRecord(record: Uint8Array): Uint8Array {
  if (!(record instanceof Uint8Array)) throw new KinError('BAD_ARGUMENT', '"record" expected Uint8Array')
  if (record.length === 0) throw new KinError('BAD_ARGUMENT', '"record" is empty')
  const f = frameRecord(record, 0)
  if (f.status === INVALID)
    throw new KinError('BAD_ARGUMENT', `"record" is not a ledger record: ${f.reason} (at byte ${f.at})`)
  if (f.status === SHORT) throw new KinError('BAD_ARGUMENT', '"record" is not a complete CBOR item')
  if (f.end !== record.length)
    throw new KinError('BAD_ARGUMENT', `"record" has ${record.length - f.end} bytes after its CBOR item`)
  return record
}

/** Options for opening a ledger file. */
export interface LedgerStoreOptions {
  /** Told when a torn tail was dropped: its offset, its length, and the dropped bytes (for a log). */
  onTornTail?(offset: number, dropped: number, tail: Uint8Array): void
}

/** The ledger's append-only file: records go in whole and durable, in call order, each at a known offset. */
export class LedgerStore {
  private readonly file: AppendFile
  private end: number
  private failure: KinError | undefined

  private constructor(file: AppendFile, end: number) {
    this.file = file
    this.end = end
    this.failure = undefined
  }

  /**
   * Reads and frames the file. A torn tail is cut off by rewriting the file without it (`replace`, never an
   * in-place truncate) and reported; damage throws STORAGE_DAMAGED and leaves the file untouched.
   */
  static async open(
    file: AppendFile,
    opts: LedgerStoreOptions = {},
  ): Promise<{ store: LedgerStore; records: StoredRecord[] }> {
    const bytes = await file.read()
    const { records, tornTailAt } = scanRecords(bytes)
    if (tornTailAt !== undefined) {
      await file.replace(bytes.subarray(0, tornTailAt))
      if (opts.onTornTail !== undefined) opts.onTornTail(tornTailAt, bytes.length - tornTailAt, bytes.slice(tornTailAt))
    }
    return { store: new LedgerStore(file, tornTailAt ?? bytes.length), records }
  }

  /** Offset the next record will get: bytes durable or on their way. */
  size(): number {
    return this.end
  }

  /** Appends one record (a complete CBOR item) and resolves with its offset once it is durable. */
  async append(record: Uint8Array): Promise<number> {
    const offsets = await this.appendMany([record])
    return offsets[0]!
  }

  /** Appends records in one durable write; resolves with their offsets. All are checked before any is written. */
  async appendMany(records: Uint8Array[]): Promise<number[]> {
    if (!Array.isArray(records)) throw new KinError('BAD_ARGUMENT', '"records" expected an array')
    for (const r of records) checkRecord(r)
    if (this.failure !== undefined) throw this.failure
    if (records.length === 0) return []
    // Offsets are handed out before the first await: the file serializes appends in call order, so they hold.
    const offsets: number[] = []
    for (const r of records) {
      offsets.push(this.end)
      this.end += r.length
    }
    try {
      await this.file.append(records.length === 1 ? records[0]! : concatBytes(...records))
    } catch (err) {
      // What reached the disk is unknown now; only a reopen (which drops a torn tail) tells.
      if (this.failure === undefined)
        this.failure = new KinError('STORAGE_IO', 'an earlier append to the ledger file failed; reopen the file', {
          cause: err,
        })
      throw err
    }
    return offsets
  }

  /** Closes the file after pending appends; later appends throw STORAGE_IO. */
  async close(): Promise<void> {
    if (this.failure === undefined) this.failure = new KinError('STORAGE_IO', 'the ledger file is closed')
    await this.file.close()
  }
}
