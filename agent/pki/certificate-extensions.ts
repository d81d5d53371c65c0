/** @module A certificate's extension list read into the fields kinship checks, refusing duplicates and unknown critical extensions. */
import { DecodeError } from '../errors.ts'
import {
  EXTENSION_OID,
  readBasicConstraints,
  readExtKeyUsage,
  readKeyUsage,
  readSubjectAltName,
  readSubjectKeyIdentifier,
} from './extensions.ts'

/** One raw extension: OID, criticality, and the DER inside its OCTET STRING. */
export interface RawExtension {
  readonly id: string
  readonly critical: boolean
  readonly value: Uint8Array
}

/** The extension fields of a certificate. */
export interface CertificateExtensions {
  readonly sanDns: readonly string[]
  readonly sanUris: readonly string[]
  readonly sanOtherCount: number
  readonly isCA: boolean
  readonly pathLength: number | undefined
  readonly keyUsage: readonly string[] | undefined
  readonly extKeyUsage: readonly string[] | undefined
  readonly subjectKeyId: Uint8Array | undefined
}

const KNOWN = new Set<string>(Object.values(EXTENSION_OID))

/** Reads the extensions kinship uses; DecodeError CERT_PARSE on a duplicate (RFC 5280 §4.2) or an unknown critical one. */
export function readCertificateExtensions(extensions: readonly RawExtension[]): CertificateExtensions {
  const byId = new Map<string, RawExtension>()
  for (const e of extensions) {
    if (byId.has(e.id)) throw new DecodeError('CERT_PARSE', `extension ${e.id} appears more than once`)
    // RFC 5280 §4.2: a critical extension that is not understood makes the certificate unusable.
    if (e.critical && !KNOWN.has(e.id)) throw new DecodeError('CERT_PARSE', `unsupported critical extension ${e.id}`)
    byId.set(e.id, e)
  }
  const san = byId.get(EXTENSION_OID.subjectAltName)
  const bc = byId.get(EXTENSION_OID.basicConstraints)
  const ku = byId.get(EXTENSION_OID.keyUsage)
  const eku = byId.get(EXTENSION_OID.extKeyUsage)
  const ski = byId.get(EXTENSION_OID.subjectKeyIdentifier)
  const names = san === undefined ? { dns: [], uris: [], otherCount: 0 } : readSubjectAltName(san.value)
  const constraints = bc === undefined ? { isCA: false, pathLength: undefined } : readBasicConstraints(bc.value)
  return {
    sanDns: Object.freeze(names.dns),
    sanUris: Object.freeze(names.uris),
    sanOtherCount: names.otherCount,
    isCA: constraints.isCA,
    pathLength: constraints.pathLength,
    keyUsage: ku === undefined ? undefined : Object.freeze(readKeyUsage(ku.value)),
    extKeyUsage: eku === undefined ? undefined : Object.freeze(readExtKeyUsage(eku.value)),
    subjectKeyId: ski === undefined ? undefined : readSubjectKeyIdentifier(ski.value),
  }
}
