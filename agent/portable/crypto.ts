/** @module Portable crypto: tweetnacl Ed25519 and @noble/hashes SHA-256, pure JavaScript for any engine. */
import nacl from 'tweetnacl'
import { sha256 } from '@noble/hashes/sha2.js'
import type { CryptoProvider } from '../ports/platform.ts'
import { abytes } from '../codec/bytes.ts'

// RFC 8032 §5.1.7: S must be below the group order L = 2^252 + 27742317777372353535851937790883648493.
// tweetnacl does not check it, so S + L would verify here but not on node:crypto (and change the event id).
const ORDER_L = [
  0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0x10,
]

function isCanonicalScalar(signature: Uint8Array): boolean {
  for (let i = 31; i >= 0; i--) {
    const s = signature[32 + i]!,
      l = ORDER_L[i]!
    if (s !== l) return s < l
  }
  return false
}

/** The portable provider; the default where no native crypto exists. */
export const portableCrypto: CryptoProvider = {
  name: 'portable',
  sha256(data) {
    return sha256(abytes('data', data))
  },
  randomBytes(length) {
    return nacl.randomBytes(length)
  },
  ed25519KeyPair(seed) {
    const s = seed === undefined ? nacl.randomBytes(32) : abytes('seed', seed, 32)
    const kp = nacl.sign.keyPair.fromSeed(s)
    return { publicKey: kp.publicKey, secretKey: Uint8Array.from(s) }
  },
  ed25519PublicKey(secretKey) {
    return nacl.sign.keyPair.fromSeed(abytes('secretKey', secretKey, 32)).publicKey
  },
  ed25519Sign(message, secretKey) {
    const kp = nacl.sign.keyPair.fromSeed(abytes('secretKey', secretKey, 32))
    return nacl.sign.detached(abytes('message', message), kp.secretKey)
  },
  ed25519Verify(signature, message, publicKey) {
    if (!(signature instanceof Uint8Array) || signature.length !== 64) return false
    if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) return false
    if (!(message instanceof Uint8Array)) return false
    if (!isCanonicalScalar(signature)) return false
    try {
      return nacl.sign.detached.verify(message, signature, publicKey)
    } catch {
      return false
    }
  },
}
