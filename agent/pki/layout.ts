/** @module The raw byte layout of signed X.509 objects: what is signed, by which algorithm, and the key and names inside. */
import { DecodeError, type KinErrorCode } from '../errors.ts'
import { TAG, childrenOf, contentBytes, elementBytes, expectTag, readWhole } from './der.ts'

/** Largest certificate or CSR accepted: device certificates are about 1 KiB; this bounds the work a peer can cause. */
export const MAX_SIGNED_BYTES = 16384

/** A signed object split into the bytes that were signed, the algorithm and the signature. */
export interface SignedLayout {
  readonly signed: Uint8Array
  readonly algorithm: Uint8Array
  readonly signature: Uint8Array
}

/** A certificate's raw parts (RFC 5280 §4.1). */
export interface CertificateLayout extends SignedLayout {
  readonly innerAlgorithm: Uint8Array
  readonly issuer: Uint8Array
  readonly subject: Uint8Array
  readonly spki: Uint8Array
}

/** A certification request's raw parts (RFC 2986 §4). */
export interface CsrLayout extends SignedLayout {
  readonly subject: Uint8Array
  readonly spki: Uint8Array
}

function splitSigned(der: Uint8Array, code: KinErrorCode): { layout: SignedLayout; fields: Uint8Array[] } {
  if (!(der instanceof Uint8Array)) throw new DecodeError(code, 'expected DER bytes')
  if (der.length > MAX_SIGNED_BYTES)
    throw new DecodeError(
      code,
      `${der.length} bytes is more than the ${MAX_SIGNED_BYTES} a kinship certificate or CSR may take`,
    )
  const outer = readWhole(der, TAG.sequence, code)
  const parts = childrenOf(der, outer, code)
  if (parts.length !== 3) throw new DecodeError(code, `signed object has ${parts.length} parts, expected 3`)
  const signed = expectTag(parts[0], TAG.sequence, code)
  const algorithm = expectTag(parts[1], TAG.sequence, code)
  const bits = contentBytes(der, expectTag(parts[2], TAG.bitString, code))
  if (bits.length < 2 || bits[0] !== 0) throw new DecodeError(code, 'signature BIT STRING must hold whole bytes')
  const fields = childrenOf(der, signed, code).map(f => elementBytes(der, f))
  return {
    layout: { signed: elementBytes(der, signed), algorithm: elementBytes(der, algorithm), signature: bits.subarray(1) },
    fields,
  }
}

/** Splits certificate DER (RFC 5280 §4.1); DecodeError `code` on anything else. */
export function certificateLayout(der: Uint8Array, code: KinErrorCode = 'CERT_PARSE'): CertificateLayout {
  const { layout, fields } = splitSigned(der, code)
  // TBSCertificate: [0] version is optional, then serial, signature, issuer, validity, subject, spki.
  const base = fields[0] !== undefined && fields[0][0] === TAG.context0 ? 1 : 0
  if (fields.length < base + 6) throw new DecodeError(code, 'TBSCertificate is missing fields')
  for (const i of [1, 2, 3, 4, 5]) {
    if (fields[base + i]![0] !== TAG.sequence)
      throw new DecodeError(code, `TBSCertificate field ${base + i} is not a SEQUENCE`)
  }
  return {
    ...layout,
    innerAlgorithm: fields[base + 1]!,
    issuer: fields[base + 2]!,
    subject: fields[base + 4]!,
    spki: fields[base + 5]!,
  }
}

/** Splits PKCS#10 DER (RFC 2986 §4.2); DecodeError `code` on anything else. */
export function csrLayout(der: Uint8Array, code: KinErrorCode = 'CSR_PARSE'): CsrLayout {
  const { layout, fields } = splitSigned(der, code)
  if (fields.length !== 4)
    throw new DecodeError(code, `CertificationRequestInfo has ${fields.length} fields, expected 4`)
  if (fields[1]![0] !== TAG.sequence || fields[2]![0] !== TAG.sequence)
    throw new DecodeError(code, 'CertificationRequestInfo subject or key is not a SEQUENCE')
  return { ...layout, subject: fields[1]!, spki: fields[2]! }
}
