/** @module The portable SignatureVerifier: BigInt RSA and @noble/curves P-256, the same on Node, kin-core and QuickJS. */
import { verifyEcdsaP256Sha256 } from './ecdsa-verify.ts'
import { defaultSha256, verifyRsaSha256, type Sha256 } from './rsa-verify.ts'
import type { SignatureVerifier } from './verifier.ts'

/** A portable verifier hashing with `sha256` (a CryptoProvider's; default @noble/hashes). */
export function createPortableVerifier(sha256: Sha256 = defaultSha256, name = 'portable'): SignatureVerifier {
  return {
    name,
    verifySignature(algorithm, spkiDer, message, signature) {
      if (algorithm === 'rsa-pkcs1-sha256') return verifyRsaSha256(spkiDer, message, signature, sha256)
      if (algorithm === 'ecdsa-p256-sha256') return verifyEcdsaP256Sha256(spkiDer, message, signature, sha256)
      return false
    },
  }
}

/** The portable verifier on @noble/hashes SHA-256. */
export const portableVerifier: SignatureVerifier = createPortableVerifier()
