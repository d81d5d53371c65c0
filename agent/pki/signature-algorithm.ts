/** @module Which signature algorithms kinship accepts on certificates, CSRs and challenge answers, and which key each needs. */
import { DecodeError, VerificationError, type KinErrorCode } from '../errors.ts'
import { bytesEqual, fromHex, toHex } from '../codec/bytes.ts'
import { TAG, childrenOf, contentBytes, expectTag, readWhole } from './der.ts'
import { checkTlsKey, type TlsKeyKind } from './key-parameters.ts'

/** The two signature algorithms a kinship verifier runs: RSASSA-PKCS1-v1_5 (RFC 8017 §8.2) and ECDSA on P-256, both over SHA-256. */
export type SignatureAlgorithm = 'rsa-pkcs1-sha256' | 'ecdsa-p256-sha256'

// RFC 4055 §5: sha256WithRSAEncryption 1.2.840.113549.1.1.11, parameters NULL (or absent, which verifiers accept).
const SHA256_WITH_RSA_OID = fromHex('2a864886f70d01010b')
// RFC 5758 §3.2: ecdsa-with-SHA256 1.2.840.10045.4.3.2, parameters absent.
const ECDSA_WITH_SHA256_OID = fromHex('2a8648ce3d040302')
// RFC 3279 §2.2.1 sha1WithRSAEncryption 1.2.840.113549.1.1.5 and §2.2.3 ecdsa-with-SHA1 1.2.840.10045.4.1.
const SHA1_OIDS = [fromHex('2a864886f70d010105'), fromHex('2a8648ce3d0401')]

/** The key kind each algorithm verifies with. */
export const KEY_KIND_OF: Readonly<Record<SignatureAlgorithm, TlsKeyKind>> = {
  'rsa-pkcs1-sha256': 'rsa',
  'ecdsa-p256-sha256': 'ec',
}

/**
 * The algorithm an AlgorithmIdentifier (DER) names: SIGNATURE_SHA1 for SHA-1 with RSA or ECDSA, SIGNATURE_ALGORITHM
 * for anything else kinship does not run (SHA-384, PSS, Ed25519, wrong parameters); DecodeError `code` when malformed.
 */
export function signatureAlgorithmOf(algorithmId: Uint8Array, code: KinErrorCode = 'CERT_PARSE'): SignatureAlgorithm {
  const [oid, params, extra] = childrenOf(algorithmId, readWhole(algorithmId, TAG.sequence, code), code)
  const id = contentBytes(algorithmId, expectTag(oid, TAG.oid, code))
  if (extra !== undefined) throw new DecodeError(code, 'AlgorithmIdentifier holds more than an OID and parameters')
  const nullOrAbsent = params === undefined || (params.tag === TAG.null && params.end === params.contentStart)
  if (bytesEqual(id, SHA256_WITH_RSA_OID) && nullOrAbsent) return 'rsa-pkcs1-sha256'
  if (bytesEqual(id, ECDSA_WITH_SHA256_OID) && params === undefined) return 'ecdsa-p256-sha256'
  if (SHA1_OIDS.some(o => bytesEqual(id, o))) {
    throw new VerificationError(
      'SIGNATURE_SHA1',
      'signed with SHA-1, whose collisions are practical; kinship accepts SHA-256 with RSA or ECDSA P-256',
    )
  }
  throw new VerificationError(
    'SIGNATURE_ALGORITHM',
    `signature algorithm ${toHex(id)}${nullOrAbsent ? '' : ' with unexpected parameters'} is not sha256WithRSAEncryption or ecdsa-with-SHA256`,
    { detail: { oid: toHex(id) } },
  )
}

/** RFC 5280 §4.1.1.2: a certificate names the same algorithm inside (TBSCertificate) and outside; SIGNATURE_ALGORITHM_MISMATCH otherwise. */
export function checkSameAlgorithm(inner: Uint8Array, outer: Uint8Array, what: string): void {
  if (!bytesEqual(inner, outer))
    throw new VerificationError(
      'SIGNATURE_ALGORITHM_MISMATCH',
      `${what}: the signature algorithm inside the signed part differs from the one outside`,
    )
}

/**
 * The checks before a signature by `signerSpki` under `algorithmId` is worth verifying, cheapest first and with no
 * arithmetic: the algorithm (SIGNATURE_SHA1, SIGNATURE_ALGORITHM), the signer's key (RSA_KEY_SIZE, RSA_EXPONENT,
 * EC_CURVE, KEY_TYPE), and that the two fit (SIGNATURE_KEY_MISMATCH). Returns the algorithm to verify with.
 */
export function checkSignatureInputs(
  algorithmId: Uint8Array,
  signerSpki: Uint8Array,
  what: string,
  code: KinErrorCode = 'CERT_PARSE',
): SignatureAlgorithm {
  const algorithm = signatureAlgorithmOf(algorithmId, code)
  const kind = checkTlsKey(signerSpki, what, code)
  if (KEY_KIND_OF[algorithm] !== kind) {
    throw new VerificationError(
      'SIGNATURE_KEY_MISMATCH',
      `${what}: a ${algorithm} signature cannot be made by ${kind === 'rsa' ? 'an RSA' : 'an EC'} key`,
      { detail: { algorithm, kind } },
    )
  }
  return algorithm
}

/** The algorithm a key of this kind signs challenge answers with: the one its certificates would use. */
export function algorithmForKey(kind: TlsKeyKind): SignatureAlgorithm {
  return kind === 'rsa' ? 'rsa-pkcs1-sha256' : 'ecdsa-p256-sha256'
}
