/** @module Portable RSA signing: node-forge RSASSA-PKCS1-v1_5 SHA-256 for challenge answers, pure JavaScript. */
import type { CryptoProvider } from '../types.ts'
import type { RsaSigning } from '../signing.ts'
import { forge, fromBinary, toBinary } from '../../agent/pki/_forge.ts'
import { rsaPrivateKeyFromPem } from '../../agent/pki/keys.ts'
import { verifyRsaSha256 } from '../../agent/pki/rsa-verify.ts'
import { portableCrypto } from './crypto.ts'

/** RSASSA-PKCS1-v1_5 SHA-256 on node-forge, hashing with `crypto.sha256` when verifying. */
export function createPortableSigning(crypto: CryptoProvider = portableCrypto): RsaSigning {
  return {
    name: 'portable',
    signRsaSha256(privateKeyPem, message) {
      const key = rsaPrivateKeyFromPem(privateKeyPem)
      const md = forge.md.sha256.create()
      md.update(toBinary(message))
      // forge's default scheme for sign() is RSASSA-PKCS1-V1_5 (RFC 8017 §8.2.1).
      return fromBinary(key.sign(md))
    },
    verifyRsaSha256(spkiDer, message, signature) {
      return verifyRsaSha256(spkiDer, message, signature, crypto.sha256)
    },
  }
}

/** The portable RSA signing on the portable crypto provider. */
export const portableSigning: RsaSigning = createPortableSigning()
