/** @module Loading TLS keys from PEM for the builders, with coded errors instead of library exceptions. */
import { KinError } from '../errors.ts'
import type { pki } from 'node-forge'
import { asn1ToBytes, forge } from './_forge.ts'
import { pemToDer } from './pem.ts'
import { signingKindOf } from './key-type.ts'
import { readRsaPublicKey } from './key-parameters.ts'

/** The forge RSA private key of a PKCS#8 ("PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY") PEM; KinError BAD_ARGUMENT otherwise. */
export function rsaPrivateKeyFromPem(pem: string): pki.rsa.PrivateKey {
  try {
    const key = forge.pki.privateKeyFromPem(pem) as pki.rsa.PrivateKey
    if (key === null || typeof key !== 'object' || key.n === undefined) throw new TypeError('not an RSA private key')
    return key
  } catch (cause) {
    throw new KinError('BAD_ARGUMENT', 'private key PEM is not an unencrypted RSA private key', { cause })
  }
}

/** SubjectPublicKeyInfo DER of a "PUBLIC KEY" PEM holding an RSA or a P-256 key; KinError BAD_ARGUMENT otherwise. */
export function spkiDerFromPublicKeyPem(pem: string): Uint8Array {
  const der = pemToDer(pem, 'PUBLIC KEY', 'BAD_ARGUMENT')
  try {
    if (signingKindOf(der, 'public key') === 'rsa') readRsaPublicKey(der, 'BAD_ARGUMENT')
  } catch (cause) {
    throw new KinError('BAD_ARGUMENT', 'public key PEM is not an RSA or P-256 SubjectPublicKeyInfo', { cause })
  }
  return der
}

/** The forge RSA public key of a "PUBLIC KEY" PEM; KinError BAD_ARGUMENT otherwise. */
export function rsaPublicKeyFromPem(pem: string): pki.rsa.PublicKey {
  if (signingKindOf(spkiDerFromPublicKeyPem(pem), 'public key') !== 'rsa')
    throw new KinError('BAD_ARGUMENT', 'public key PEM is not an RSA key')
  return forge.pki.publicKeyFromPem(pem) as pki.rsa.PublicKey
}

/** SubjectPublicKeyInfo DER of a forge RSA public key. */
export function spkiDerOfRsaKey(key: pki.rsa.PublicKey): Uint8Array {
  return asn1ToBytes(forge.pki.publicKeyToAsn1(key))
}

/** True when a private key and a public key share the modulus and exponent. */
export function keysMatch(privateKey: pki.rsa.PrivateKey, publicKey: pki.rsa.PublicKey): boolean {
  return privateKey.n.equals(publicKey.n) && privateKey.e.equals(publicKey.e)
}
