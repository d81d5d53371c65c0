/** @module Parsing a PKCS#10 certificate request into the names, key and signature verdict the fleet CA checks. */
import { DecodeError, isKinError } from '../errors.ts'
import { bytesEqual } from '../codec/bytes.ts'
import { TAG, childrenOf, contentBytes, expectTag, readWhole, type DerElement } from './der.ts'
import { ECDSA_WITH_SHA256, csrLayout, isSha256WithRsa, type CsrLayout } from './layout.ts'
import { derToPem, isPem, pemToDer } from './pem.ts'
import { defaultSha256, verifyRsaSha256, type Sha256 } from './rsa-verify.ts'
import { parentCnsOf } from './_names.ts'
import { EXTENSION_OID, readSubjectAltName } from './extensions.ts'
import { verifyP256Sha256 } from './p256-verify.ts'
import { oidText, subjectCnOf } from './tbs.ts'

const EXTENSION_REQUEST_OID = '1.2.840.113549.1.9.14'
const CODE = 'CSR_PARSE'

/** What a CSR says, and whether its self-signature holds. */
export interface ParsedCsr {
  readonly der: Uint8Array
  readonly cn: string
  readonly sanDns: readonly string[]
  /** The requested uniformResourceIdentifier SAN entries, in order. */
  readonly sanUris: readonly string[]
  /** Count of requested SAN entries that are neither dNSNames nor URIs. */
  readonly sanOtherCount: number
  /** The CN of the single parent marker URI `kin://<fleet domain>/parent/<label>`; undefined when there is none (L0) or several. */
  readonly parentCn: string | undefined
  readonly parentCns: readonly string[]
  readonly spkiDer: Uint8Array
  readonly publicKeyPem: string
  /** True when signed (sha256WithRSAEncryption or ecdsa-with-SHA256) by the key it carries (RFC 2986 §3 proof of possession); verified on first read. */
  readonly signatureValid: boolean
}

// RFC 2986 §4.1 attributes [0] IMPLICIT SET OF Attribute; extensionRequest's value is Extensions (RFC 2985 §5.4.2).
function requestedExtensions(der: Uint8Array, attributes: DerElement | undefined): Map<string, Uint8Array>[] {
  const requests: Map<string, Uint8Array>[] = []
  if (attributes === undefined) return requests
  if (attributes.tag !== TAG.context0) throw new DecodeError(CODE, 'CSR attributes are not [0] IMPLICIT SET OF')
  for (const attribute of childrenOf(der, attributes, CODE)) {
    const [type, values, extra] = childrenOf(der, expectTag(attribute, TAG.sequence, CODE), CODE)
    if (extra !== undefined) throw new DecodeError(CODE, 'CSR attribute holds more than a type and values')
    if (oidText(contentBytes(der, expectTag(type, TAG.oid, CODE))) !== EXTENSION_REQUEST_OID) continue
    for (const list of childrenOf(der, expectTag(values, TAG.set, CODE), CODE)) {
      const byId = new Map<string, Uint8Array>()
      for (const ext of childrenOf(der, expectTag(list, TAG.sequence, CODE), CODE)) {
        const parts = childrenOf(der, expectTag(ext, TAG.sequence, CODE), CODE)
        const id = oidText(contentBytes(der, expectTag(parts[0], TAG.oid, CODE)))
        const value = parts[parts.length - 1]
        if (parts.length < 2 || parts.length > 3 || (parts.length === 3 && parts[1]!.tag !== TAG.boolean)) throw new DecodeError(CODE, `CSR extension ${id} is malformed`)
        if (byId.has(id)) throw new DecodeError(CODE, 'CSR requests subjectAltName more than once')
        byId.set(id, contentBytes(der, expectTag(value, TAG.octetString, CODE)))
      }
      requests.push(byId)
    }
  }
  return requests
}

function requestedSan(der: Uint8Array, attributes: DerElement | undefined): { dns: string[]; uris: string[]; otherCount: number } {
  let requests: Map<string, Uint8Array>[]
  try {
    requests = requestedExtensions(der, attributes)
  } catch (cause) {
    // oidText speaks for certificates (CERT_PARSE); in a request the same fault is CSR_PARSE.
    if (isKinError(cause, 'CERT_PARSE')) throw new DecodeError(CODE, `CSR attributes: ${cause.message}`, { cause })
    throw cause
  }
  if (requests.length > 1) throw new DecodeError(CODE, 'CSR holds more than one extensionRequest attribute')
  const san = requests[0]?.get(EXTENSION_OID.subjectAltName)
  if (san === undefined) return { dns: [], uris: [], otherCount: 0 }
  try {
    return readSubjectAltName(san)
  } catch (cause) {
    if (isKinError(cause)) throw new DecodeError(CODE, `CSR subjectAltName: ${cause.message}`, { cause })
    throw cause
  }
}

/** The CSR's proof of possession (RFC 2986 §3): sha256WithRSAEncryption by its RSA key, or ecdsa-with-SHA256 (DER signature) by its P-256 key. */
function selfSignatureValid(layout: CsrLayout, sha256: Sha256): boolean {
  if (isSha256WithRsa(layout.algorithm)) return verifyRsaSha256(layout.spki, layout.signed, layout.signature, sha256)
  return bytesEqual(layout.algorithm, ECDSA_WITH_SHA256) && verifyP256Sha256(layout.spki, layout.signed, layout.signature, sha256)
}

/** Parses a CSR from PEM ("CERTIFICATE REQUEST") or DER; DecodeError CSR_PARSE on anything malformed, CSR_NAMES unless it has one CN. */
export function parseCsr(input: string | Uint8Array, options: { sha256?: Sha256 } = {}): ParsedCsr {
  let der: Uint8Array
  if (isPem(input)) der = pemToDer(input, 'CERTIFICATE REQUEST', 'CSR_PARSE')
  else if (input instanceof Uint8Array) der = input.slice()
  else throw new DecodeError('CSR_PARSE', 'CSR must be PEM text or DER bytes')
  const layout = csrLayout(der, CODE)
  // CertificationRequestInfo (RFC 2986 §4.1): version 0, subject, subjectPKInfo, attributes.
  const info = layout.signed
  const [version, subject, , attributes] = childrenOf(info, readWhole(info, TAG.sequence, CODE), CODE)
  const v = contentBytes(info, expectTag(version, TAG.integer, CODE))
  if (v.length !== 1 || v[0] !== 0) throw new DecodeError(CODE, 'CSR version is not 0 (v1)')
  const cn = subjectCnOf(info, subject!, 'CSR_NAMES', CODE)
  const san = requestedSan(info, attributes)
  const parentCns = parentCnsOf(san.uris)
  const sha256 = options.sha256 ?? defaultSha256
  // Checked on first read, not here: the CA reads it only after every cheaper refusal (csr-check.ts), and
  // verifyRsaSha256 refuses a key outside kinship's RSA parameters before any arithmetic.
  let signatureValid: boolean | undefined, publicKeyPem: string | undefined
  return {
    get signatureValid(): boolean {
      return (signatureValid ??= selfSignatureValid(layout, sha256))
    },
    der,
    cn,
    sanDns: Object.freeze(san.dns),
    sanUris: Object.freeze(san.uris),
    sanOtherCount: san.otherCount,
    parentCn: parentCns.length === 1 ? parentCns[0] : undefined,
    parentCns: Object.freeze(parentCns),
    spkiDer: layout.spki,
    // Armoured on first read: only an issued certificate needs it, and a refused CSR's key may be 14 KiB.
    get publicKeyPem(): string {
      return (publicKeyPem ??= derToPem(layout.spki, 'PUBLIC KEY'))
    },
  }
}
