/** @module The one certificate reader: an X.509 v3 certificate's DER read by kinship's own strict path into cached fields. */
import { DecodeError, type KinErrorCode } from '../errors.ts'
import { bytesEqual, fromHex, toHex } from '../codec/bytes.ts'
import { TAG, childrenOf, contentBytes, expectTag, readWhole, type DerElement } from './der.ts'
import { oidText } from './extensions.ts'
import { readCertificateExtensions, type CertificateExtensions, type RawExtension } from './certificate-extensions.ts'
import { certificateLayout, type CertificateLayout } from './layout.ts'
import { defaultSha256, type Sha256 } from './rsa-verify.ts'
import { parentCnsOf } from './_names.ts'

/** Options for parsing: the SHA-256 to hash with (a CryptoProvider's `sha256`; default @noble/hashes). */
export interface CertificateOptions {
  readonly sha256?: Sha256
}

const CODE = 'CERT_PARSE'
// RFC 5280 §4.1.2.4, X.520: id-at-commonName 2.5.4.3.
const CN_OID = fromHex('550403')
// String types a CN may use in names this fleet's verifiers accept (RFC 5280 §4.1.2.4 DirectoryString, ASCII content).
const CN_STRING_TAGS = [0x0c, 0x13, 0x14, 0x16]

function asciiText(bytes: Uint8Array, what: string, code: KinErrorCode = CODE): string {
  let out = ''
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!
    if (b < 0x20 || b > 0x7e) throw new DecodeError(code, `${what} is not printable ASCII`)
    out += String.fromCharCode(b)
  }
  return out
}

// RFC 5280 §4.1.2.5.1 UTCTime YYMMDDHHMMSSZ (YY >= 50 means 19YY) and §4.1.2.5.2 GeneralizedTime YYYYMMDDHHMMSSZ.
function timeOf(der: Uint8Array, element: DerElement): number {
  const text = asciiText(contentBytes(der, element), 'validity time')
  const utc = element.tag === 0x17
  if (!(utc ? /^\d{12}Z$/ : /^\d{14}Z$/).test(text) || (element.tag !== 0x17 && element.tag !== 0x18)) {
    throw new DecodeError(CODE, `validity time "${text}" is not a UTCTime or GeneralizedTime in Zulu seconds`)
  }
  const n = (from: number, length: number): number => Number(text.slice(from, from + length))
  const year = utc ? (n(0, 2) >= 50 ? 1900 : 2000) + n(0, 2) : n(0, 4)
  const o = utc ? 2 : 4
  const month = n(o, 2),
    day = n(o + 2, 2),
    hour = n(o + 4, 2),
    minute = n(o + 6, 2),
    second = n(o + 8, 2)
  const ms = Date.UTC(year, month - 1, day, hour, minute, second)
  const back = new Date(ms)
  if (back.getUTCMonth() !== month - 1 || back.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59) {
    throw new DecodeError(CODE, `validity time "${text}" is not a calendar time`)
  }
  return Math.floor(ms / 1000)
}

/** The one CN of a Name (RFC 5280 §4.1.2.6): DecodeError `code` when malformed, `nameCode` unless exactly one printable CN. */
export function subjectCnOf(
  der: Uint8Array,
  name: DerElement,
  code: KinErrorCode = CODE,
  nameCode: KinErrorCode = CODE,
): string {
  const cns: Uint8Array[] = []
  for (const rdn of childrenOf(der, expectTag(name, TAG.sequence, code), code)) {
    for (const attribute of childrenOf(der, expectTag(rdn, TAG.set, code), code)) {
      const [type, value] = childrenOf(der, expectTag(attribute, TAG.sequence, code), code)
      if (value === undefined) throw new DecodeError(code, 'name attribute without a value')
      if (!bytesEqual(contentBytes(der, expectTag(type, TAG.oid, code)), CN_OID)) continue
      if (!CN_STRING_TAGS.includes(value.tag))
        throw new DecodeError(nameCode, `subject CN has string tag 0x${value.tag.toString(16)}`)
      cns.push(contentBytes(der, value))
    }
  }
  if (cns.length !== 1) throw new DecodeError(nameCode, `subject holds ${cns.length} CNs, expected 1`)
  const cn = asciiText(cns[0]!, 'subject CN', nameCode)
  if (cn.length === 0 || cn.length > 253)
    throw new DecodeError(nameCode, 'subject CN is not printable ASCII of 1 to 253 characters')
  return cn
}

/** The TBSCertificate fields kinship reads, before the extensions are interpreted. */
export interface CertificateFields {
  /** Serial number, lowercase hex of its DER content octets. */
  readonly serialHex: string
  readonly notBefore: number
  readonly notAfter: number
  readonly cn: string
  readonly extensions: readonly RawExtension[]
}

// RFC 5280 §4.1 and §4.2: Extensions ::= SEQUENCE OF SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }.
function rawExtensions(der: Uint8Array, wrapper: DerElement | undefined): RawExtension[] {
  if (wrapper === undefined) return []
  const [list, extra] = childrenOf(der, wrapper, CODE)
  if (list === undefined || extra !== undefined) throw new DecodeError(CODE, 'extensions field must hold one SEQUENCE')
  return childrenOf(der, expectTag(list, TAG.sequence, CODE), CODE).map(ext => {
    const parts = childrenOf(der, expectTag(ext, TAG.sequence, CODE), CODE)
    const id = oidText(contentBytes(der, expectTag(parts[0], TAG.oid, CODE)))
    let i = 1,
      critical = false
    if (parts[i]?.tag === TAG.boolean) {
      const flag = contentBytes(der, parts[i++]!)
      if (flag.length !== 1) throw new DecodeError(CODE, `extension ${id}: critical is not one byte`)
      critical = flag[0] !== 0
    }
    const value = contentBytes(der, expectTag(parts[i++], TAG.octetString, CODE))
    if (i !== parts.length) throw new DecodeError(CODE, `extension ${id} has ${parts.length} fields`)
    return { id, critical, value }
  })
}

/** Reads a TBSCertificate (RFC 5280 §4.1.2): v3 only, validity, subject CN, extensions; DecodeError CERT_PARSE otherwise. */
export function readCertificateFields(signed: Uint8Array): CertificateFields {
  const fields = childrenOf(signed, readWhole(signed, TAG.sequence, CODE), CODE)
  // RFC 5280 §4.1.2.1: [0] EXPLICIT Version; kinship certificates are v3 (value 2).
  const version = fields[0]?.tag === TAG.context0 ? childrenOf(signed, fields[0], CODE)[0] : undefined
  const v = version === undefined ? undefined : contentBytes(signed, expectTag(version, TAG.integer, CODE))
  if (v === undefined || v.length !== 1 || v[0] !== 2) throw new DecodeError(CODE, 'certificate is not X.509 v3')
  const serial = contentBytes(signed, expectTag(fields[1], TAG.integer, CODE))
  if (serial.length === 0) throw new DecodeError(CODE, 'empty serial number')
  const validity = childrenOf(signed, expectTag(fields[4], TAG.sequence, CODE), CODE)
  if (validity.length !== 2) throw new DecodeError(CODE, 'validity must hold notBefore and notAfter')
  // RFC 5280 §4.1: after the key come only issuerUniqueID [1], subjectUniqueID [2] and extensions [3].
  const rest = fields.slice(7)
  if (rest.some(f => f.tag !== 0x81 && f.tag !== 0xa1 && f.tag !== 0x82 && f.tag !== 0xa2 && f.tag !== TAG.context3)) {
    throw new DecodeError(CODE, 'TBSCertificate holds an unknown field after the subject key')
  }
  return {
    serialHex: toHex(serial),
    notBefore: timeOf(signed, validity[0]!),
    notAfter: timeOf(signed, validity[1]!),
    cn: subjectCnOf(signed, expectTag(fields[5], TAG.sequence, CODE)),
    extensions: rawExtensions(
      signed,
      rest.find(f => f.tag === TAG.context3),
    ),
  }
}

/**
 * The one certificate reader: an X.509 v3 certificate with an RSA or P-256 key, read by strict DER (no node-forge, so
 * kin-core runs it too; DeviceCertificate adds PEM). Construction parses and checks structure (KinError CERT_PARSE);
 * other fields are computed on first use.
 */
export class DerCertificate {
  /** The certificate's DER encoding, exactly as received. */
  readonly der: Uint8Array
  /** Raw byte slices: signed part, algorithms, names, SubjectPublicKeyInfo. */
  readonly layout: CertificateLayout
  /** Subject CN. */
  readonly cn: string
  /** Not valid before, seconds since the epoch. */
  readonly notBefore: number
  /** Not valid after, seconds since the epoch. */
  readonly notAfter: number
  /** Serial number, lowercase hex of its DER content octets. */
  readonly serialHex: string
  readonly #extensions: CertificateExtensions
  readonly #sha256: Sha256
  #spkiHash: Uint8Array | undefined
  #certHash: Uint8Array | undefined
  #parentCns: readonly string[] | undefined

  /** Parses DER bytes (a copy is kept); throws KinError CERT_PARSE on anything malformed. */
  constructor(der: Uint8Array, options: CertificateOptions = {}) {
    if (!(der instanceof Uint8Array)) throw new DecodeError('CERT_PARSE', 'certificate must be DER bytes')
    this.der = der.slice()
    this.layout = certificateLayout(this.der, 'CERT_PARSE')
    const fields = readCertificateFields(this.layout.signed)
    this.cn = fields.cn
    this.notBefore = fields.notBefore
    this.notAfter = fields.notAfter
    this.serialHex = fields.serialHex
    this.#extensions = readCertificateExtensions(fields.extensions)
    this.#sha256 = options.sha256 ?? defaultSha256
  }

  /** All dNSName entries of the subjectAltName, in order. */
  get sanDns(): readonly string[] {
    return this.#extensions.sanDns
  }
  /** All uniformResourceIdentifier entries of the subjectAltName, in order. */
  get sanUris(): readonly string[] {
    return this.#extensions.sanUris
  }
  /** Count of subjectAltName entries that are neither dNSNames nor URIs. */
  get sanOtherCount(): number {
    return this.#extensions.sanOtherCount
  }
  /** The CNs named by `kin://<fleet domain>/parent/<label>` SAN URIs (normally zero or one). */
  get parentCns(): readonly string[] {
    return (this.#parentCns ??= Object.freeze(parentCnsOf(this.sanUris)))
  }
  /** The parent's CN from the parent marker URI; undefined for L0 (and when there are several). */
  get parentCn(): string | undefined {
    const parents = this.parentCns
    return parents.length === 1 ? parents[0] : undefined
  }
  /** basicConstraints cA (false when the extension is absent). */
  get isCA(): boolean {
    return this.#extensions.isCA
  }
  /** basicConstraints pathLenConstraint, if any. */
  get pathLength(): number | undefined {
    return this.#extensions.pathLength
  }
  /** keyUsage bit names; undefined when the extension is absent. */
  get keyUsage(): readonly string[] | undefined {
    return this.#extensions.keyUsage
  }
  /** extKeyUsage purposes ('serverAuth', 'clientAuth', or dotted OIDs); undefined when absent. */
  get extKeyUsage(): readonly string[] | undefined {
    return this.#extensions.extKeyUsage
  }
  /** subjectKeyIdentifier bytes, if present. */
  get subjectKeyId(): Uint8Array | undefined {
    return this.#extensions.subjectKeyId
  }
  /** DER SubjectPublicKeyInfo, exactly as encoded in the certificate. */
  get spkiDer(): Uint8Array {
    return this.layout.spki
  }
  /** SHA-256 of the DER SubjectPublicKeyInfo (32 bytes): what authorize events bind. */
  get spkiHash(): Uint8Array {
    return (this.#spkiHash ??= this.#sha256(this.layout.spki))
  }
  /** SHA-256 of the certificate DER (32 bytes): what certified events record. */
  get certHash(): Uint8Array {
    return (this.#certHash ??= this.#sha256(this.der))
  }
  /** Lowercase hex of `certHash`. */
  get certHashHex(): string {
    return toHex(this.certHash)
  }
}
