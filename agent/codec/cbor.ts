/** @module Deterministic CBOR (RFC 8949 §4.2.1) over cbor-x: canonical encode, strict decode of untrusted bytes. */
import { Encoder, Decoder } from 'cbor-x'
import { DecodeError } from '../errors.ts'
import { bytesEqual } from './bytes.ts'

/** A CBOR value as kinship uses it: no maps, no floats, no tags. */
export type CborValue = number | string | boolean | null | Uint8Array | CborValue[]

const encoder = new Encoder({ useRecords: false, tagUint8Array: false, variableMapSize: true, mapsAsObjects: false, pack: false })
const decoder = new Decoder({ useRecords: false, mapsAsObjects: false })

/** Largest integer kinship encodes: cbor-x writes larger ones as floats, which are not canonical. */
export const MAX_UINT = 0xffffffff

function checkValue(v: unknown, depth: number): void {
  if (depth > 8) throw new DecodeError('DECODE_SHAPE', 'CBOR nesting deeper than 8')
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 0 || v > MAX_UINT) throw new DecodeError('DECODE_FIELD', `CBOR integer out of range: ${v}`)
  } else if (Array.isArray(v)) {
    for (const x of v) checkValue(x, depth + 1)
  } else if (!(v instanceof Uint8Array) && typeof v !== 'string' && typeof v !== 'boolean' && v !== null) {
    throw new DecodeError('DECODE_FIELD', `CBOR item of unsupported kind: ${Object.prototype.toString.call(v)}`)
  }
}

function plain(v: unknown): CborValue {
  // cbor-x gives Node Buffers on Node; copy to plain Uint8Array so equality and hashing see the same bytes everywhere.
  if (v instanceof Uint8Array) return new Uint8Array(v)
  if (Array.isArray(v)) return v.map(plain)
  return v as CborValue
}

/** Canonical CBOR encoding of `value` (unsigned integers up to 2^32-1, byte and text strings, arrays). */
export function encodeCbor(value: CborValue): Uint8Array {
  checkValue(value, 0)
  const out = encoder.encode(value)
  return new Uint8Array(out.buffer, out.byteOffset, out.length)
}

/**
 * Decodes exactly one canonical CBOR item from untrusted bytes.
 * Rejects trailing bytes, truncation, maps, floats, tags, negative integers and any non-canonical form
 * (the bytes must equal the re-encoding of what they decode to).
 */
export function decodeCbor(bytes: Uint8Array, maxBytes = 1 << 20): CborValue {
  if (!(bytes instanceof Uint8Array)) throw new DecodeError('DECODE_CBOR', 'expected bytes')
  if (bytes.length > maxBytes) throw new DecodeError('DECODE_OVERSIZE', `CBOR item of ${bytes.length} bytes exceeds ${maxBytes}`)
  if (bytes.length === 0) throw new DecodeError('DECODE_CBOR', 'empty input')
  let value: unknown
  try {
    value = decoder.decode(bytes)
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e)
    if (/end of buffer not reached/.test(msg)) throw new DecodeError('DECODE_TRAILING', 'trailing bytes after the CBOR item', { cause: e })
    throw new DecodeError('DECODE_CBOR', `malformed CBOR: ${msg}`, { cause: e })
  }
  checkValue(value, 0)
  const v = plain(value)
  let again: Uint8Array
  try {
    again = encodeCbor(v)
  } catch (e) {
    throw new DecodeError('DECODE_NONCANONICAL', 'CBOR item cannot be re-encoded canonically', { cause: e })
  }
  if (!bytesEqual(again, bytes)) throw new DecodeError('DECODE_NONCANONICAL', 'CBOR item is not in deterministic encoding (RFC 8949 §4.2.1)')
  return v
}
