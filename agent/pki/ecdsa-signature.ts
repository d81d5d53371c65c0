/** @module ECDSA P-256 signatures as X.509 carries them: strict DER Ecdsa-Sig-Value, read the same way on every path. */
import { readElement, TAG } from './der.ts'

/** The order n of P-256's base point (SEC 2 §2.4.2, FIPS 186-5 §D.1.2.3). */
export const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n

/** Longest DER Ecdsa-Sig-Value for P-256: a SEQUENCE of two 33-byte INTEGERs. */
export const MAX_P256_SIGNATURE_BYTES = 72

function scalar(bytes: Uint8Array, start: number, end: number): bigint | undefined {
  const length = end - start
  if (length < 1 || length > 33 || (bytes[start]! & 0x80) !== 0) return undefined
  // X.690 §8.3.2: no redundant leading zero byte.
  if (length > 1 && bytes[start] === 0 && (bytes[start + 1]! & 0x80) === 0) return undefined
  let value = 0n
  for (let i = start; i < end; i++) value = (value << 8n) | BigInt(bytes[i]!)
  return value
}

function fixed32(value: bigint): Uint8Array {
  const out = new Uint8Array(32)
  for (let i = 31, v = value; i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn)
  return out
}

/**
 * RFC 3279 §2.2.3 Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } in DER, as 64 bytes r ‖ s; undefined unless
 * the encoding is strict (minimal lengths and integers, nothing after it) and 1 ≤ r, s < n (SEC 1 §4.1.4 step 1).
 * High s is accepted: X.509 signers need not normalise it, and OpenSSL does not. Both verifiers call this first, so
 * node:crypto and @noble/curves never see an encoding they might judge differently.
 */
export function p256SignatureCompact(signature: Uint8Array): Uint8Array | undefined {
  if (signature.length < 8 || signature.length > MAX_P256_SIGNATURE_BYTES) return undefined
  try {
    const outer = readElement(signature, 0, 'CERT_PARSE')
    if (outer.tag !== TAG.sequence || outer.end !== signature.length) return undefined
    const r = readElement(signature, outer.contentStart, 'CERT_PARSE')
    if (r.tag !== TAG.integer || r.end > outer.end) return undefined
    const s = readElement(signature, r.end, 'CERT_PARSE')
    if (s.tag !== TAG.integer || s.end !== outer.end) return undefined
    const rv = scalar(signature, r.contentStart, r.end),
      sv = scalar(signature, s.contentStart, s.end)
    if (rv === undefined || sv === undefined || rv === 0n || sv === 0n || rv >= P256_ORDER || sv >= P256_ORDER)
      return undefined
    const out = new Uint8Array(64)
    out.set(fixed32(rv), 0)
    out.set(fixed32(sv), 32)
    return out
  } catch {
    return undefined
  }
}
