/** @module ECDSA verification on P-256 in BigInt arithmetic (FIPS 186-5 §6.4.2): verify-only, small enough for kin-core's 1 MiB heap. */
/*
 * Why not @noble/curves here. Its p256 verifies the same (test/pki/p256.test.ts holds this file to it and to
 * node:crypto), but in kin-core it cost 41.7 KB minified (14.8 KB gzipped, past the 48 KiB budget) and 222 KB of
 * QuickJS heap at load: the heap peak of test/footprint/quickjs.test.ts went from 1,040,384 to 1,495,040 bytes
 * (DESIGN.md "Small devices": ~1 MiB). Verification handles only public data (the key, the message, the signature), so it needs no constant-time
 * arithmetic: this file is the textbook algorithm, Jacobian coordinates and Shamir's trick, about 2 KiB minified.
 */

/** The field prime p = 2^256 − 2^224 + 2^192 + 2^96 − 1 (SEC 2 §2.4.2). */
const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn
/** The group order n. */
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n
// y² = x³ − 3x + b.
const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn
const GX = 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n
const GY = 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n

/** A point in Jacobian coordinates (x = X/Z², y = Y/Z³); Z = 0 is the point at infinity. */
type Jacobian = readonly [bigint, bigint, bigint]
const INFINITY: Jacobian = [1n, 1n, 0n]

function mod(a: bigint, m: bigint = P): bigint {
  const r = a % m
  return r < 0n ? r + m : r
}

// Fermat: a^(m−2) mod m for the primes p and n; a is never 0 here.
function invert(a: bigint, m: bigint): bigint {
  let result = 1n,
    base = mod(a, m),
    e = m - 2n
  while (e > 0n) {
    if (e & 1n) result = (result * base) % m
    base = (base * base) % m
    e >>= 1n
  }
  return result
}

// dbl-2001-b (a = −3): 3M + 5S.
function double([x, y, z]: Jacobian): Jacobian {
  if (z === 0n || y === 0n) return INFINITY
  const delta = mod(z * z),
    gamma = mod(y * y),
    beta = mod(x * gamma)
  const alpha = mod(3n * (x - delta) * (x + delta))
  const x3 = mod(alpha * alpha - 8n * beta)
  const z3 = mod((y + z) * (y + z) - gamma - delta)
  const y3 = mod(alpha * (4n * beta - x3) - 8n * gamma * gamma)
  return [x3, y3, z3]
}

// add-2007-bl without its shortcuts: 11M + 5S; doubles when both are the same point.
function add(p1: Jacobian, p2: Jacobian): Jacobian {
  const [x1, y1, z1] = p1,
    [x2, y2, z2] = p2
  if (z1 === 0n) return p2
  if (z2 === 0n) return p1
  const z1z1 = mod(z1 * z1),
    z2z2 = mod(z2 * z2)
  const u1 = mod(x1 * z2z2),
    u2 = mod(x2 * z1z1)
  const s1 = mod(y1 * z2 * z2z2),
    s2 = mod(y2 * z1 * z1z1)
  if (u1 === u2) return s1 === s2 ? double(p1) : INFINITY
  const h = mod(u2 - u1),
    r = mod(s2 - s1)
  const hh = mod(h * h),
    hhh = mod(h * hh),
    v = mod(u1 * hh)
  const x3 = mod(r * r - hhh - 2n * v)
  const y3 = mod(r * (v - x3) - s1 * hhh)
  return [x3, y3, mod(h * z1 * z2)]
}

function bigOf(bytes: Uint8Array, from: number, to: number): bigint {
  let v = 0n
  for (let i = from; i < to; i++) v = (v << 8n) | BigInt(bytes[i]!)
  return v
}

/**
 * FIPS 186-5 §6.4.2: whether the signature r ‖ s (64 bytes, 1 ≤ r, s < n, as ecdsa-signature.ts reads it) is valid for
 * the 32-byte SHA-256 `digest` under the uncompressed public point `point` (65 bytes, 0x04 ‖ x ‖ y). The point must
 * lie on the curve (SEC 1 §3.2.2.1); anything else is false.
 */
export function verifyP256(digest: Uint8Array, compact: Uint8Array, point: Uint8Array): boolean {
  if (digest.length !== 32 || compact.length !== 64 || point.length !== 65 || point[0] !== 0x04) return false
  const qx = bigOf(point, 1, 33),
    qy = bigOf(point, 33, 65)
  if (qx >= P || qy >= P || mod(qy * qy - (qx * qx * qx - 3n * qx + B)) !== 0n) return false
  const r = bigOf(compact, 0, 32),
    s = bigOf(compact, 32, 64)
  if (r < 1n || r >= N || s < 1n || s >= N) return false
  // The digest is as long as n, so it is used whole (§6.4.2 step 3); e may exceed n and is reduced.
  const e = bigOf(digest, 0, 32)
  const w = invert(s, N)
  const u1 = mod(e * w, N),
    u2 = mod(r * w, N)
  // Shamir's trick: u1·G + u2·Q in one pass of doublings.
  const g: Jacobian = [GX, GY, 1n],
    q: Jacobian = [qx, qy, 1n],
    gq = add(g, q)
  let acc = INFINITY
  for (let bit = 255n; bit >= 0n; bit--) {
    acc = double(acc)
    const a = (u1 >> bit) & 1n,
      b = (u2 >> bit) & 1n
    if (a === 1n && b === 1n) acc = add(acc, gq)
    else if (a === 1n) acc = add(acc, g)
    else if (b === 1n) acc = add(acc, q)
  }
  const [x, , z] = acc
  if (z === 0n) return false
  const zInv = invert(z, P)
  return mod(mod(x * zInv * zInv), N) === r
}
