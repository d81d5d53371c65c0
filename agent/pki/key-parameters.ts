/** @module What a kinship public key may be: the one check of RSA parameters every path runs before any RSA arithmetic. */
import { DecodeError, VerificationError, type KinErrorCode } from '../errors.ts'
import { bytesEqual, fromHex, toHex } from '../codec/bytes.ts'
import { TAG, childrenOf, contentBytes, expectTag, readWhole, type DerElement } from './der.ts'

/** Smallest RSA modulus accepted, in bits (DESIGN.md "Key types"). */
export const RSA_MIN_MODULUS_BITS = 2048
/** Largest RSA modulus accepted, in bits: RSAVP1's cost grows with the cube of it. */
export const RSA_MAX_MODULUS_BITS = 4096
/** The one RSA public exponent accepted (F4): RSAVP1 costs 17 multiplications with it, and one per exponent bit with another. */
export const RSA_PUBLIC_EXPONENT = 65537

// RFC 8017 Appendix C: rsaEncryption 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION_OID = fromHex('2a864886f70d010101')
// RFC 5480 §2.1.1: id-ecPublicKey 1.2.840.10045.2.1.
const EC_PUBLIC_KEY_OID = fromHex('2a8648ce3d0201')
// RFC 8410 §3: id-Ed25519 1.3.101.112.
const ED25519_OID = fromHex('2b6570')
// 65537 as the content octets of a minimal DER INTEGER.
const F4 = fromHex('010001')

/** The kind of key a SubjectPublicKeyInfo holds, read from its algorithm OID. */
export type PublicKeyKind = 'rsa' | 'ec' | 'ed25519' | 'other'

/** An RSA public key's integers as DER content octets without the sign byte (RFC 8017 §A.1.1), and the modulus size. */
export interface RsaPublicKeyBytes {
  readonly modulus: Uint8Array
  readonly exponent: Uint8Array
  /** The modulus length in bits (the position of its highest set bit). */
  readonly bits: number
}

function algorithmOf(spki: Uint8Array, code: KinErrorCode): { oid: Uint8Array; params: DerElement | undefined; key: DerElement | undefined } {
  const [algorithm, key, extra] = childrenOf(spki, readWhole(spki, TAG.sequence, code), code)
  if (extra !== undefined) throw new DecodeError(code, 'SubjectPublicKeyInfo holds more than an algorithm and a key')
  const [oid, params] = childrenOf(spki, expectTag(algorithm, TAG.sequence, code), code)
  return { oid: contentBytes(spki, expectTag(oid, TAG.oid, code)), params, key }
}

/** The kind of key in SubjectPublicKeyInfo DER (RFC 5280 §4.1.2.7); DecodeError `code` when it is not one. */
export function publicKeyKind(spki: Uint8Array, code: KinErrorCode = 'CERT_PARSE'): PublicKeyKind {
  const { oid } = algorithmOf(spki, code)
  if (bytesEqual(oid, RSA_ENCRYPTION_OID)) return 'rsa'
  if (bytesEqual(oid, EC_PUBLIC_KEY_OID)) return 'ec'
  if (bytesEqual(oid, ED25519_OID)) return 'ed25519'
  return 'other'
}

function positiveInteger(der: Uint8Array, element: DerElement | undefined, code: KinErrorCode): Uint8Array {
  const bytes = contentBytes(der, expectTag(element, TAG.integer, code))
  if (bytes.length === 0 || (bytes[0]! & 0x80) !== 0) throw new DecodeError(code, 'RSA key integer is not positive')
  // X.690 §8.3.2: no redundant leading zero.
  if (bytes.length > 1 && bytes[0] === 0 && (bytes[1]! & 0x80) === 0) throw new DecodeError(code, 'RSA key integer is not minimal')
  return bytes[0] === 0 ? bytes.subarray(1) : bytes
}

/**
 * The modulus and exponent of an rsaEncryption SubjectPublicKeyInfo (RFC 8017 §A.1.1 inside RFC 5280 §4.1.2.7), as
 * bytes: reading them does no arithmetic, whatever their size. DecodeError `code` for anything else.
 */
export function readRsaPublicKey(spki: Uint8Array, code: KinErrorCode = 'CERT_PARSE'): RsaPublicKeyBytes {
  const { oid, params, key } = algorithmOf(spki, code)
  if (!bytesEqual(oid, RSA_ENCRYPTION_OID)) throw new DecodeError(code, 'subject public key is not rsaEncryption')
  if (params !== undefined && (params.tag !== TAG.null || params.end !== params.contentStart)) throw new DecodeError(code, 'rsaEncryption parameters must be NULL')
  const bits = contentBytes(spki, expectTag(key, TAG.bitString, code))
  if (bits[0] !== 0) throw new DecodeError(code, 'RSA key BIT STRING must hold whole bytes')
  const rsaDer = bits.subarray(1)
  const [n, e, more] = childrenOf(rsaDer, readWhole(rsaDer, TAG.sequence, code), code)
  if (more !== undefined) throw new DecodeError(code, 'RSAPublicKey holds more than modulus and exponent')
  const modulus = positiveInteger(rsaDer, n, code)
  return { modulus, exponent: positiveInteger(rsaDer, e, code), bits: (modulus.length - 1) * 8 + (32 - Math.clz32(modulus[0]!)) }
}

/**
 * Refuses an RSA key kinship does not accept, before anyone does arithmetic with it: VerificationError RSA_KEY_SIZE
 * unless the modulus has 2048–4096 bits, RSA_EXPONENT unless the public exponent is 65537. `what` names the key in
 * the message. Keys of other kinds pass (their own verifiers bound their cost); DecodeError `code` when unreadable.
 */
export function checkPublicKeyParameters(spki: Uint8Array, what: string, code: KinErrorCode = 'CERT_PARSE'): PublicKeyKind {
  const kind = publicKeyKind(spki, code)
  if (kind !== 'rsa') return kind
  const key = readRsaPublicKey(spki, code)
  if (key.bits < RSA_MIN_MODULUS_BITS || key.bits > RSA_MAX_MODULUS_BITS) {
    throw new VerificationError('RSA_KEY_SIZE', `${what}: RSA modulus of ${key.bits} bits, kinship accepts ${RSA_MIN_MODULUS_BITS}–${RSA_MAX_MODULUS_BITS}`, { detail: { bits: key.bits } })
  }
  if (!bytesEqual(key.exponent, F4)) {
    const shown = key.exponent.length <= 6 ? String(parseInt(toHex(key.exponent), 16)) : `a ${key.exponent.length}-byte number`
    throw new VerificationError('RSA_EXPONENT', `${what}: RSA public exponent ${shown}, kinship accepts only ${RSA_PUBLIC_EXPONENT}`, { detail: { exponentBytes: key.exponent.length } })
  }
  return kind
}

/** True when `spki` is an RSA key checkPublicKeyParameters accepts; false, never a throw, for anything else. For verifiers that answer a boolean. */
export function isAcceptedRsaKey(spki: Uint8Array): boolean {
  try {
    return checkPublicKeyParameters(spki, 'key') === 'rsa'
  } catch {
    return false
  }
}
