/** @module Parsing a PKCS#10 certificate request (strict DER, RSA or P-256 key) into the names, key and signature verdict the fleet CA checks. */
import { DecodeError, isKinError } from '../errors.ts'
import { TAG, childrenOf, contentBytes, expectTag, readWhole } from './der.ts'
import { oidText } from './extensions.ts'
import { subjectCnOf } from './certificate-read.ts'
import { csrLayout } from './layout.ts'
import { derToPem, isPem, pemToDer } from './pem.ts'
import { type Sha256 } from './rsa-verify.ts'
import { createPortableVerifier, portableVerifier } from './portable-verifier.ts'
import { checkSignatureInputs } from './signature-algorithm.ts'
import type { SignatureVerifier } from './verifier.ts'
import { parentCnsOf } from './_names.ts'
import { EXTENSION_OID, readSubjectAltName } from './extensions.ts'

const EXTENSION_REQUEST_OID = '1.2.840.113549.1.9.14'

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
  /** The signatureAlgorithm AlgorithmIdentifier, DER (checkSignatureInputs reads it before any arithmetic). */
  readonly algorithm: Uint8Array
  readonly publicKeyPem: string
  /**
   * True when signed (sha256WithRSAEncryption or ecdsa-with-SHA256, fitting its key) by the key it carries (RFC 2986
   * §3 proof of possession); verified on first read.
   */
  readonly signatureValid: boolean
}

/** How to parse a CSR: the SHA-256 to hash with and the verifier for its signature (default: the portable one on it). */
export interface CsrParseOptions {
  readonly sha256?: Sha256
  readonly verifier?: SignatureVerifier
}

function signatureHolds(layout: ReturnType<typeof csrLayout>, verifier: SignatureVerifier): boolean {
  try {
    const algorithm = checkSignatureInputs(layout.algorithm, layout.spki, 'CSR key', 'CSR_PARSE')
    return verifier.verifySignature(algorithm, layout.spki, layout.signed, layout.signature)
  } catch {
    return false
  }
}

const C = 'CSR_PARSE'

// RFC 2986 §4.1: attributes [0] IMPLICIT SET OF Attribute { type, values SET }; RFC 2985 §5.4.2 extensionRequest
// holds one Extensions SEQUENCE. Only subjectAltName is read; other requested extensions are the CA's to ignore.
function requestedSan(info: Uint8Array): { dns: string[]; uris: string[]; otherCount: number } {
  const fields = childrenOf(info, readWhole(info, TAG.sequence, C), C)
  const attributes = fields[3]
  if (attributes === undefined || attributes.tag !== TAG.context0)
    throw new DecodeError(C, 'CSR has no attributes field')
  const requests = childrenOf(info, attributes, C)
    .map(a => childrenOf(info, expectTag(a, TAG.sequence, C), C))
    .filter(([type]) => oidText(contentBytes(info, expectTag(type, TAG.oid, C))) === EXTENSION_REQUEST_OID)
  if (requests.length > 1) throw new DecodeError(C, 'CSR holds more than one extensionRequest attribute')
  if (requests.length === 0) return { dns: [], uris: [], otherCount: 0 }
  const values = childrenOf(info, expectTag(requests[0]![1], TAG.set, C), C)
  if (values.length !== 1) throw new DecodeError(C, 'extensionRequest must hold one value')
  const sans: Uint8Array[] = []
  for (const ext of childrenOf(info, expectTag(values[0], TAG.sequence, C), C)) {
    const parts = childrenOf(info, expectTag(ext, TAG.sequence, C), C)
    if (oidText(contentBytes(info, expectTag(parts[0], TAG.oid, C))) !== EXTENSION_OID.subjectAltName) continue
    sans.push(contentBytes(info, expectTag(parts[parts.length - 1], TAG.octetString, C)))
  }
  if (sans.length > 1) throw new DecodeError(C, 'CSR requests subjectAltName more than once')
  if (sans.length === 0) return { dns: [], uris: [], otherCount: 0 }
  try {
    return readSubjectAltName(sans[0]!)
  } catch (cause) {
    if (isKinError(cause)) throw new DecodeError(C, `CSR subjectAltName: ${cause.message}`, { cause })
    throw cause
  }
}

// The extension readers are shared with certificates and say CERT_PARSE; inside a CSR that is CSR_PARSE.
function readRequest(info: Uint8Array): { dns: string[]; uris: string[]; otherCount: number } {
  try {
    return requestedSan(info)
  } catch (cause) {
    if (isKinError(cause, 'CERT_PARSE')) throw new DecodeError(C, `CSR attributes: ${cause.message}`, { cause })
    throw cause
  }
}

/** Parses a CSR from PEM ("CERTIFICATE REQUEST") or DER; DecodeError CSR_PARSE on anything malformed, CSR_NAMES unless it has one CN. */
export function parseCsr(input: string | Uint8Array, options: CsrParseOptions = {}): ParsedCsr {
  let der: Uint8Array
  if (isPem(input)) der = pemToDer(input, 'CERTIFICATE REQUEST', 'CSR_PARSE')
  else if (input instanceof Uint8Array) der = input.slice()
  else throw new DecodeError('CSR_PARSE', 'CSR must be PEM text or DER bytes')
  const layout = csrLayout(der, 'CSR_PARSE')
  const info = layout.signed
  const version = contentBytes(
    info,
    expectTag(childrenOf(info, readWhole(info, TAG.sequence, C), C)[0], TAG.integer, C),
  )
  // RFC 2986 §4.1: version 0 (v1).
  if (version.length !== 1 || version[0] !== 0) throw new DecodeError(C, 'CSR version is not v1')
  const cn = subjectCnOf(layout.subject, readWhole(layout.subject, TAG.sequence, C), C, 'CSR_NAMES')
  const san = readRequest(info)
  const parentCns = parentCnsOf(san.uris)
  const verifier =
    options.verifier ?? (options.sha256 === undefined ? portableVerifier : createPortableVerifier(options.sha256))
  // Checked on first read, not here: the CA reads it only after every cheaper refusal (csr-check.ts), and every
  // verifier refuses a key outside kinship's parameters before any arithmetic.
  let signatureValid: boolean | undefined, publicKeyPem: string | undefined
  return {
    get signatureValid(): boolean {
      return (signatureValid ??= signatureHolds(layout, verifier))
    },
    der,
    cn,
    sanDns: Object.freeze(san.dns),
    sanUris: Object.freeze(san.uris),
    sanOtherCount: san.otherCount,
    parentCn: parentCns.length === 1 ? parentCns[0] : undefined,
    parentCns: Object.freeze(parentCns),
    spkiDer: layout.spki,
    algorithm: layout.algorithm,
    // Armoured on first read: only an issued certificate needs it, and a refused CSR's key may be 14 KiB.
    get publicKeyPem(): string {
      return (publicKeyPem ??= derToPem(layout.spki, 'PUBLIC KEY'))
    },
  }
}
