/** @module Portable ECDSA P-256 SHA-256 verification in BigInt (p256.ts), for engines without node:crypto or WebCrypto. */
import { verifyP256 } from './p256.ts'
import { readP256PublicKey } from './key-parameters.ts'
import { p256SignatureCompact } from './ecdsa-signature.ts'
import { defaultSha256, type Sha256 } from './rsa-verify.ts'

/**
 * Verifies an ecdsa-with-SHA256 signature (DER Ecdsa-Sig-Value) of `message` by the P-256 key of `spkiDer` (FIPS
 * 186-5 §6.4.2). False (never a throw) for a key not on P-256 or not on the curve, and for a signature that is not
 * strict DER with 1 ≤ r, s < n; high s is accepted, as X.509 verifiers do.
 */
export function verifyEcdsaP256Sha256(
  spkiDer: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
  sha256: Sha256 = defaultSha256,
): boolean {
  try {
    const point = readP256PublicKey(spkiDer)
    const compact = p256SignatureCompact(signature)
    if (compact === undefined) return false
    return verifyP256(sha256(message), compact, point)
  } catch {
    return false
  }
}
