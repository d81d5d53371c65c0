/** @module PEM armour (RFC 7468): strict base64 between BEGIN/END lines with the expected label. */
import { DecodeError, type KinErrorCode } from '../errors.ts'

// Room for a few 16 KiB objects in base64 plus surrounding text; bounds the scan of untrusted text.
const MAX_PEM_TEXT = 131072
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n\t ]*?)-----END ([A-Z0-9 ]+)-----/
// RFC 7468 §3: strict base64, padding only at the end.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
let sextets: Uint8Array | undefined

// Base64 already checked against BASE64: four characters make three bytes, in one pass over the text (forge's
// decoder builds a binary string first, ten times slower on a 20 KiB request).
function decodeBase64(body: string): Uint8Array {
  if (sextets === undefined) {
    sextets = new Uint8Array(128)
    for (let i = 0; i < ALPHABET.length; i++) sextets[ALPHABET.charCodeAt(i)] = i
  }
  const table = sextets
  const padding = body.endsWith('==') ? 2 : body.endsWith('=') ? 1 : 0
  const out = new Uint8Array((body.length / 4) * 3 - padding)
  let o = 0
  for (let i = 0; i < body.length; i += 4) {
    const n =
      (table[body.charCodeAt(i)]! << 18) |
      (table[body.charCodeAt(i + 1)]! << 12) |
      (table[body.charCodeAt(i + 2)]! << 6) |
      table[body.charCodeAt(i + 3)]!
    if (o < out.length) out[o++] = n >> 16
    if (o < out.length) out[o++] = (n >> 8) & 0xff
    if (o < out.length) out[o++] = n & 0xff
  }
  return out
}

/** True when `text` looks like PEM rather than raw DER. */
export function isPem(text: unknown): text is string {
  return typeof text === 'string' && text.includes('-----BEGIN ')
}

/** DER bytes of the first PEM block labelled `label`; DecodeError `code` when there is none or it is malformed. */
export function pemToDer(text: string, label: string, code: KinErrorCode): Uint8Array {
  if (typeof text !== 'string') throw new DecodeError(code, `expected PEM text, got ${typeof text}`)
  if (text.length > MAX_PEM_TEXT)
    throw new DecodeError(code, `PEM text of ${text.length} characters is more than ${MAX_PEM_TEXT}`)
  let rest = text
  for (;;) {
    const m = PEM_BLOCK.exec(rest)
    if (m === null) throw new DecodeError(code, `no PEM block labelled "${label}"`)
    if (m[1] === label) {
      if (m[3] !== label) throw new DecodeError(code, `PEM block "${label}" ends with "${m[3]}"`)
      const body = m[2]!.replace(/[\r\n\t ]/g, '')
      if (body.length === 0 || !BASE64.test(body))
        throw new DecodeError(code, `PEM block "${label}" holds malformed base64`)
      return decodeBase64(body)
    }
    rest = rest.slice(m.index + m[0].length)
  }
}

// RFC 4648 §4 base64 with padding; no node-forge, so the Node device bundle can leave forge out.
function encodeBase64(bytes: Uint8Array): string {
  let out = ''
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0)
    out += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]!
    out += i + 1 < bytes.length ? ALPHABET[(n >> 6) & 63]! : '='
    out += i + 2 < bytes.length ? ALPHABET[n & 63]! : '='
  }
  return out
}

/** PEM text for DER bytes under `label`, 64-character lines (RFC 7468 §2). */
export function derToPem(der: Uint8Array, label: string): string {
  const body = encodeBase64(der)
  let lines = ''
  for (let i = 0; i < body.length; i += 64) lines += body.slice(i, i + 64) + '\n'
  return `-----BEGIN ${label}-----\n${lines}-----END ${label}-----\n`
}
