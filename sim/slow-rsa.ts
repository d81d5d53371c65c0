/** @module Hostile RSA keys and the CSRs and certificates that carry them: keys whose RSAVP1 would take seconds to minutes. */
import { randomBytes } from 'node:crypto'
import { TAG, childrenOf, contentBytes, elementBytes, readWhole } from '../agent/pki/der.ts'
import { derToPem, pemToDer } from '../agent/pki/pem.ts'
import { MAX_SIGNED_BYTES } from '../agent/pki/layout.ts'

/** The shapes of hostile key the suite sends, each with what it would cost a verifier that computes first. */
export type SlowRsaShape = 'huge-exponent' | 'huge-modulus' | 'modulus-16384' | 'modulus-16KiB' | 'modulus-512'

/** One hostile key: its SubjectPublicKeyInfo and the length of a signature that passes every check before RSAVP1. */
export interface SlowRsaKey {
  readonly shape: SlowRsaShape
  readonly spkiDer: Uint8Array
  /** The modulus length in bytes: a signature of exactly this length, below the modulus, reaches the arithmetic. */
  readonly k: number
  readonly modulusBits: number
  readonly exponentBytes: number
}

/** Bytes a hostile exponent takes so the CSR carrying it stays just under MAX_SIGNED_BYTES (about 14 KiB). */
export const HUGE_EXPONENT_BYTES = MAX_SIGNED_BYTES - 2048
/** Bytes of the largest modulus whose CSR (modulus and same-length signature) stays under MAX_SIGNED_BYTES. */
export const HUGE_MODULUS_BYTES = (MAX_SIGNED_BYTES - 1024) / 2

/** X.690 DER: tag, minimal definite length, content. */
export function tlv(tag: number, content: Uint8Array): Uint8Array {
  const n = content.length
  const length =
    n < 0x80
      ? [n]
      : n < 0x100
        ? [0x81, n]
        : n < 0x10000
          ? [0x82, n >> 8, n & 0xff]
          : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]
  const out = new Uint8Array(1 + length.length + n)
  out[0] = tag
  out.set(length, 1)
  out.set(content, 1 + length.length)
  return out
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

/** A positive DER INTEGER of these magnitude bytes (a zero byte is prefixed when the top bit is set). */
function integer(magnitude: Uint8Array): Uint8Array {
  return tlv(TAG.integer, (magnitude[0]! & 0x80) !== 0 ? concat(new Uint8Array([0]), magnitude) : magnitude)
}

/** rsaEncryption SubjectPublicKeyInfo (RFC 8017 §A.1.1 in RFC 5280 §4.1.2.7) of any modulus and exponent bytes. */
export function rsaSpki(modulus: Uint8Array, exponent: Uint8Array): Uint8Array {
  const algorithm = Buffer.from('300d06092a864886f70d0101010500', 'hex')
  const key = tlv(TAG.sequence, concat(integer(modulus), integer(exponent)))
  return tlv(TAG.sequence, concat(algorithm, tlv(TAG.bitString, concat(new Uint8Array([0]), key))))
}

/** Random bytes with the top bit set (so the length is exact) and the low bit set (odd, as an RSA modulus is). */
function oddFullLength(bytes: number): Uint8Array {
  const b = new Uint8Array(randomBytes(bytes))
  b[0]! |= 0xc0
  b[bytes - 1]! |= 0x01
  return b
}

/** A hostile key of `shape`; its modulus is random (no one holds a private key for it, and none is needed). */
export function slowRsaKey(shape: SlowRsaShape): SlowRsaKey {
  const F4 = new Uint8Array([1, 0, 1])
  const make = (modulusBytes: number, exponent: Uint8Array): SlowRsaKey => ({
    shape,
    spkiDer: rsaSpki(oddFullLength(modulusBytes), exponent),
    k: modulusBytes,
    modulusBits: modulusBytes * 8,
    exponentBytes: exponent.length,
  })
  switch (shape) {
    case 'huge-exponent': {
      const e = oddFullLength(HUGE_EXPONENT_BYTES)
      e[0] = 0x7f
      return make(256, e)
    }
    case 'huge-modulus':
      return make(HUGE_MODULUS_BYTES, F4)
    case 'modulus-16384':
      return make(2048, F4)
    case 'modulus-16KiB':
      return make(16384, F4)
    case 'modulus-512':
      return make(64, F4)
  }
}

/** A signature of exactly k bytes below the modulus: what makes a verifier that does not check the key compute. */
export function signatureFor(key: SlowRsaKey): Uint8Array {
  const s = new Uint8Array(randomBytes(key.k))
  s[0] = 0x40
  return s
}

/** Replaces field `index` of the signed part of a certificate or CSR and its signature; the algorithm stays. */
function resign(
  der: Uint8Array,
  field: (fields: Uint8Array[]) => number,
  spkiDer: Uint8Array,
  signature: Uint8Array,
): Uint8Array {
  const outer = childrenOf(der, readWhole(der, TAG.sequence, 'BAD_ARGUMENT'), 'BAD_ARGUMENT')
  const signed = elementBytes(der, outer[0]!)
  const fields = childrenOf(signed, readWhole(signed, TAG.sequence, 'BAD_ARGUMENT'), 'BAD_ARGUMENT').map(f =>
    elementBytes(signed, f),
  )
  fields[field(fields)] = spkiDer
  const body = tlv(TAG.sequence, concat(...fields))
  return tlv(
    TAG.sequence,
    concat(body, elementBytes(der, outer[1]!), tlv(TAG.bitString, concat(new Uint8Array([0]), signature))),
  )
}

/** `csrPem` with its key replaced by `key` and a signature that reaches RSAVP1 (names unchanged). */
export function csrWithKey(csrPem: string, key: SlowRsaKey): string {
  const der = pemToDer(csrPem, 'CERTIFICATE REQUEST', 'BAD_ARGUMENT')
  return derToPem(
    resign(der, () => 2, key.spkiDer, signatureFor(key)),
    'CERTIFICATE REQUEST',
  )
}

/** Certificate DER with its subject key replaced by `key` (its own signature no longer holds: a challenge answer checks the key first). */
export function certificateWithKey(certDer: Uint8Array, key: SlowRsaKey | Uint8Array): Uint8Array {
  const spki = key instanceof Uint8Array ? key : key.spkiDer
  const outer = childrenOf(certDer, readWhole(certDer, TAG.sequence, 'BAD_ARGUMENT'), 'BAD_ARGUMENT')
  const signature = contentBytes(certDer, outer[2]!).subarray(1)
  // TBSCertificate: [0] version, serial, signature, issuer, validity, subject, spki.
  return resign(certDer, fields => (fields[0]![0] === TAG.context0 ? 6 : 5), spki, signature)
}
