/** @module Portable RSASSA-PKCS1-v1_5 SHA-256 verification on node-forge, comparing the whole encoded message (RFC 8017 §8.2.2). */
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js'
import { bytesEqual, concatBytes, fromHex } from '../codec/bytes.ts'
import type { pki } from 'node-forge'
import { forge, fromBinary, toBinary } from './_forge.ts'
import { DecodeError } from '../errors.ts'
import { checkPublicKeyParameters } from './key-parameters.ts'

// RFC 8017 §9.2 note 1: DigestInfo prefix for SHA-256.
const SHA256_DIGEST_INFO = fromHex('3031300d060960864801650304020105000420')

// forge's raw RSA primitive (RSAVP1 when `pub` is true and `unpad` false) is public but untyped.
interface RawRsa { decrypt(input: string, key: pki.rsa.PublicKey, pub: boolean, unpad: boolean): string }
const rawRsa = forge.pki.rsa as unknown as RawRsa

/** A SHA-256 function; a CryptoProvider's `sha256` fits. */
export type Sha256 = (data: Uint8Array) => Uint8Array

/** The portable SHA-256 used when no provider is given. */
export const defaultSha256: Sha256 = nobleSha256

/**
 * Parses SubjectPublicKeyInfo DER into a forge RSA public key; throws on anything but RSA, and (before forge reads it)
 * RSA_KEY_SIZE / RSA_EXPONENT for a key outside kinship's parameters, so every forge key verified with was checked.
 */
export function rsaPublicKeyFromSpki(spkiDer: Uint8Array): pki.rsa.PublicKey {
  if (checkPublicKeyParameters(spkiDer, 'RSA key') !== 'rsa') throw new DecodeError('CERT_PARSE', 'subject public key is not rsaEncryption')
  return forge.pki.publicKeyFromAsn1(forge.asn1.fromDer(toBinary(spkiDer))) as pki.rsa.PublicKey
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
 * Verifies an RSASSA-PKCS1-v1_5 SHA-256 signature by RSAVP1 and a byte-exact comparison with the expected encoding.
 * False (never a throw) on any malformed key or signature, and for SPKI bytes outside kinship's RSA parameters
 * (a forge key comes from rsaPublicKeyFromSpki, which checked them).
 */
export function verifyRsaSha256(key: pki.rsa.PublicKey | Uint8Array, message: Uint8Array, signature: Uint8Array, sha256: Sha256 = defaultSha256): boolean {
  try {
    const rsaKey = key instanceof Uint8Array ? rsaPublicKeyFromSpki(key) : key
    const k = Math.ceil(rsaKey.n.bitLength() / 8)
    // RFC 8017 §8.2.2 step 1: the signature is exactly k octets; RFC 8017 §5.2.2: s < n (forge checks).
    if (signature.length !== k || k < 11 + SHA256_DIGEST_INFO.length + 32) return false
    const em = fromBinary(rawRsa.decrypt(toBinary(signature), rsaKey, true, false))
    return bytesEqual(em, emsaPkcs1Sha256(message, k, sha256))
  } catch {
    return false
  }
}
