/** @module Portable crypto: tweetnacl Ed25519 and @noble/hashes SHA-256, pure JavaScript for any engine. */
import nacl from 'tweetnacl'
import { sha256 } from '@noble/hashes/sha2.js'
import type { CryptoProvider } from '../ports/platform.ts'
import { abytes } from '../codec/bytes.ts'
import { verifiableSignature } from './verify-crypto.ts'

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
    if (!verifiableSignature(signature, message, publicKey)) return false
    try {
      return nacl.sign.detached.verify(message, signature, publicKey)
    } catch {
      return false
    }
  },
}
