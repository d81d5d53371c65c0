/** @module Node RSA signing: node:crypto RSASSA-PKCS1-v1_5 SHA-256 for challenge answers, the fast path. */
import { constants, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto'
import { KinError } from '../../agent/errors.ts'
import type { RsaSigning } from '../signing.ts'
import { isAcceptedRsaKey } from '../../agent/pki/key-parameters.ts'
import { isP256Spki } from '../../agent/pki/key-type.ts'

// A device signs with one key and a verifier meets the same few peers again and again: parsed keys are kept.
const KEY_CACHE_LIMIT = 64
const privateKeys = new Map<string, KeyObject>()
const publicKeys = new Map<string, KeyObject>()

function remember(cache: Map<string, KeyObject>, id: string, key: KeyObject): KeyObject {
  if (cache.size >= KEY_CACHE_LIMIT) cache.delete(cache.keys().next().value!)
  cache.set(id, key)
  return key
}

function privateKey(pem: string): KeyObject {
  const hit = privateKeys.get(pem)
  if (hit !== undefined) return hit
  let key: KeyObject
  try {
    key = createPrivateKey(pem)
  } catch (cause) {
    throw new KinError('BAD_ARGUMENT', 'private key PEM is not an unencrypted RSA private key', { cause })
  }
  // A P-256 device answers with ECDSA (DER signature value), as its certificate's key type says (DESIGN.md "Key types").
  if (key.asymmetricKeyType !== 'rsa' && !(key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1')) {
    throw new KinError('BAD_ARGUMENT', `private key is ${key.asymmetricKeyType}, not RSA or P-256`)
  }
  return remember(privateKeys, pem, key)
}

function publicKey(spkiDer: Uint8Array): KeyObject {
  const id = Buffer.from(spkiDer).toString('base64')
  return publicKeys.get(id) ?? remember(publicKeys, id, createPublicKey({ key: Buffer.from(spkiDer), format: 'der', type: 'spki' }))
}

/** RSASSA-PKCS1-v1_5 SHA-256 on node:crypto. */
export const nodeSigning: RsaSigning = {
  name: 'node',
  signRsaSha256(privateKeyPem, message) {
    const key = privateKey(privateKeyPem)
    const signature = key.asymmetricKeyType === 'ec' ? sign('sha256', message, key) : sign('sha256', message, { key, padding: constants.RSA_PKCS1_PADDING })
    return new Uint8Array(signature.buffer, signature.byteOffset, signature.length)
  },
  verifyRsaSha256(spkiDer, message, signature) {
    try {
      if (isP256Spki(spkiDer)) return verify('sha256', message, publicKey(spkiDer), signature)
      // The parameters before node:crypto sees the key: the same keys are refused on every engine.
      if (!isAcceptedRsaKey(spkiDer)) return false
      const key = publicKey(spkiDer)
      if (key.asymmetricKeyType !== 'rsa') return false
      return verify('sha256', message, { key, padding: constants.RSA_PKCS1_PADDING }, signature)
    } catch {
      return false
    }
  },
}
