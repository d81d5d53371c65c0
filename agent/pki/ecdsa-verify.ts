/** @module Portable ECDSA P-256 SHA-256 verification on @noble/curves, for engines without node:crypto or WebCrypto. */
import { p256 } from '@noble/curves/nist.js'
import { readP256PublicKey } from './key-parameters.ts'
import { p256SignatureCompact } from './ecdsa-signature.ts'
import { defaultSha256, type Sha256 } from './rsa-verify.ts'

/**
 * Verifies an ecdsa-with-SHA256 signature (DER Ecdsa-Sig-Value) of `message` by the P-256 key of `spkiDer` (FIPS
 * 186-5 §6.4.2). False (never a throw) for a key not on P-256 or not on the curve, and for a signature that is not
 * strict DER with 1 ≤ r, s < n; high s is accepted, as X.509 verifiers do.
 */
export function verifyEcdsaP256Sha256(spkiDer: Uint8Array, message: Uint8Array, signature: Uint8Array, sha256: Sha256 = defaultSha256): boolean {
  try {
    const point = readP256PublicKey(spkiDer)
    const compact = p256SignatureCompact(signature)
    if (compact === undefined) return false
    // The digest is computed here (prehash off) so a CryptoProvider's SHA-256 does it; lowS off for X.509 (see above).
    return p256.verify(compact, sha256(message), point, { prehash: false, lowS: false, format: 'compact' })
  } catch {
    return false
  }
}
