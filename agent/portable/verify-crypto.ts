/** @module The crypto of a device that only verifies (kin-core): SHA-256 and Ed25519 verification, no randomness, no keys. */
import { sha256 } from '@noble/hashes/sha2.js'
import { KinError } from '../errors.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { abytes } from '../codec/bytes.ts'
import { ed25519Verify } from './ed25519-verify.ts'

// RFC 8032 §5.1.7: S must be below the group order L = 2^252 + 27742317777372353535851937790883648493.
// tweetnacl does not check it, so S + L would verify there but not on node:crypto (and change the event id).
const ORDER_L = [
  0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0x10,
]

/** Whether the S half of a 64-byte Ed25519 signature is below the group order L (RFC 8032 §5.1.7). */
export function isCanonicalScalar(signature: Uint8Array): boolean {
  for (let i = 31; i >= 0; i--) {
    const s = signature[32 + i]!,
      l = ORDER_L[i]!
    if (s !== l) return s < l
  }
  return false
}

/** The checks before any arithmetic: lengths and types, and a canonical S. */
export function verifiableSignature(signature: unknown, message: unknown, publicKey: unknown): boolean {
  return (
    signature instanceof Uint8Array &&
    signature.length === 64 &&
    publicKey instanceof Uint8Array &&
    publicKey.length === 32 &&
    message instanceof Uint8Array &&
    isCanonicalScalar(signature)
  )
}

function verifiesOnly(): never {
  throw new KinError('BAD_ARGUMENT', 'kin-core verifies; it has no randomness and holds no private key')
}

/** SHA-256 (@noble/hashes) and Ed25519 verification (ed25519-verify.ts); randomness, keys and signing refuse. */
export const verifyingCrypto: CryptoProvider = {
  name: 'portable',
  sha256(data) {
    return sha256(abytes('data', data))
  },
  randomBytes: verifiesOnly,
  ed25519KeyPair: verifiesOnly,
  ed25519PublicKey: verifiesOnly,
  ed25519Sign: verifiesOnly,
  ed25519Verify(signature, message, publicKey) {
    if (!verifiableSignature(signature, message, publicKey)) return false
    try {
      return ed25519Verify(signature, message, publicKey)
    } catch {
      return false
    }
  },
}
