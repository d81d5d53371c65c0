/** @module Node crypto: node:crypto Ed25519 and SHA-256, the fast path on Raspberry-Pi-class devices. */
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto'
import type { CryptoProvider } from '../types.ts'
import { abytes } from '../../agent/codec/bytes.ts'

// RFC 8410 DER prefixes: wrapping a raw 32-byte key this way is how node:crypto accepts raw Ed25519 keys.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

// Verification keys are parsed once per public key: the miner and access checks see the same issuers again and again.
const publicKeyCache = new Map<string, KeyObject>()
const PUBLIC_KEY_CACHE_LIMIT = 4096

function privateKeyObject(seed: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' })
}

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  const k = Buffer.from(publicKey).toString('base64')
  let obj = publicKeyCache.get(k)
  if (obj === undefined) {
    obj = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' })
    if (publicKeyCache.size >= PUBLIC_KEY_CACHE_LIMIT) publicKeyCache.clear()
    publicKeyCache.set(k, obj)
  }
  return obj
}

function rawPublicKey(seed: Uint8Array): Uint8Array {
  const der = createPublicKey(privateKeyObject(seed)).export({ format: 'der', type: 'spki' })
  return new Uint8Array(der.subarray(der.length - 32))
}

function asBytes(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.length)
}

/** The node:crypto provider; the default on Node. */
export const nodeCrypto: CryptoProvider = {
  name: 'node',
  sha256(data) {
    return asBytes(createHash('sha256').update(abytes('data', data)).digest())
  },
  randomBytes(length) {
    return asBytes(randomBytes(length))
  },
  ed25519KeyPair(seed) {
    const s = seed === undefined ? asBytes(randomBytes(32)) : Uint8Array.from(abytes('seed', seed, 32))
    return { publicKey: rawPublicKey(s), secretKey: s }
  },
  ed25519PublicKey(secretKey) {
    return rawPublicKey(abytes('secretKey', secretKey, 32))
  },
  ed25519Sign(message, secretKey) {
    return asBytes(sign(null, abytes('message', message), privateKeyObject(abytes('secretKey', secretKey, 32))))
  },
  ed25519Verify(signature, message, publicKey) {
    if (!(signature instanceof Uint8Array) || signature.length !== 64) return false
    if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) return false
    if (!(message instanceof Uint8Array)) return false
    try {
      return verify(null, message, publicKeyObject(publicKey), signature)
    } catch {
      return false
    }
  },
}
