/** @module Portable RSA signing: node-forge RSASSA-PKCS1-v1_5 SHA-256 for challenge answers, pure JavaScript. */
import type { CryptoProvider } from '../types.ts'
import type { RsaSigning } from '../signing.ts'
import { forge, fromBinary, toBinary } from '../../agent/pki/_forge.ts'
import { rsaPrivateKeyFromPem } from '../../agent/pki/keys.ts'
import { verifyRsaSha256 } from '../../agent/pki/rsa-verify.ts'
import { portableCrypto } from './crypto.ts'
import { p256 } from '@noble/curves/nist.js'
import { bytesEqual, fromHex } from '../../agent/codec/bytes.ts'
import { isP256Spki } from '../../agent/pki/key-type.ts'
import { verifyP256Sha256 } from '../../agent/pki/p256-verify.ts'
import { pemToDer } from '../../agent/pki/pem.ts'

// PKCS#8 of a P-256 key as kinship writes it (node:crypto's form): this prefix, then the 32-byte private scalar.
const P256_PKCS8_PREFIX = fromHex('308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420')

/** The P-256 private scalar of a PKCS#8 PEM in kinship's form, or undefined for any other key. */
function p256SecretKey(privateKeyPem: string): Uint8Array | undefined {
  try {
    const der = pemToDer(privateKeyPem, 'PRIVATE KEY', 'BAD_ARGUMENT')
    return der.length === 138 && bytesEqual(der.subarray(0, P256_PKCS8_PREFIX.length), P256_PKCS8_PREFIX) ? der.slice(36, 68) : undefined
  } catch {
    return undefined
  }
}

/** RSASSA-PKCS1-v1_5 SHA-256 on node-forge, hashing with `crypto.sha256` when verifying. */
export function createPortableSigning(crypto: CryptoProvider = portableCrypto): RsaSigning {
  return {
    name: 'portable',
    signRsaSha256(privateKeyPem, message) {
      // A P-256 device answers with ECDSA SHA-256, DER signature value (RFC 6979 nonces).
      const secretKey = p256SecretKey(privateKeyPem)
      if (secretKey !== undefined) return p256.sign(message, secretKey, { format: 'der' })
      const key = rsaPrivateKeyFromPem(privateKeyPem)
      const md = forge.md.sha256.create()
      md.update(toBinary(message))
      // forge's default scheme for sign() is RSASSA-PKCS1-V1_5 (RFC 8017 §8.2.1).
      return fromBinary(key.sign(md))
    },
    verifyRsaSha256(spkiDer, message, signature) {
      if (isP256Spki(spkiDer)) return verifyP256Sha256(spkiDer, message, signature, crypto.sha256)
      return verifyRsaSha256(spkiDer, message, signature, crypto.sha256)
    },
  }
}

/** The portable RSA signing on the portable crypto provider. */
export const portableSigning: RsaSigning = createPortableSigning()
