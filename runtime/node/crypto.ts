/** @module Node crypto: node:crypto Ed25519 and SHA-256, the fast path on Raspberry-Pi-class devices. */
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto'
import type { CryptoProvider } from '../../agent/ports/platform.ts'
import { abytes } from '../../agent/codec/bytes.ts'

// RFC 8410 DER prefix: wrapping a raw 32-byte seed this way is how node:crypto accepts a raw Ed25519 private key.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')

// Verification keys are parsed once per public key: the miner and access checks see the same issuers again and again.
const publicKeyCache = new Map<string, KeyObject>()
const PUBLIC_KEY_CACHE_LIMIT = 4096

// The miner signs every head with one key and a device its events with one or two: parsing the PKCS#8 wrapping
// each time costs more than the signature. A few signing keys are kept parsed (never more than 8).
const privateKeyCache = new Map<string, KeyObject>()
const PRIVATE_KEY_CACHE_LIMIT = 8

function privateKeyObject(seed: Uint8Array): KeyObject {
  const k = Buffer.from(seed.buffer, seed.byteOffset, seed.length).toString('base64')
  let obj = privateKeyCache.get(k)
  if (obj === undefined) {
    obj = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' })
    if (privateKeyCache.size >= PRIVATE_KEY_CACHE_LIMIT) privateKeyCache.delete(privateKeyCache.keys().next().value!)
    privateKeyCache.set(k, obj)
  }
  return obj
}

// A raw key goes in as a JWK (RFC 8037 §2, OKP/Ed25519): OpenSSL 3 reads it straight into a key, about ten times
// faster than parsing the same key as SPKI DER through its decoder chain (bench/verify.bench.ts measures both).
function publicKeyObject(publicKey: Uint8Array): KeyObject {
  const x = Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.length).toString('base64url')
  let obj = publicKeyCache.get(x)
  if (obj === undefined) {
    obj = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' })
    if (publicKeyCache.size >= PUBLIC_KEY_CACHE_LIMIT) publicKeyCache.clear()
    publicKeyCache.set(x, obj)
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

// Verification answers false, never throws, for inputs of the wrong kind or size.
function wellFormed(signature: unknown, message: unknown, publicKey: unknown): boolean {
  return (
    signature instanceof Uint8Array &&
    signature.length === 64 &&
    publicKey instanceof Uint8Array &&
    publicKey.length === 32 &&
    message instanceof Uint8Array
  )
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
    if (!wellFormed(signature, message, publicKey)) return false
    try {
      return verify(null, message, publicKeyObject(publicKey), signature)
    } catch {
      return false
    }
  },
  ed25519VerifyAsync(signature, message, publicKey) {
    if (!wellFormed(signature, message, publicKey)) return Promise.resolve(false)
    return new Promise(resolve => {
      try {
        // With a callback, node:crypto runs the check as a job on libuv's thread pool.
        verify(null, message, publicKeyObject(publicKey), signature, (err, ok) => resolve(err === null && ok))
      } catch {
        resolve(false)
      }
    })
  },
}
