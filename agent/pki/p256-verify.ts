/** @module Portable ECDSA P-256 SHA-256 verification on @noble/curves: DER signature values, as X.509 and kinship's challenge answers carry them. */
import { p256 } from '@noble/curves/nist.js'
import { isP256Spki } from './key-type.ts'
import type { Sha256 } from './rsa-verify.ts'

/**
 * True when `signature` (DER Ecdsa-Sig-Value, RFC 5758 §3.2) is an ECDSA signature of SHA-256(`message`) by the
 * P-256 key of `spki`; false, never a throw, for anything malformed or another kind of key. High-S signatures are
 * valid ECDSA (WebCrypto and OpenSSL make them).
 */
export function verifyP256Sha256(spki: Uint8Array, message: Uint8Array, signature: Uint8Array, sha256: Sha256): boolean {
  try {
    // A P-256 SubjectPublicKeyInfo ends with the uncompressed point's 65 bytes (RFC 5480 §2.2).
    return isP256Spki(spki) && p256.verify(signature, sha256(message), spki.subarray(spki.length - 65), { prehash: false, format: 'der', lowS: false })
  } catch {
    return false
  }
}
