/** @module Deterministic CBOR (RFC 8949 §4.2.1) over cbor-x: canonical encode, strict decode of untrusted bytes. */
import { Encoder, Decoder } from 'cbor-x'
import { DecodeError } from '../errors.ts'

/** A CBOR value as kinship uses it: no maps, no floats, no tags. */
export type CborValue = number | string | boolean | null | Uint8Array | CborValue[]

const encoder = new Encoder({
  useRecords: false,
  tagUint8Array: false,
  variableMapSize: true,
  mapsAsObjects: false,
  pack: false,
})
const decoder = new Decoder({ useRecords: false, mapsAsObjects: false })

/** Largest integer kinship encodes: cbor-x writes larger ones as floats, which are not canonical. */
export const MAX_UINT = 0xffffffff

/** Deepest nesting kinship's CBOR has room for: an item inside more arrays than this is refused. */
const MAX_DEPTH = 8

function checkValue(v: unknown, depth: number): void {
  if (depth > MAX_DEPTH) throw new DecodeError('DECODE_SHAPE', `CBOR nesting deeper than ${MAX_DEPTH}`)
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 0 || v > MAX_UINT)
      throw new DecodeError('DECODE_FIELD', `CBOR integer out of range: ${v}`)
  } else if (Array.isArray(v)) {
    for (const x of v) checkValue(x, depth + 1)
  } else if (!(v instanceof Uint8Array) && typeof v !== 'string' && typeof v !== 'boolean' && v !== null) {
    throw new DecodeError('DECODE_FIELD', `CBOR item of unsupported kind: ${Object.prototype.toString.call(v)}`)
  }
}

// cbor-x hands out byte strings as views into its input (Buffers when the input is one). A plain Uint8Array copy
// each by default, so nothing decoded aliases the caller's bytes; `views` keeps them views (as plain Uint8Arrays)
// for a caller that owns the input and never changes it.
function plain(v: unknown, views: boolean): CborValue {
  if (v instanceof Uint8Array) return views ? new Uint8Array(v.buffer, v.byteOffset, v.length) : new Uint8Array(v)
  if (Array.isArray(v)) return v.map(x => plain(x, views))
  return v as CborValue
}

/** Canonical CBOR encoding of `value` (unsigned integers up to 2^32-1, byte and text strings, arrays). */
export function encodeCbor(value: CborValue): Uint8Array {
  checkValue(value, 0)
  const out = encoder.encode(value)
  return new Uint8Array(out.buffer, out.byteOffset, out.length)
}

// ---- canonical form, checked on the bytes ---------------------------------------------------------------------

function nonCanonical(what: string): never {
  throw new DecodeError('DECODE_NONCANONICAL', `CBOR item is not in deterministic encoding (RFC 8949 §4.2.1): ${what}`)
}

// The argument of the head at `pos` (RFC 8949 §3): its value and where the content starts. Shortest form only
// (§4.2.1 "preferred serialization"); an indefinite length (additional information 31) is never deterministic.
function readHead(bytes: Uint8Array, pos: number): { major: number; arg: number; next: number } {
  const b = bytes[pos]!
  const major = b >> 5,
    ai = b & 0x1f
  if (ai < 24) return { major, arg: ai, next: pos + 1 }
  if (ai === 24) {
    const v = bytes[pos + 1]!
    if (v < 24) nonCanonical('a one-byte argument below 24')
    return { major, arg: v, next: pos + 2 }
  }
  if (ai === 25) {
    const v = (bytes[pos + 1]! << 8) | bytes[pos + 2]!
    if (v < 0x100) nonCanonical('a two-byte argument below 256')
    return { major, arg: v, next: pos + 3 }
  }
  if (ai === 26) {
    const v = bytes[pos + 1]! * 0x1000000 + ((bytes[pos + 2]! << 16) | (bytes[pos + 3]! << 8) | bytes[pos + 4]!)
    if (v < 0x10000) nonCanonical('a four-byte argument below 65536')
    return { major, arg: v, next: pos + 5 }
  }
  return nonCanonical(ai === 31 ? 'an indefinite length' : 'an eight-byte argument')
}

// Well-formed UTF-8 (RFC 3629 §4): no overlong forms, no surrogates, nothing above U+10FFFF. A text string that is
// not would decode to replacement characters and re-encode to other bytes.
function checkUtf8(bytes: Uint8Array, start: number, end: number): void {
  for (let i = start; i < end;) {
    const b = bytes[i]!
    if (b < 0x80) {
      i++
      continue
    }
    let n: number, min: number, cp: number
    if (b >= 0xc2 && b <= 0xdf) {
      n = 1
      min = 0x80
      cp = b & 0x1f
    } else if (b >= 0xe0 && b <= 0xef) {
      n = 2
      min = 0x800
      cp = b & 0x0f
    } else if (b >= 0xf0 && b <= 0xf4) {
      n = 3
      min = 0x10000
      cp = b & 0x07
    } else return nonCanonical('a text string that is not UTF-8')
    if (i + n >= end) nonCanonical('a text string cut inside a UTF-8 sequence')
    for (let k = 1; k <= n; k++) {
      const c = bytes[i + k]!
      if ((c & 0xc0) !== 0x80) nonCanonical('a text string that is not UTF-8')
      cp = (cp << 6) | (c & 0x3f)
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) nonCanonical('a text string that is not UTF-8')
    i += n + 1
  }
}

// Walks one item from `pos` and returns where it ends. Runs only on bytes the decoder already read as exactly one
// item of the kinds checkValue allows, so lengths are in bounds; what is checked here is the form alone.
function checkCanonicalAt(bytes: Uint8Array, pos: number): number {
  const { major, arg, next } = readHead(bytes, pos)
  switch (major) {
    case 0:
      return next
    case 2:
      return next + arg
    case 3:
      checkUtf8(bytes, next, next + arg)
      return next + arg
    case 4: {
      let p = next
      for (let i = 0; i < arg; i++) p = checkCanonicalAt(bytes, p)
      return p
    }
    case 7:
      if (arg >= 20 && arg <= 22) return next
      return nonCanonical('a float or simple value')
    default:
      return nonCanonical(major === 6 ? 'a tag' : major === 5 ? 'a map' : 'a negative integer')
  }
}

// The argument of the head at `pos` and the head's size, or undefined for the heads checkNesting leaves to the decoder.
function headArgument(bytes: Uint8Array, pos: number): { arg: number; size: number } | undefined {
  const ai = bytes[pos]! & 0x1f
  const at = (k: number): number => bytes[pos + k] ?? 0
  if (ai < 24) return { arg: ai, size: 1 }
  if (ai === 24) return { arg: at(1), size: 2 }
  if (ai === 25) return { arg: (at(1) << 8) | at(2), size: 3 }
  if (ai === 26) return { arg: at(1) * 0x1000000 + ((at(2) << 16) | (at(3) << 8) | at(4)), size: 5 }
  return undefined
}

/** Nesting past which the decoder is not run at all: far beyond MAX_DEPTH, far below what exhausts its stack. */
const DECODER_DEPTH = 64

// cbor-x decodes nested items by recursion: a payload of 100 000 nested array heads (100 kB, within a submission's
// limit) ran it out of stack and was refused only by the RangeError, as malformed CBOR, after about 1.3 ms. The heads
// of the first item are counted here first, from the bytes, without recursion. Only nesting past DECODER_DEPTH is
// refused here (DECODE_SHAPE, as checkValue refuses anything past MAX_DEPTH), so that every other input, truncated or
// not, gets the decoder's own code. Arrays, maps, tags and indefinite lengths count as containers; eight-byte
// arguments and reserved heads end the count: the decoder and the canonical check refuse those.
function checkNesting(bytes: Uint8Array): void {
  const left: number[] = [] // items still to come in each container entered
  let pos = 0
  do {
    if (left.length > DECODER_DEPTH) throw new DecodeError('DECODE_SHAPE', `CBOR nesting deeper than ${MAX_DEPTH}`)
    if (pos >= bytes.length) return
    // An indefinite length (never canonical) opens a container its break (0xff) closes: 5 000 indefinite arrays
    // nest as deep as 5 000 definite ones.
    if ((bytes[pos]! & 0x1f) === 31) {
      const major = bytes[pos++]! >> 5
      if (major >= 2 && major <= 5) {
        if (left.length > 0) left[left.length - 1]!--
        left.push(Infinity)
        continue
      }
      if (major !== 7) return
      left.pop()
      while (left.length > 0 && left[left.length - 1] === 0) left.pop()
      continue
    }
    const head = headArgument(bytes, pos)
    if (head === undefined) return
    const major = bytes[pos]! >> 5
    pos += head.size
    if (left.length > 0) left[left.length - 1]!--
    const items = major === 4 ? head.arg : major === 5 ? 2 * head.arg : major === 6 ? 1 : 0
    if (items > 0) {
      left.push(items)
      continue
    }
    if (major === 2 || major === 3) pos += head.arg
    while (left.length > 0 && left[left.length - 1] === 0) left.pop()
  } while (left.length > 0)
}

/**
 * Decodes exactly one canonical CBOR item from untrusted bytes.
 * Rejects trailing bytes, truncation, maps, floats, tags, negative integers and any non-canonical form:
 * heads in shortest form, definite lengths, well-formed UTF-8 — so the bytes are exactly the canonical encoding
 * of what they decode to (test/ledger/cbor-canonical.test.ts holds this check to re-encoding).
 */
export function decodeCbor(bytes: Uint8Array, maxBytes = 1 << 20, opts: { views?: boolean } = {}): CborValue {
  if (!(bytes instanceof Uint8Array)) throw new DecodeError('DECODE_CBOR', 'expected bytes')
  if (bytes.length > maxBytes)
    throw new DecodeError('DECODE_OVERSIZE', `CBOR item of ${bytes.length} bytes exceeds ${maxBytes}`)
  if (bytes.length === 0) throw new DecodeError('DECODE_CBOR', 'empty input')
  checkNesting(bytes)
  let value: unknown
  try {
    value = decoder.decode(bytes)
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e)
    if (/end of buffer not reached/.test(msg))
      throw new DecodeError('DECODE_TRAILING', 'trailing bytes after the CBOR item', { cause: e })
    throw new DecodeError('DECODE_CBOR', `malformed CBOR: ${msg}`, { cause: e })
  }
  checkValue(value, 0)
  if (checkCanonicalAt(bytes, 0) !== bytes.length)
    throw new DecodeError('DECODE_TRAILING', 'trailing bytes after the CBOR item')
  return plain(value, opts.views === true)
}
