/** @module Portable TLS-key signing: node-forge RSASSA-PKCS1-v1_5 and @noble/curves ECDSA P-256, SHA-256, pure JavaScript. */
import { p256 } from '@noble/curves/nist.js'
import { KinError } from '../errors.ts'
import { bytesEqual, fromHex } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import type { TlsSigning } from '../ports/signing.ts'
import { forge, fromBinary, toBinary } from '../pki/_forge.ts'
import { rsaPrivateKeyFromPem } from '../pki/keys.ts'
import { TAG, childrenOf, contentBytes, expectTag, readWhole } from '../pki/der.ts'
import { isPem, pemToDer } from '../pki/pem.ts'
import { signatureByKeyValid } from '../pki/verifier.ts'
import { createPortableVerifier } from '../pki/portable-verifier.ts'
import { portableCrypto } from './crypto.ts'

// RFC 5915 §3 inside RFC 5208 §5: AlgorithmIdentifier id-ecPublicKey with the named curve prime256v1.
const EC_P256_ALGORITHM = fromHex('301306072a8648ce3d020106082a8648ce3d030107')

// The private scalar of a PKCS#8 P-256 key, or undefined when the PEM holds another kind of key.
function p256PrivateScalar(privateKeyPem: string): Uint8Array | undefined {
  if (!isPem(privateKeyPem) || !privateKeyPem.includes('-----BEGIN PRIVATE KEY-----')) return undefined
  try {
    const der = pemToDer(privateKeyPem, 'PRIVATE KEY', 'BAD_ARGUMENT')
    const [, algorithm, key] = childrenOf(der, readWhole(der, TAG.sequence, 'BAD_ARGUMENT'), 'BAD_ARGUMENT')
    if (algorithm === undefined || !bytesEqual(der.subarray(algorithm.start, algorithm.end), EC_P256_ALGORITHM))
      return undefined
    const ecDer = contentBytes(der, expectTag(key, TAG.octetString, 'BAD_ARGUMENT'))
    const [, scalar] = childrenOf(ecDer, readWhole(ecDer, TAG.sequence, 'BAD_ARGUMENT'), 'BAD_ARGUMENT')
    const d = contentBytes(ecDer, expectTag(scalar, TAG.octetString, 'BAD_ARGUMENT'))
    if (d.length !== 32) throw new KinError('BAD_ARGUMENT', 'P-256 private key is not 32 bytes')
    return d
  } catch (cause) {
    throw new KinError('BAD_ARGUMENT', 'private key PEM is not a well-formed PKCS#8 P-256 key', { cause })
  }
}

/** TLS-key signatures in pure JavaScript, hashing with `crypto.sha256`. */
export function createPortableSigning(crypto: CryptoProvider = portableCrypto): TlsSigning {
  const verifier = createPortableVerifier(crypto.sha256)
  return {
    name: 'portable',
    sign(privateKeyPem, message) {
      const d = p256PrivateScalar(privateKeyPem)
      // RFC 6979 deterministic k (noble's default); low S, which every verifier accepts.
      if (d !== undefined) return p256.sign(crypto.sha256(message), d, { prehash: false, format: 'der' })
      const key = rsaPrivateKeyFromPem(privateKeyPem)
      const md = forge.md.sha256.create()
      md.update(toBinary(message))
      // forge's default scheme for sign() is RSASSA-PKCS1-V1_5 (RFC 8017 §8.2.1).
      return fromBinary(key.sign(md))
    },
    verify(spkiDer, message, signature) {
      return signatureByKeyValid(verifier, spkiDer, message, signature)
    },
  }
}

/** The portable TLS-key signing on the portable crypto provider. */
export const portableSigning: TlsSigning = createPortableSigning()
