/** @module Generators of CBOR test input: well-formed items of every major type (RFC 8949 §3), canonical or not. */
import fc from 'fast-check'

/** One CBOR head of major type `major` with argument `n`, written `width` bytes wide (0: inline when it fits). */
export function head(major: number, n: number, width: 0 | 1 | 2 | 4 | 8): number[] {
  const m = major << 5
  if (width === 0) return n < 24 ? [m | n] : head(major, n, 1)
  if (width === 1) return n < 256 ? [m | 24, n] : head(major, n, 2)
  if (width === 2) return n < 65536 ? [m | 25, n >> 8, n & 255] : head(major, n, 4)
  if (width === 4)
    return n <= 0xffffffff ? [m | 26, (n >>> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255] : head(major, n, 8)
  const hi = Math.floor(n / 2 ** 32),
    lo = n >>> 0
  return [
    m | 27,
    (hi >>> 24) & 255,
    (hi >> 16) & 255,
    (hi >> 8) & 255,
    hi & 255,
    (lo >>> 24) & 255,
    (lo >> 16) & 255,
    (lo >> 8) & 255,
    lo & 255,
  ]
}
const width = fc.constantFrom<0 | 1 | 2 | 4 | 8>(0, 0, 0, 1, 2, 4, 8)
/** A well-formed CBOR item of any major type, definite or indefinite, canonical or not, as bytes. */
export const item: fc.Memo<number[]> = fc.memo(depth => {
  const leaf: fc.Arbitrary<number[]> = fc.oneof(
    fc.tuple(fc.nat({ max: 0xffffffff }), width).map(([n, w]) => head(0, n, w)),
    fc.tuple(fc.nat({ max: 1000 }), width).map(([n, w]) => head(1, n, w)),
    fc.tuple(fc.uint8Array({ maxLength: 12 }), width).map(([b, w]) => [...head(2, b.length, w), ...b]),
    fc.tuple(fc.string({ unit: 'binary', maxLength: 6 }), width).map(([s, w]) => {
      const b = Buffer.from(s, 'utf8')
      return [...head(3, b.length, w), ...b]
    }),
    fc.tuple(fc.uint8Array({ maxLength: 8 }), width).map(([b, w]) => [...head(3, b.length, w), ...b]),
    fc.constantFrom<number[]>(
      [0xf4],
      [0xf5],
      [0xf6],
      [0xf7],
      [0xf0],
      [0xf8, 0x20],
      [0xf9, 0x3c, 0x00],
      [0xf9, 0x7e, 0x00],
      [0xfa, 0x3f, 0xc0, 0, 0],
      [0xfb, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18],
    ),
    fc.constantFrom<number[]>(
      [0x5f, 0x41, 0x01, 0x42, 0x02, 0x03, 0xff],
      [0x7f, 0x61, 0x61, 0xff],
      [0x9f, 0x01, 0xff],
      [0xbf, 0x01, 0x02, 0xff],
      [0xff],
      [0x81, 0xff],
    ),
  )
  if (depth <= 0) return leaf
  return fc.oneof(
    leaf,
    fc
      .tuple(fc.array(item(depth - 1), { maxLength: 4 }), width)
      .map(([items, w]) => [...head(4, items.length, w), ...items.flat()]),
    fc
      .tuple(fc.array(fc.tuple(item(depth - 1), item(depth - 1)), { maxLength: 3 }), width)
      .map(([pairs, w]) => [...head(5, pairs.length, w), ...pairs.flat(2)]),
    fc
      .tuple(fc.constantFrom(0, 1, 2, 24, 32, 64, 100, 55799), item(depth - 1))
      .map(([tag, inner]) => [...head(6, tag, 0), ...inner]),
  )
})
