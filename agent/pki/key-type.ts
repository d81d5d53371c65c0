/** @module TLS key types: ECDSA P-256 by default, RSA-2048 for devices whose TLS stack has no ECDSA (DESIGN.md "Key types"). */
import { DecodeError, KinError } from '../errors.ts'
import { bytesEqual, fromHex } from '../codec/bytes.ts'
import { TAG, childrenOf, contentBytes, expectTag, readWhole } from './der.ts'
import { publicKeyKind } from './key-parameters.ts'

/** The TLS key types kinship makes: 'p256' (ECDSA on NIST P-256) and 'rsa2048' (RSA-2048, exponent 65537). */
export type TlsKeyType = 'p256' | 'rsa2048'

/** Every TLS key type, the default first. */
export const TLS_KEY_TYPES: readonly TlsKeyType[] = Object.freeze(['p256', 'rsa2048'])

/** The key type of devices and fleet roots unless chosen otherwise: P-256 (key generation in microseconds, smaller certificates). */
export const DEFAULT_TLS_KEY_TYPE: TlsKeyType = 'p256'

/** The signature scheme a certificate builder signs with for a key: sha256WithRSAEncryption or ecdsa-with-SHA256. */
export type SigningKind = 'rsa' | 'p256'

// RFC 5480 §2.1.1.1: secp256r1 1.2.840.10045.3.1.7.
const P256_CURVE_OID = fromHex('2a8648ce3d030107')

/** A `--key` value as a TlsKeyType; KinError KEY_TYPE_UNKNOWN for anything else. */
export function parseTlsKeyType(value: unknown): TlsKeyType {
  if (typeof value === 'string' && (TLS_KEY_TYPES as readonly string[]).includes(value)) return value as TlsKeyType
  throw new KinError(
    'KEY_TYPE_UNKNOWN',
    `key type ${JSON.stringify(value)} is not one kinship makes; choose ${TLS_KEY_TYPES.join(' or ')}`,
  )
}

/** True when an id-ecPublicKey SubjectPublicKeyInfo names the curve P-256 (RFC 5480 §2.1.1: namedCurve parameters). */
export function isP256Spki(spki: Uint8Array): boolean {
  try {
    const [algorithm] = childrenOf(spki, readWhole(spki, TAG.sequence, 'BAD_ARGUMENT'), 'BAD_ARGUMENT')
    const [, params] = childrenOf(spki, expectTag(algorithm, TAG.sequence, 'BAD_ARGUMENT'), 'BAD_ARGUMENT')
    return (
      publicKeyKind(spki, 'BAD_ARGUMENT') === 'ec' &&
      bytesEqual(contentBytes(spki, expectTag(params, TAG.oid, 'BAD_ARGUMENT')), P256_CURVE_OID)
    )
  } catch (e) {
    if (e instanceof DecodeError) return false
    throw e
  }
}

/** How a key of this SubjectPublicKeyInfo signs certificates; KEY_TYPE_UNSUPPORTED for a key neither RSA nor P-256. */
export function signingKindOf(spki: Uint8Array, what: string): SigningKind {
  if (publicKeyKind(spki, 'BAD_ARGUMENT') === 'rsa') return 'rsa'
  if (isP256Spki(spki)) return 'p256'
  throw new KinError('KEY_TYPE_UNSUPPORTED', `${what} is neither an RSA nor a P-256 key`)
}

/** The TlsKeyType of a key kinship made (an RSA key counts as 'rsa2048'); KEY_TYPE_UNSUPPORTED for one it does not make. */
export function tlsKeyTypeOf(spki: Uint8Array): TlsKeyType {
  return signingKindOf(spki, 'the TLS key') === 'p256' ? 'p256' : 'rsa2048'
}
