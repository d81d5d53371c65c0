/** @module The node:crypto SignatureVerifier: RSA and ECDSA P-256 in OpenSSL, the hot path on Node. */
import { constants, createPublicKey, verify, type KeyObject } from 'node:crypto'
import type { SignatureVerifier } from '../../agent/pki/verifier.ts'
import { isAcceptedRsaKey, readP256PublicKey } from '../../agent/pki/key-parameters.ts'
import { p256SignatureCompact } from '../../agent/pki/ecdsa-signature.ts'

// A verifier meets the same few keys again and again (one fleet root, a few peers): parsed keys are kept.
const KEY_CACHE_LIMIT = 64
const keys = new Map<string, KeyObject>()

function publicKey(spkiDer: Uint8Array): KeyObject {
  const id = Buffer.from(spkiDer).toString('base64')
  let key = keys.get(id)
  if (key === undefined) {
    key = createPublicKey({ key: Buffer.from(spkiDer), format: 'der', type: 'spki' })
    if (keys.size >= KEY_CACHE_LIMIT) keys.delete(keys.keys().next().value!)
    keys.set(id, key)
  }
  return key
}

function acceptedEc(spkiDer: Uint8Array, signature: Uint8Array): boolean {
  try {
    readP256PublicKey(spkiDer)
  } catch {
    return false
  }
  // The same strict reading of the DER signature as the portable path, so both refuse the same encodings.
  return p256SignatureCompact(signature) !== undefined
}

/** The node:crypto signature verifier; the default on Node. */
export const nodeVerifier: SignatureVerifier = {
  name: 'node',
  verifySignature(algorithm, spkiDer, message, signature) {
    // Key parameters and signature encoding before OpenSSL sees them: the same inputs are refused on every engine.
    if (
      algorithm === 'rsa-pkcs1-sha256'
        ? !isAcceptedRsaKey(spkiDer)
        : algorithm !== 'ecdsa-p256-sha256' || !acceptedEc(spkiDer, signature)
    )
      return false
    try {
      const key = publicKey(spkiDer)
      if (algorithm === 'rsa-pkcs1-sha256')
        return verify('sha256', message, { key, padding: constants.RSA_PKCS1_PADDING }, signature)
      return verify('sha256', message, { key, dsaEncoding: 'der' }, signature)
    } catch {
      return false
    }
  },
}
