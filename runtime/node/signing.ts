/** @module Node TLS-key signing: node:crypto RSASSA-PKCS1-v1_5 or ECDSA P-256, SHA-256, for challenge answers, the fast path. */
import { constants, createPrivateKey, sign, type KeyObject } from 'node:crypto'
import { KinError } from '../../agent/errors.ts'
import type { TlsSigning } from '../../agent/ports/signing.ts'
import { signatureByKeyValid } from '../../agent/pki/verifier.ts'
import { nodeVerifier } from './verifier.ts'

// A device signs with one key: parsed keys are kept.
const KEY_CACHE_LIMIT = 64
const privateKeys = new Map<string, KeyObject>()

function privateKey(pem: string): KeyObject {
  const hit = privateKeys.get(pem)
  if (hit !== undefined) return hit
  let key: KeyObject
  try {
    key = createPrivateKey(pem)
  } catch (cause) {
    throw new KinError('BAD_ARGUMENT', 'private key PEM is not an unencrypted RSA or EC private key', { cause })
  }
  const curve = key.asymmetricKeyDetails?.namedCurve
  if (key.asymmetricKeyType !== 'rsa' && !(key.asymmetricKeyType === 'ec' && curve === 'prime256v1')) {
    throw new KinError(
      'BAD_ARGUMENT',
      `private key is ${key.asymmetricKeyType}${curve === undefined ? '' : ` on ${curve}`}, not RSA or ECDSA P-256`,
    )
  }
  if (privateKeys.size >= KEY_CACHE_LIMIT) privateKeys.delete(privateKeys.keys().next().value!)
  privateKeys.set(pem, key)
  return key
}

/** TLS-key signatures on node:crypto. */
export const nodeSigning: TlsSigning = {
  name: 'node',
  sign(privateKeyPem, message) {
    const key = privateKey(privateKeyPem)
    const signature =
      key.asymmetricKeyType === 'rsa'
        ? sign('sha256', message, { key, padding: constants.RSA_PKCS1_PADDING })
        : sign('sha256', message, { key, dsaEncoding: 'der' })
    return new Uint8Array(signature.buffer, signature.byteOffset, signature.length)
  },
  verify(spkiDer, message, signature) {
    return signatureByKeyValid(nodeVerifier, spkiDer, message, signature)
  },
}
