/** @module Byte helpers: hex, equality, concatenation and argument checks that name the argument. */

/** Asserts `value` is a Uint8Array, optionally of an exact length; names the argument in the error. */
export function abytes(name: string, value: unknown, length?: number): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new TypeError(`"${name}" expected Uint8Array, got ${typeof value}`)
  if (length !== undefined && value.length !== length) {
    throw new RangeError(`"${name}" expected ${length} bytes, got ${value.length}`)
  }
  return value
}

/** Lowercase hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  const pairs = new Array<string>(bytes.length)
  for (let i = 0; i < bytes.length; i++) pairs[i] = HEX_PAIRS[bytes[i]!]!
  // One join, not `+=`: V8 keeps a string built by concatenation as a rope of its pieces (872 B on the heap for a
  // 32-byte id against 87 B flat, and slower to make), and hex ids are kept as map keys by every replica.
  return pairs.join('')
}

// Two hex digits per byte value: ids are turned to hex for every look-up, so this is on the ledger's hot path.
const HEX_PAIRS: readonly string[] = Array.from({ length: 256 }, (_, b) => (b < 16 ? '0' : '') + b.toString(16))

/** Bytes of a hex string; throws RangeError on odd length or a non-hex character. */
export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex))
    throw new RangeError('"hex" expected an even number of hex digits')
  const out = new Uint8Array(hex.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16)
  return out
}

/** Constant-time-ish equality of two byte arrays (length leaks, content does not). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!
  return diff === 0
}

/** Concatenation of byte arrays. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/** UTF-8 encoding of a string. */
export function utf8(s: string): Uint8Array {
  return new TextEncoder().encode(s)
}

/** Lexicographic byte comparison: negative, zero or positive. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!
  return a.length - b.length
}
