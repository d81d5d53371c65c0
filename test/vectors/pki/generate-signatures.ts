/**
 * @module Regenerates test/vectors/pki/signatures.json (run: node --import tsx test/vectors/pki/generate-signatures.ts):
 * RSASSA-PKCS1-v1_5 SHA-256 and ECDSA P-256 SHA-256 signatures with the verdict every kinship verifier must reach.
 * ECDSA keys and signatures come from RFC 6979 §A.2.5 (fixed) and node:crypto (fresh); the refusals are
 * Wycheproof-style edits of them: wrong key, wrong message, malformed DER, r or s = 0 or ≥ n, a point off the curve,
 * another curve, and an algorithm that does not fit its key. Never edit the JSON by hand.
 */
import { writeFileSync } from 'node:fs'
import { generateKeyPairSync, sign, constants, type KeyObject } from 'node:crypto'
import { p256 } from '@noble/curves/nist.js'
import { P256_ORDER } from '../../../agent/pki/ecdsa-signature.ts'

interface Vector {
  name: string
  algorithm: 'rsa-pkcs1-sha256' | 'ecdsa-p256-sha256'
  spki: string
  message: string
  signature: string
  valid: boolean
}
const vectors: Vector[] = []
const hex = (b: Uint8Array | Buffer): string => Buffer.from(b).toString('hex')
const spkiOf = (key: KeyObject): Uint8Array => new Uint8Array(key.export({ type: 'spki', format: 'der' }))
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)
function add(
  name: string,
  algorithm: Vector['algorithm'],
  spki: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
  valid: boolean,
): void {
  vectors.push({ name, algorithm, spki: hex(spki), message: hex(message), signature: hex(signature), valid })
}

// DER INTEGER content for a non-negative bigint: minimal, with a 0x00 pad when the top bit is set (X.690 §8.3).
function intContent(v: bigint): number[] {
  let h = v.toString(16)
  if (h.length % 2) h = '0' + h
  const bytes = [...Buffer.from(h, 'hex')]
  return bytes[0]! & 0x80 ? [0, ...bytes] : bytes
}
function derSig(r: bigint, s: bigint): Uint8Array {
  const ri = intContent(r),
    si = intContent(s)
  const body = [0x02, ri.length, ...ri, 0x02, si.length, ...si]
  return Uint8Array.from([0x30, body.length, ...body])
}
function p256Spki(point: Uint8Array): Uint8Array {
  // SubjectPublicKeyInfo { id-ecPublicKey, prime256v1 } ‖ BIT STRING 00 ‖ point (RFC 5480 §2).
  const prefix = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex')
  return Uint8Array.from([...prefix, ...point])
}

// RFC 6979 §A.2.5: P-256, SHA-256, messages "sample" and "test".
const rfcX = 'c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721'
const rfcPoint = p256.getPublicKey(Buffer.from(rfcX, 'hex'), false)
const rfcSpki = p256Spki(rfcPoint)
const sampleR = 0xefd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716n
const sampleS = 0xf7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8n
const testR = 0xf1abb023518351cd71d881567b1ea663ed3efcf6c5132b354f28d3b0b7d38367n
const testS = 0x019f4113742a2b14bd25926b49c649155f267e60d3814b4c0cc84250e46f0083n
const sample = utf8('sample'),
  test = utf8('test')
const E = 'ecdsa-p256-sha256'
add('RFC 6979 A.2.5 "sample" (high s, as the RFC gives it)', E, rfcSpki, sample, derSig(sampleR, sampleS), true)
add('RFC 6979 A.2.5 "sample", s normalised to n - s', E, rfcSpki, sample, derSig(sampleR, P256_ORDER - sampleS), true)
add('RFC 6979 A.2.5 "test"', E, rfcSpki, test, derSig(testR, testS), true)
add('RFC 6979 "sample" signature over "test": wrong message', E, rfcSpki, test, derSig(sampleR, sampleS), false)
add('r = 0', E, rfcSpki, sample, derSig(0n, sampleS), false)
add('s = 0', E, rfcSpki, sample, derSig(sampleR, 0n), false)
add('r = n', E, rfcSpki, sample, derSig(P256_ORDER, sampleS), false)
add('s = n', E, rfcSpki, sample, derSig(sampleR, P256_ORDER), false)
add('r + n (the same r modulo n)', E, rfcSpki, test, derSig(testR + P256_ORDER, testS), false)
const good = derSig(testR, testS)
add('trailing byte after the SEQUENCE', E, rfcSpki, test, Uint8Array.from([...good, 0]), false)
add(
  'non-minimal SEQUENCE length (0x81 form)',
  E,
  rfcSpki,
  test,
  Uint8Array.from([0x30, 0x81, good[1]!, ...good.subarray(2)]),
  false,
)
add(
  'indefinite SEQUENCE length (BER)',
  E,
  rfcSpki,
  test,
  Uint8Array.from([0x30, 0x80, ...good.subarray(2), 0, 0]),
  false,
)
const si = intContent(testS)
add(
  's with a redundant leading zero',
  E,
  rfcSpki,
  test,
  (() => {
    const ri = intContent(testR)
    const body = [0x02, ri.length, ...ri, 0x02, si.length + 1, 0, ...si]
    return Uint8Array.from([0x30, body.length, ...body])
  })(),
  false,
)
add(
  's negative (top bit set, no pad)',
  E,
  rfcSpki,
  sample,
  (() => {
    const ri = intContent(sampleR)
    const sb = intContent(sampleS).slice(1)
    const body = [0x02, ri.length, ...ri, 0x02, sb.length, ...sb]
    return Uint8Array.from([0x30, body.length, ...body])
  })(),
  false,
)
add(
  'raw r ‖ s (IEEE P1363), not DER',
  E,
  rfcSpki,
  test,
  Buffer.from(testR.toString(16).padStart(64, '0') + testS.toString(16).padStart(64, '0'), 'hex'),
  false,
)
add('empty signature', E, rfcSpki, test, new Uint8Array(0), false)
const offCurve = rfcPoint.slice()
offCurve[64]! ^= 1
add('public point not on the curve', E, p256Spki(offCurve), test, good, false)
const compressed = p256.getPublicKey(Buffer.from(rfcX, 'hex'), true)
add(
  'compressed public point',
  E,
  Uint8Array.from([...Buffer.from('3039301306072a8648ce3d020106082a8648ce3d030107032200', 'hex'), ...compressed]),
  test,
  good,
  false,
)

// Fresh keys from node:crypto: valid signatures and the edits every verifier must refuse.
const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }),
  ecOther = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }),
  rsaOther = generateKeyPairSync('rsa', { modulusLength: 2048 })
const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }),
  p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' })
for (let i = 0; i < 4; i++) {
  const message = utf8(`kinship signature vector ${i}`.repeat(i + 1))
  const ecSig = sign('sha256', message, ec.privateKey)
  add(`node:crypto P-256 #${i}`, E, spkiOf(ec.publicKey), message, ecSig, true)
  add(`node:crypto P-256 #${i}: another key`, E, spkiOf(ecOther.publicKey), message, ecSig, false)
  const flipped = Uint8Array.from(ecSig)
  flipped[flipped.length - 1]! ^= 1
  add(`node:crypto P-256 #${i}: last byte flipped`, E, spkiOf(ec.publicKey), message, flipped, false)
  const rsaSig = sign('sha256', message, { key: rsa.privateKey, padding: constants.RSA_PKCS1_PADDING })
  add(`node:crypto RSA-2048 #${i}`, 'rsa-pkcs1-sha256', spkiOf(rsa.publicKey), message, rsaSig, true)
  add(`node:crypto RSA-2048 #${i}: another key`, 'rsa-pkcs1-sha256', spkiOf(rsaOther.publicKey), message, rsaSig, false)
  add(
    `node:crypto RSA-2048 #${i}: other message`,
    'rsa-pkcs1-sha256',
    spkiOf(rsa.publicKey),
    utf8('other'),
    rsaSig,
    false,
  )
}
const m = utf8('kinship')
const rsaSig = sign('sha256', m, { key: rsa.privateKey, padding: constants.RSA_PKCS1_PADDING })
add('RSA signature one byte short', 'rsa-pkcs1-sha256', spkiOf(rsa.publicKey), m, rsaSig.subarray(1), false)
add(
  'RSA signature representative = n',
  'rsa-pkcs1-sha256',
  spkiOf(rsa.publicKey),
  m,
  Buffer.from(rsa.publicKey.export({ format: 'jwk' }).n as string, 'base64url'),
  false,
)
add(
  'RSASSA-PSS is not PKCS#1 v1.5',
  'rsa-pkcs1-sha256',
  spkiOf(rsa.publicKey),
  m,
  sign('sha256', m, { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING }),
  false,
)
add(
  "RSA-1024: a valid signature by a key outside kinship's parameters",
  'rsa-pkcs1-sha256',
  spkiOf(rsa1024.publicKey),
  m,
  sign('sha256', m, rsa1024.privateKey),
  false,
)
add(
  'P-384: a valid signature on another curve',
  E,
  spkiOf(p384.publicKey),
  m,
  sign('sha256', m, p384.privateKey),
  false,
)
add('ECDSA algorithm with an RSA key', E, spkiOf(rsa.publicKey), m, rsaSig, false)
add(
  'RSA algorithm with a P-256 key',
  'rsa-pkcs1-sha256',
  spkiOf(ec.publicKey),
  m,
  sign('sha256', m, ec.privateKey),
  false,
)

writeFileSync(
  new URL('./signatures.json', import.meta.url),
  JSON.stringify(
    {
      about:
        'Signature verdicts every kinship verifier reaches (node, portable, kin-core in QuickJS). Generated by generate-signatures.ts; do not edit.',
      vectors,
    },
    null,
    1,
  ) + '\n',
)
console.log(`${vectors.length} vectors, ${vectors.filter(v => v.valid).length} valid`)
