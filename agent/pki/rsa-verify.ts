/** @module Portable RSASSA-PKCS1-v1_5 SHA-256 verification in BigInt arithmetic, comparing the whole encoded message (RFC 8017 §8.2.2). */
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js'
import { bytesEqual, concatBytes, fromHex, toHex } from '../codec/bytes.ts'
import { isAcceptedRsaKey, readRsaPublicKey } from './key-parameters.ts'

// RFC 8017 §9.2 note 1: DigestInfo prefix for SHA-256.
const SHA256_DIGEST_INFO = fromHex('3031300d060960864801650304020105000420')

/** A SHA-256 function; a CryptoProvider's `sha256` fits. */
export type Sha256 = (data: Uint8Array) => Uint8Array

/** The portable SHA-256 used when no provider is given. */
export const defaultSha256: Sha256 = nobleSha256

function bigOf(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt('0x' + toHex(bytes))
}

function bytesOfBig(value: bigint, length: number): Uint8Array | undefined {
  const hex = value.toString(16)
  return hex.length > length * 2 ? undefined : fromHex(hex.padStart(length * 2, '0'))
}

// Right-to-left square and multiply: with e = 65537 (the only exponent accepted) this is 17 squarings and 2 products.
function modPow(base: bigint, exponent: bigint, modulus: bigint): bigint {
  let result = 1n,
    b = base % modulus,
    e = exponent
  while (e > 0n) {
    if ((e & 1n) === 1n) result = (result * b) % modulus
    b = (b * b) % modulus
    e >>= 1n
  }
  return result
}

/** EMSA-PKCS1-v1_5 encoding of SHA-256(message) for a modulus of `k` bytes (RFC 8017 §9.2). */
export function emsaPkcs1Sha256(message: Uint8Array, k: number, sha256: Sha256 = defaultSha256): Uint8Array {
  const t = concatBytes(SHA256_DIGEST_INFO, sha256(message))
  const em = new Uint8Array(k).fill(0xff)
  em[0] = 0x00
  em[1] = 0x01
  em[k - t.length - 1] = 0x00
  em.set(t, k - t.length)
  return em
}

/**
 * Verifies an RSASSA-PKCS1-v1_5 SHA-256 signature by the rsaEncryption key of `spkiDer`: RSAVP1 in BigInt and a
 * byte-exact comparison with the expected encoding. False (never a throw) on any malformed key or signature, and for
 * a key outside kinship's RSA parameters, which is refused from its DER framing before any arithmetic.
 */
export function verifyRsaSha256(
  spkiDer: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
  sha256: Sha256 = defaultSha256,
): boolean {
  try {
    if (!isAcceptedRsaKey(spkiDer)) return false
    const key = readRsaPublicKey(spkiDer)
    const k = key.modulus.length
    // RFC 8017 §8.2.2 step 1: the signature is exactly k octets.
    if (signature.length !== k) return false
    const n = bigOf(key.modulus),
      s = bigOf(signature)
    // RFC 8017 §5.2.2 RSAVP1 step 1: s < n.
    if (s >= n) return false
    const em = bytesOfBig(modPow(s, bigOf(key.exponent), n), k)
    return em !== undefined && bytesEqual(em, emsaPkcs1Sha256(message, k, sha256))
  } catch {
    return false
  }
}
