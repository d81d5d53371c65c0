/** @module Readers for the X.509 extensions kinship relies on (RFC 5280 §4.2), strict DER on the raw extension values. */
import { DecodeError } from '../errors.ts'
import { TAG, childrenOf, contentBytes, expectTag, readWhole, type DerElement } from './der.ts'

/** Extension OIDs kinship understands; any other critical extension makes a certificate unusable (RFC 5280 §4.2). */
export const EXTENSION_OID = {
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
} as const

/** KeyUsage bit names in bit order (RFC 5280 §4.2.1.3). */
export const KEY_USAGE_BITS = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
] as const

/** Names for the extended key usages kinship checks (RFC 5280 §4.2.1.12); others are reported as dotted OIDs. */
export const EXT_KEY_USAGE_NAME: Readonly<Record<string, string>> = {
  '1.3.6.1.5.5.7.3.1': 'serverAuth',
  '1.3.6.1.5.5.7.3.2': 'clientAuth',
}

const CODE = 'CERT_PARSE'
const MAX_OID_BYTES = 32

/** X.690 §8.19: an OBJECT IDENTIFIER's content octets in dotted form; DecodeError CERT_PARSE when malformed. */
export function oidText(content: Uint8Array): string {
  if (content.length === 0 || content.length > MAX_OID_BYTES)
    throw new DecodeError(CODE, 'OBJECT IDENTIFIER of bad length')
  const arcs: number[] = []
  let value = 0,
    fresh = true
  for (let i = 0; i < content.length; i++) {
    const b = content[i]!
    // X.690 §8.19.2: subidentifiers are minimal, so none starts with 0x80.
    if (fresh && b === 0x80) throw new DecodeError(CODE, 'OBJECT IDENTIFIER subidentifier is not minimal')
    value = value * 128 + (b & 0x7f)
    fresh = (b & 0x80) === 0
    if (fresh) {
      arcs.push(value)
      value = 0
    }
  }
  if (!fresh) throw new DecodeError(CODE, 'OBJECT IDENTIFIER ends inside a subidentifier')
  const first = arcs[0]!
  const top = first < 80 ? Math.floor(first / 40) : 2
  return [top, first - 40 * top].concat(arcs.slice(1)).join('.')
}

const GENERAL_NAME_DNS = 0x82
const GENERAL_NAME_URI = 0x86
// A parent marker is at most kin:// + a 200-character fleet domain + /parent/ + a 16-character label; longer URIs are read, then refused by name.
const MAX_SAN_URI = 1024

/** The names of the bits set in a KeyUsage BIT STRING. */
export function readKeyUsage(value: Uint8Array): string[] {
  const bits = contentBytes(value, readWhole(value, TAG.bitString, CODE))
  if (bits.length < 1 || bits[0]! > 7) throw new DecodeError(CODE, 'malformed keyUsage BIT STRING')
  const out: string[] = []
  KEY_USAGE_BITS.forEach((name, i) => {
    const byte = bits[1 + (i >> 3)]
    if (byte !== undefined && (byte & (0x80 >> (i & 7))) !== 0) out.push(name)
  })
  return out
}

/** The purposes of an ExtKeyUsageSyntax: known names, otherwise dotted OIDs. */
export function readExtKeyUsage(value: Uint8Array): string[] {
  const seq = readWhole(value, TAG.sequence, CODE)
  return childrenOf(value, seq, CODE).map(e => {
    const oid = oidText(contentBytes(value, expectTag(e, TAG.oid, CODE)))
    return EXT_KEY_USAGE_NAME[oid] ?? oid
  })
}

/** BasicConstraints (RFC 5280 §4.2.1.9): cA defaults to false. */
export function readBasicConstraints(value: Uint8Array): { isCA: boolean; pathLength: number | undefined } {
  const parts = childrenOf(value, readWhole(value, TAG.sequence, CODE), CODE)
  let i = 0,
    isCA = false,
    pathLength: number | undefined
  if (parts[i]?.tag === TAG.boolean) isCA = contentBytes(value, parts[i++]!)[0] !== 0
  if (parts[i]?.tag === TAG.integer) {
    const n = contentBytes(value, parts[i++]!)
    if (n.length < 1 || n.length > 4 || (n[0]! & 0x80) !== 0)
      throw new DecodeError(CODE, 'basicConstraints pathLenConstraint out of range')
    pathLength = n.reduce((acc, b) => acc * 256 + b, 0)
  }
  if (i !== parts.length) throw new DecodeError(CODE, 'malformed basicConstraints')
  return { isCA, pathLength }
}

// dNSName and uniformResourceIdentifier are IA5Strings; kinship names are printable ASCII.
function sanText(value: Uint8Array, name: DerElement, what: string, max: number): string {
  const text = contentBytes(value, name)
  if (text.length === 0 || text.length > max) throw new DecodeError(CODE, `subjectAltName ${what} length out of range`)
  if (text.some(b => b < 0x21 || b > 0x7e)) throw new DecodeError(CODE, `subjectAltName ${what} is not printable ASCII`)
  return String.fromCharCode(...text)
}

/** SubjectAltName (RFC 5280 §4.2.1.6): the dNSName and uniformResourceIdentifier entries, and how many are of any other kind. */
export function readSubjectAltName(value: Uint8Array): { dns: string[]; uris: string[]; otherCount: number } {
  const names = childrenOf(value, readWhole(value, TAG.sequence, CODE), CODE)
  if (names.length === 0) throw new DecodeError(CODE, 'subjectAltName must not be empty')
  const dns: string[] = [],
    uris: string[] = []
  let otherCount = 0
  for (const name of names) {
    if (name.tag === GENERAL_NAME_DNS) dns.push(sanText(value, name, 'dNSName', 253))
    else if (name.tag === GENERAL_NAME_URI) uris.push(sanText(value, name, 'uniformResourceIdentifier', MAX_SAN_URI))
    else otherCount++
  }
  return { dns, uris, otherCount }
}

/** The keyIdentifier of a SubjectKeyIdentifier extension value. */
export function readSubjectKeyIdentifier(value: Uint8Array): Uint8Array {
  return contentBytes(value, readWhole(value, TAG.octetString, CODE))
}
