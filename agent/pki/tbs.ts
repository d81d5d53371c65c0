/** @module Reading a TBSCertificate's fields with kinship's own DER reader (no node-forge): version, serial, validity, subject CN, extensions. */
import { DecodeError, type KinErrorCode } from '../errors.ts'
import { bytesEqual, fromHex, toHex } from '../codec/bytes.ts'
import { TAG, childrenOf, contentBytes, expectTag, readWhole, type DerElement } from './der.ts'
import {
  EXTENSION_OID, EXT_KEY_USAGE_NAME, readBasicConstraints, readKeyUsage, readSubjectAltName, readSubjectKeyIdentifier,
} from './extensions.ts'
import type { CertificateExtensions } from './certificate-extensions.ts'

const CODE = 'CERT_PARSE'
// RFC 5280 §4.1.2.4, X.520: id-at-commonName 2.5.4.3.
const CN_OID = fromHex('550403')
// String types a CN may use in names this fleet's verifiers accept (RFC 5280 §4.1.2.4 DirectoryString, ASCII content).
const CN_STRING_TAGS = [0x0c, 0x13, 0x14, 0x16]
const MAX_OID_BYTES = 32

/** X.690 §8.19: an OBJECT IDENTIFIER's content octets in dotted form; DecodeError CERT_PARSE when malformed. */
export function oidText(content: Uint8Array): string {
  if (content.length === 0 || content.length > MAX_OID_BYTES) throw new DecodeError(CODE, 'OBJECT IDENTIFIER of bad length')
  const arcs: number[] = []
  let value = 0, fresh = true
  for (let i = 0; i < content.length; i++) {
    const b = content[i]!
    // X.690 §8.19.2: subidentifiers are minimal, so none starts with 0x80.
    if (fresh && b === 0x80) throw new DecodeError(CODE, 'OBJECT IDENTIFIER subidentifier is not minimal')
    value = value * 128 + (b & 0x7f)
    fresh = (b & 0x80) === 0
    if (fresh) { arcs.push(value); value = 0 }
  }
  if (!fresh) throw new DecodeError(CODE, 'OBJECT IDENTIFIER ends inside a subidentifier')
  const first = arcs[0]!
  const top = first < 80 ? Math.floor(first / 40) : 2
  return [top, first - 40 * top].concat(arcs.slice(1)).join('.')
}

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
  const month = n(o, 2), day = n(o + 2, 2), hour = n(o + 4, 2), minute = n(o + 6, 2), second = n(o + 8, 2)
  const ms = Date.UTC(year, month - 1, day, hour, minute, second)
  const back = new Date(ms)
  if (back.getUTCMonth() !== month - 1 || back.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59) {
    throw new DecodeError(CODE, `validity time "${text}" is not a calendar time`)
  }
  return Math.floor(ms / 1000)
}

/** The one CN of a Name (UTF8String, PrintableString, T61String or IA5String of printable ASCII); `code` (DecodeError) otherwise, `parseCode` for a malformed Name. */
export function subjectCnOf(der: Uint8Array, name: DerElement, code: KinErrorCode = CODE, parseCode: KinErrorCode = CODE): string {
  const cns: Uint8Array[] = []
  for (const rdn of childrenOf(der, expectTag(name, TAG.sequence, parseCode), parseCode)) {
    for (const attribute of childrenOf(der, expectTag(rdn, TAG.set, parseCode), parseCode)) {
      const [type, value] = childrenOf(der, expectTag(attribute, TAG.sequence, parseCode), parseCode)
      if (value === undefined) throw new DecodeError(parseCode, 'name attribute without a value')
      if (!bytesEqual(contentBytes(der, expectTag(type, TAG.oid, parseCode)), CN_OID)) continue
      if (!CN_STRING_TAGS.includes(value.tag)) throw new DecodeError(parseCode, `subject CN has string tag 0x${value.tag.toString(16)}`)
      cns.push(contentBytes(der, value))
    }
  }
  if (cns.length !== 1) throw new DecodeError(code, `subject holds ${cns.length} CNs, expected 1`)
  const cn = asciiText(cns[0]!, 'subject CN', code)
  if (cn.length === 0 || cn.length > 253) throw new DecodeError(code, 'subject CN is not printable ASCII of 1 to 253 characters')
  return cn
}

function readExtKeyUsage(value: Uint8Array): string[] {
  return childrenOf(value, readWhole(value, TAG.sequence, CODE), CODE).map(e => {
    const oid = oidText(contentBytes(value, expectTag(e, TAG.oid, CODE)))
    return EXT_KEY_USAGE_NAME[oid] ?? oid
  })
}

type Extensions = CertificateExtensions

const KNOWN_EXTENSIONS: readonly string[] = Object.values(EXTENSION_OID)

// RFC 5280 §4.1 and §4.2: Extensions ::= SEQUENCE OF SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }.
function extensionsOf(der: Uint8Array, wrapper: DerElement | undefined): Extensions {
  const byId = new Map<string, Uint8Array>()
  if (wrapper !== undefined) {
    const [list, extra] = childrenOf(der, wrapper, CODE)
    if (list === undefined || extra !== undefined) throw new DecodeError(CODE, 'extensions field must hold one SEQUENCE')
    for (const ext of childrenOf(der, expectTag(list, TAG.sequence, CODE), CODE)) {
      const parts = childrenOf(der, expectTag(ext, TAG.sequence, CODE), CODE)
      const id = oidText(contentBytes(der, expectTag(parts[0], TAG.oid, CODE)))
      let i = 1, critical = false
      if (parts[i]?.tag === TAG.boolean) critical = contentBytes(der, parts[i++]!)[0] !== 0
      const value = contentBytes(der, expectTag(parts[i++], TAG.octetString, CODE))
      if (i !== parts.length) throw new DecodeError(CODE, `extension ${id} has ${parts.length} fields`)
      if (byId.has(id)) throw new DecodeError(CODE, `extension ${id} appears more than once`)
      // RFC 5280 §4.2: a critical extension that is not understood makes the certificate unusable.
      if (critical && !KNOWN_EXTENSIONS.includes(id)) throw new DecodeError(CODE, `unsupported critical extension ${id}`)
      byId.set(id, value)
    }
  }
  const san = byId.get(EXTENSION_OID.subjectAltName), bc = byId.get(EXTENSION_OID.basicConstraints)
  const ku = byId.get(EXTENSION_OID.keyUsage), eku = byId.get(EXTENSION_OID.extKeyUsage), ski = byId.get(EXTENSION_OID.subjectKeyIdentifier)
  const names = san === undefined ? { dns: [], uris: [], otherCount: 0 } : readSubjectAltName(san)
  const constraints = bc === undefined ? { isCA: false, pathLength: undefined } : readBasicConstraints(bc)
  return {
    sanDns: Object.freeze(names.dns), sanUris: Object.freeze(names.uris), sanOtherCount: names.otherCount, isCA: constraints.isCA, pathLength: constraints.pathLength,
    keyUsage: ku === undefined ? undefined : Object.freeze(readKeyUsage(ku)),
    extKeyUsage: eku === undefined ? undefined : Object.freeze(readExtKeyUsage(eku)),
    subjectKeyId: ski === undefined ? undefined : readSubjectKeyIdentifier(ski),
  }
}

/** The fields of a TBSCertificate kinship reads, from the signed bytes of a certificate layout. */
export interface TbsFields {
  /** Subject CN. */
  readonly cn: string
  /** Validity, seconds since the epoch. */
  readonly notBefore: number
  readonly notAfter: number
  /** Serial number, lowercase hex of its DER content octets. */
  readonly serialHex: string
  readonly extensions: CertificateExtensions
}

/** Reads a v3 TBSCertificate (RFC 5280 §4.1.2); DecodeError CERT_PARSE on anything malformed. */
export function readTbsFields(s: Uint8Array): TbsFields {
  const fields = childrenOf(s, readWhole(s, TAG.sequence, CODE), CODE)
  // RFC 5280 §4.1.2.1: [0] EXPLICIT Version; kinship certificates are v3 (value 2).
  const version = fields[0]?.tag === TAG.context0 ? childrenOf(s, fields[0], CODE)[0] : undefined
  const v = version === undefined ? undefined : contentBytes(s, expectTag(version, TAG.integer, CODE))
  if (v === undefined || v.length !== 1 || v[0] !== 2) throw new DecodeError(CODE, 'certificate is not X.509 v3')
  const serial = contentBytes(s, expectTag(fields[1], TAG.integer, CODE))
  const validity = childrenOf(s, expectTag(fields[4], TAG.sequence, CODE), CODE)
  if (validity.length !== 2) throw new DecodeError(CODE, 'validity must hold notBefore and notAfter')
  return {
    notBefore: timeOf(s, validity[0]!),
    notAfter: timeOf(s, validity[1]!),
    serialHex: toHex(serial),
    cn: subjectCnOf(s, fields[5]!),
    extensions: extensionsOf(s, fields.slice(7).find(f => f.tag === TAG.context3)),
  }
}
