/** @module Parsing a PKCS#10 certificate request into the names, key and signature verdict the fleet CA checks. */
import { DecodeError, isKinError } from '../errors.ts'
import { forge, fromBinary, toBinary } from './_forge.ts'
import { csrLayout } from './layout.ts'
import { derToPem, isPem, pemToDer } from './pem.ts'
import { type Sha256 } from './rsa-verify.ts'
import { createPortableVerifier, portableVerifier } from './portable-verifier.ts'
import { checkSignatureInputs } from './signature-algorithm.ts'
import type { SignatureVerifier } from './verifier.ts'
import { parentCnsOf, subjectCn } from './_names.ts'
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

interface ForgeAttribute { type?: string; extensions?: { id: string; value: string }[] }

function requestedSan(attributes: readonly ForgeAttribute[]): { dns: string[]; uris: string[]; otherCount: number } {
  const requests = attributes.filter(a => a.type === EXTENSION_REQUEST_OID)
  if (requests.length > 1) throw new DecodeError('CSR_PARSE', 'CSR holds more than one extensionRequest attribute')
  const sans = (requests[0]?.extensions ?? []).filter(e => e.id === EXTENSION_OID.subjectAltName)
  if (sans.length > 1) throw new DecodeError('CSR_PARSE', 'CSR requests subjectAltName more than once')
  if (sans.length === 0) return { dns: [], uris: [], otherCount: 0 }
  try {
    return readSubjectAltName(fromBinary(sans[0]!.value))
  } catch (cause) {
    if (isKinError(cause)) throw new DecodeError('CSR_PARSE', `CSR subjectAltName: ${cause.message}`, { cause })
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
  let parsed: ReturnType<typeof forge.pki.certificationRequestFromAsn1>
  try {
    parsed = forge.pki.certificationRequestFromAsn1(forge.asn1.fromDer(toBinary(der)))
  } catch (cause) {
    throw new DecodeError('CSR_PARSE', `CSR does not parse: ${(cause as Error)?.message ?? cause}`, { cause })
  }
  const cn = subjectCn(parsed.subject.attributes, 'CSR_NAMES')
  const san = requestedSan((parsed.attributes ?? []) as ForgeAttribute[])
  const parentCns = parentCnsOf(san.uris)
  const verifier = options.verifier ?? (options.sha256 === undefined ? portableVerifier : createPortableVerifier(options.sha256))
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
