/** @module Device names: labels derived from nonce and keys, their base32 form, CNs and fleet domains. */
import { KinError } from '../errors.ts'
import { concatBytes, utf8 } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { LABEL_BYTES } from './types.ts'

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567'
const LABEL_DOMAIN = utf8('kinship/label/v1\0')

/** RFC 4648 §6 base32, lowercase, unpadded: 10 label bytes become 16 characters. */
export function base32(bytes: Uint8Array): string {
  // Characters joined once (a flat string, not a rope of pieces): labels are kept as keys by every replica.
  const out: string[] = []
  let bits = 0,
    value = 0
  for (let i = 0; i < bytes.length; i++) {
    value = (value << 8) | bytes[i]!
    bits += 8
    while (bits >= 5) {
      out.push(ALPHABET[(value >>> (bits - 5)) & 31]!)
      bits -= 5
    }
  }
  if (bits > 0) out.push(ALPHABET[(value << (5 - bits)) & 31]!)
  return out.join('')
}

/** Inverse of `base32` for a 16-character label; throws KinError CERT_NAMES on anything else. */
export function labelFromBase32(text: string): Uint8Array {
  if (!/^[a-z2-7]{16}$/.test(text))
    throw new KinError('CERT_NAMES', `"${text}" is not a 16-character base32 device label`)
  const out = new Uint8Array(LABEL_BYTES)
  let bits = 0,
    value = 0,
    o = 0
  for (const ch of text) {
    value = (value << 5) | ALPHABET.indexOf(ch)
    bits += 5
    if (bits >= 8) {
      out[o++] = (value >>> (bits - 8)) & 0xff
      bits -= 8
    }
  }
  return out
}

/** The label of a new identity: SHA-256("kinship/label/v1\0" ‖ nonce ‖ spkiHash ‖ ledgerKey), first 10 bytes. */
export function deriveLabel(
  crypto: CryptoProvider,
  nonce: Uint8Array,
  spkiHash: Uint8Array,
  ledgerKey: Uint8Array,
): Uint8Array {
  return crypto.sha256(concatBytes(LABEL_DOMAIN, nonce, spkiHash, ledgerKey)).subarray(0, LABEL_BYTES)
}

/** The CN of a label in a fleet: `<base32 label>.<domain>`. */
export function cnOf(label: Uint8Array, domain: string): string {
  return `${base32(label)}.${domain}`
}

/** The label bytes of a CN in a fleet; throws KinError CERT_NAMES when the CN is not of that fleet. */
export function labelOfCn(cn: string, domain: string): Uint8Array {
  const suffix = '.' + domain
  if (typeof cn !== 'string' || !cn.endsWith(suffix))
    throw new KinError('CERT_NAMES', `"${cn}" is not a name in fleet ${domain}`)
  return labelFromBase32(cn.slice(0, -suffix.length))
}

// The parent marker is a URI, not a DNS name: a dNSName claims the device *is* that host, so `DNS:parent.<P>` made every
// child of P pass standard hostname checks for `parent.<P>` (DESIGN.md "Names"; SPIFFE uses URI SANs for the same reason).
const MARKER_SCHEME = 'kin://'
const MARKER_PATH = '/parent/'

/** The SAN URI that names a parent: `kin://<fleet domain>/parent/<parent label>` (the parent CN is `<label>.<fleet domain>`). */
export function parentMarker(parentCn: string): string {
  const dot = parentCn.indexOf('.')
  if (dot <= 0 || dot === parentCn.length - 1)
    throw new KinError('CERT_NAMES', `"${parentCn}" is not a device CN of the form <label>.<fleet domain>`)
  return `${MARKER_SCHEME}${parentCn.slice(dot + 1)}${MARKER_PATH}${parentCn.slice(0, dot)}`
}

/** The parent CN a SAN URI names, `<label>.<fleet domain>`; undefined when the URI is not of the parent marker's form. */
export function parentCnOfMarker(uri: string): string | undefined {
  if (!uri.startsWith(MARKER_SCHEME)) return undefined
  const rest = uri.slice(MARKER_SCHEME.length)
  const slash = rest.indexOf(MARKER_PATH)
  if (slash <= 0) return undefined
  const domain = rest.slice(0, slash),
    label = rest.slice(slash + MARKER_PATH.length)
  // Both parts must be exact name text: a query, fragment, port, user or further path makes it some other URI.
  if (!/^[a-z0-9.-]+$/.test(domain) || !/^[a-z2-7]+$/.test(label)) return undefined
  return `${label}.${domain}`
}

/** X.509's upper bound on a common name (RFC 5280 Appendix A, ub-common-name). */
export const MAX_CN_CHARS = 64

/**
 * Longest fleet domain. Every CN of the fleet must fit MAX_CN_CHARS: a device's `<16-character label>.<domain>` allows
 * 47 characters, the root's `kinship fleet root <domain>` (agent/pki/root-name.ts) 45, the tighter bound.
 */
export const MAX_FLEET_DOMAIN_CHARS = 45

/**
 * Checks a fleet domain is a lowercase DNS name of 2+ labels, at most MAX_FLEET_DOMAIN_CHARS characters; throws
 * FLEET_DOMAIN_TOO_LONG for a longer one (checked first: it costs nothing), FLEET_DOMAIN for anything else.
 */
export function validateFleetDomain(domain: string): string {
  if (typeof domain !== 'string' || domain.length === 0) {
    throw new KinError(
      'FLEET_DOMAIN',
      `fleet domain must be a DNS name such as smith.home.arpa, got ${JSON.stringify(domain)}`,
    )
  }
  if (domain.length > MAX_FLEET_DOMAIN_CHARS) {
    throw new KinError(
      'FLEET_DOMAIN_TOO_LONG',
      `fleet domain "${domain.length > 80 ? domain.slice(0, 80) + '…' : domain}" has ${domain.length} characters; at most ${MAX_FLEET_DOMAIN_CHARS} fit, so that every CN of the fleet (the root's "kinship fleet root <domain>", a device's "<16-character label>.<domain>") stays within X.509's ${MAX_CN_CHARS}-character limit`,
      { detail: { length: domain.length, limit: MAX_FLEET_DOMAIN_CHARS } },
    )
  }
  const labels = domain.split('.')
  const ok =
    labels.length >= 2 &&
    labels.every(l => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(l)) &&
    !/^[0-9]+$/.test(labels[labels.length - 1]!)
  if (!ok)
    throw new KinError(
      'FLEET_DOMAIN',
      `"${domain}" is not a valid fleet domain: use lowercase DNS labels separated by dots, e.g. smith.home.arpa`,
    )
  return domain
}

// C0 and C1 controls and DEL (a terminal obeys them), line and paragraph separators, and the bidirectional marks,
// embeddings, overrides and isolates that reorder what a terminal or a page shows (Unicode TR #9; CVE-2021-42574).
// A loop over UTF-16 code units, not a Unicode regular expression: every one of them is in the BMP, and the core
// also runs on engines without the regular expression `u` flag.
function isNotPrintable(c: number): boolean {
  return (
    c <= 0x1f ||
    (c >= 0x7f && c <= 0x9f) ||
    c === 0x061c ||
    c === 0x200e ||
    c === 0x200f ||
    c === 0x2028 ||
    c === 0x2029 ||
    (c >= 0x202a && c <= 0x202e) ||
    (c >= 0x2066 && c <= 0x2069)
  )
}

function firstNotPrintable(text: string): number {
  for (let i = 0; i < text.length; i++) if (isNotPrintable(text.charCodeAt(i))) return i
  return -1
}

/** Whether `text` holds no character that a terminal would obey or that reorders what it shows. */
export function isPrintableName(text: string): boolean {
  return firstNotPrintable(text) < 0
}

/** Throws NAME_NOT_PRINTABLE when a device name or kind (`what`) holds a control or reordering character. */
export function requirePrintableName(text: string, what: string): string {
  const at = firstNotPrintable(text)
  if (at >= 0) {
    const hex = text.charCodeAt(at).toString(16).padStart(4, '0')
    throw new KinError(
      'NAME_NOT_PRINTABLE',
      `${what} holds the non-printable character U+${hex} at position ${at}: use letters, digits, spaces and punctuation`,
    )
  }
  return text
}

/** `text` with every non-printable character shown as `\u{…}`, for terminals: a stored name can never forge output. */
export function escapeNonPrintable(text: string): string {
  if (firstNotPrintable(text) < 0) return text
  let out = ''
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    out += isNotPrintable(c) ? `\\u{${c.toString(16)}}` : text[i]
  }
  return out
}
