/** @module What a kinship public key may be: RSA-2048–4096 with e = 65537 or ECDSA P-256, checked on every path before any arithmetic. */
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
// RFC 5480 §2.1.1.1: secp256r1 (P-256) 1.2.840.10045.3.1.7.
const P256_OID = fromHex('2a8648ce3d030107')
// 65537 as the content octets of a minimal DER INTEGER.
const F4 = fromHex('010001')

/** The kind of key a SubjectPublicKeyInfo holds, read from its algorithm OID. */
export type PublicKeyKind = 'rsa' | 'ec' | 'ed25519' | 'other'

/** The two kinds of TLS key kinship accepts (DESIGN.md "Key types"): RSA, and ECDSA on P-256. */
export type TlsKeyKind = 'rsa' | 'ec'

/** Bytes of an uncompressed P-256 point (SEC 1 §2.3.3): 0x04 ‖ x ‖ y. */
export const P256_POINT_BYTES = 65

/** An RSA public key's integers as DER content octets without the sign byte (RFC 8017 §A.1.1), and the modulus size. */
export interface RsaPublicKeyBytes {
  readonly modulus: Uint8Array
  readonly exponent: Uint8Array
  /** The modulus length in bits (the position of its highest set bit). */
  readonly bits: number
}

function algorithmOf(
  spki: Uint8Array,
  code: KinErrorCode,
): { oid: Uint8Array; params: DerElement | undefined; key: DerElement | undefined } {
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
  if (bytes.length > 1 && bytes[0] === 0 && (bytes[1]! & 0x80) === 0)
    throw new DecodeError(code, 'RSA key integer is not minimal')
  return bytes[0] === 0 ? bytes.subarray(1) : bytes
}

/**
 * The modulus and exponent of an rsaEncryption SubjectPublicKeyInfo (RFC 8017 §A.1.1 inside RFC 5280 §4.1.2.7), as
 * bytes: reading them does no arithmetic, whatever their size. DecodeError `code` for anything else.
 */
export function readRsaPublicKey(spki: Uint8Array, code: KinErrorCode = 'CERT_PARSE'): RsaPublicKeyBytes {
  const { oid, params, key } = algorithmOf(spki, code)
  if (!bytesEqual(oid, RSA_ENCRYPTION_OID)) throw new DecodeError(code, 'subject public key is not rsaEncryption')
  if (params !== undefined && (params.tag !== TAG.null || params.end !== params.contentStart))
    throw new DecodeError(code, 'rsaEncryption parameters must be NULL')
  const bits = contentBytes(spki, expectTag(key, TAG.bitString, code))
  if (bits[0] !== 0) throw new DecodeError(code, 'RSA key BIT STRING must hold whole bytes')
  const rsaDer = bits.subarray(1)
  const [n, e, more] = childrenOf(rsaDer, readWhole(rsaDer, TAG.sequence, code), code)
  if (more !== undefined) throw new DecodeError(code, 'RSAPublicKey holds more than modulus and exponent')
  const modulus = positiveInteger(rsaDer, n, code)
  return {
    modulus,
    exponent: positiveInteger(rsaDer, e, code),
    bits: (modulus.length - 1) * 8 + (32 - Math.clz32(modulus[0]!)),
  }
}

/**
 * The uncompressed point of an id-ecPublicKey SubjectPublicKeyInfo on P-256 (RFC 5480 §2.1.1 and §2.2): VerificationError
 * EC_CURVE for another named curve or explicit parameters; DecodeError `code` when malformed or compressed (every
 * P-256 key kinship makes is uncompressed, and RFC 5480 only requires verifiers to take that form). The point is not
 * checked to lie on the curve here: each verifier does that before using it.
 */
export function readP256PublicKey(spki: Uint8Array, code: KinErrorCode = 'CERT_PARSE'): Uint8Array {
  const { oid, params, key } = algorithmOf(spki, code)
  if (!bytesEqual(oid, EC_PUBLIC_KEY_OID)) throw new DecodeError(code, 'subject public key is not id-ecPublicKey')
  if (params === undefined) throw new DecodeError(code, 'id-ecPublicKey without curve parameters')
  if (params.tag !== TAG.oid)
    throw new VerificationError(
      'EC_CURVE',
      'EC key with explicit curve parameters; kinship accepts only the named curve P-256 (RFC 5480 §2.1.1)',
    )
  const curve = contentBytes(spki, params)
  if (!bytesEqual(curve, P256_OID))
    throw new VerificationError(
      'EC_CURVE',
      `EC key on curve OID ${toHex(curve)}; kinship accepts only P-256 (prime256v1)`,
      { detail: { curve: toHex(curve) } },
    )
  const bits = contentBytes(spki, expectTag(key, TAG.bitString, code))
  if (bits.length !== 1 + P256_POINT_BYTES || bits[0] !== 0 || bits[1] !== 0x04)
    throw new DecodeError(code, 'P-256 key is not an uncompressed point of 65 bytes')
  return bits.subarray(1)
}

/**
 * Refuses an RSA key kinship does not accept, before anyone does arithmetic with it: VerificationError RSA_KEY_SIZE
 * unless the modulus has 2048–4096 bits, RSA_EXPONENT unless the public exponent is 65537. `what` names the key in
 * the message; an EC key must be P-256 (EC_CURVE, readP256PublicKey). Keys of other kinds pass (checkTlsKey refuses
 * them where only a TLS key belongs); DecodeError `code` when unreadable.
 */
export function checkPublicKeyParameters(
  spki: Uint8Array,
  what: string,
  code: KinErrorCode = 'CERT_PARSE',
): PublicKeyKind {
  const kind = publicKeyKind(spki, code)
  if (kind === 'ec') {
    try {
      readP256PublicKey(spki, code)
    } catch (e) {
      if (e instanceof VerificationError)
        throw new VerificationError(e.code, `${what}: ${e.message}`, { detail: e.detail })
      throw e
    }
  }
  if (kind !== 'rsa') return kind
  const key = readRsaPublicKey(spki, code)
  if (key.bits < RSA_MIN_MODULUS_BITS || key.bits > RSA_MAX_MODULUS_BITS) {
    throw new VerificationError(
      'RSA_KEY_SIZE',
      `${what}: RSA modulus of ${key.bits} bits, kinship accepts ${RSA_MIN_MODULUS_BITS}–${RSA_MAX_MODULUS_BITS}`,
      { detail: { bits: key.bits } },
    )
  }
  if (!bytesEqual(key.exponent, F4)) {
    const shown =
      key.exponent.length <= 6 ? String(parseInt(toHex(key.exponent), 16)) : `a ${key.exponent.length}-byte number`
    throw new VerificationError(
      'RSA_EXPONENT',
      `${what}: RSA public exponent ${shown}, kinship accepts only ${RSA_PUBLIC_EXPONENT}`,
      { detail: { exponentBytes: key.exponent.length } },
    )
  }
  return kind
}

/**
 * A key that may be a certificate's, a CSR's or a challenge answer's TLS key: RSA within checkPublicKeyParameters, or
 * P-256. VerificationError KEY_TYPE for any other kind (Ed25519, DSA, …), the codes of checkPublicKeyParameters
 * before that. Reads only the DER framing: no arithmetic.
 */
export function checkTlsKey(spki: Uint8Array, what: string, code: KinErrorCode = 'CERT_PARSE'): TlsKeyKind {
  const kind = checkPublicKeyParameters(spki, what, code)
  if (kind !== 'rsa' && kind !== 'ec')
    throw new VerificationError(
      'KEY_TYPE',
      `${what}: a ${kind === 'other' ? 'key of an unknown kind' : `${kind} key`}; kinship TLS keys are ECDSA P-256 or RSA`,
      { detail: { kind } },
    )
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
