/** @module Signature verification on Node: Ed25519 (what importing the public key costs) and TLS-key signatures per key type, node:crypto against the portable verifier. */
import { createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import { constants } from 'node:crypto'
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { nodeVerifier } from '../runtime/node/verifier.ts'
import { portableVerifier } from '../agent/pki/portable-verifier.ts'
import type { SignatureAlgorithm } from '../agent/pki/signature-algorithm.ts'

/** Distinct keys, so that nothing is found in the provider's key cache: every event of a fleet has a new signer. */
const N = 3000

interface Item {
  msg: Buffer
  sig: Buffer
  der: Buffer
  raw: Uint8Array
  x: string
  key: KeyObject
}

function items(): Item[] {
  return Array.from({ length: N }, (_, i) => {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519')
    const msg = Buffer.alloc(230, i & 0xff)
    const der = publicKey.export({ format: 'der', type: 'spki' })
    const raw = new Uint8Array(der.subarray(der.length - 32))
    return {
      msg,
      sig: sign(null, msg, privateKey),
      der,
      raw,
      x: Buffer.from(raw).toString('base64url'),
      key: publicKey,
    }
  })
}

function rate(work: Item[], check: (it: Item) => boolean): number {
  const start = performance.now()
  for (const it of work) if (!check(it)) throw new Error('verify failed')
  return Math.round(work.length / ((performance.now() - start) / 1000))
}

// Bounded by count and by time: at most `max` verifications or `ms` milliseconds, whichever comes first.
function perSecond(verifyOnce: () => boolean, max: number, ms: number): number {
  for (let i = 0; i < 5; i++) if (!verifyOnce()) throw new Error('verify failed')
  const start = performance.now()
  let n = 0
  while (n < max && performance.now() - start < ms) {
    if (!verifyOnce()) throw new Error('verify failed')
    n++
  }
  return Math.round(n / ((performance.now() - start) / 1000))
}

/** One certificate-sized message signed by an RSA-2048 and a P-256 key, verified by node:crypto and by the portable verifier, in one run. */
function tlsKeys(emit: (row: object) => void): void {
  const message = Buffer.alloc(600, 7)
  const kinds: [string, SignatureAlgorithm, ReturnType<typeof generateKeyPairSync>][] = [
    ['rsa2048', 'rsa-pkcs1-sha256', generateKeyPairSync('rsa', { modulusLength: 2048 })],
    ['p256', 'ecdsa-p256-sha256', generateKeyPairSync('ec', { namedCurve: 'prime256v1' })],
  ]
  const perSec: Record<string, Record<string, number>> = {}
  for (const [kind, algorithm, keys] of kinds) {
    const spki = new Uint8Array(keys.publicKey.export({ type: 'spki', format: 'der' }))
    const signature = new Uint8Array(
      kind === 'rsa2048'
        ? sign('sha256', message, { key: keys.privateKey, padding: constants.RSA_PKCS1_PADDING })
        : sign('sha256', message, keys.privateKey),
    )
    const node = perSecond(() => nodeVerifier.verifySignature(algorithm, spki, message, signature), 20000, 1500)
    const portable = perSecond(() => portableVerifier.verifySignature(algorithm, spki, message, signature), 2000, 1500)
    perSec[kind] = { node, portable, nodeOverPortable: Math.round((node / portable) * 10) / 10 }
  }
  emit({
    bench: 'verify.tls',
    perSec,
    note: 'one 600-byte message; portable = BigInt RSA and agent/pki/p256.ts, what kin-core runs',
  })
}

export async function run(emit: (row: object) => void): Promise<void> {
  tlsKeys(emit)
  const work = items()
  // Each variant on its own fresh keys would cost key generation; the provider's cache is what the first pass
  // could fill, so the provider runs first, on keys it has never seen.
  const provider = rate(work, it => nodeCrypto.ed25519Verify(it.sig, it.msg, it.raw))
  const kept = rate(work, it => verify(null, it.msg, it.key, it.sig))
  const jwk = rate(work, it =>
    verify(null, it.msg, createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: it.x }, format: 'jwk' }), it.sig),
  )
  const der = rate(work, it =>
    verify(null, it.msg, createPublicKey({ key: it.der, format: 'der', type: 'spki' }), it.sig),
  )
  const start = performance.now()
  const ok = await Promise.all(
    work.map(it => new Promise<boolean>(res => verify(null, it.msg, it.key, it.sig, (e, v) => res(e === null && v)))),
  )
  if (ok.includes(false)) throw new Error('verify failed')
  const pool = Math.round(work.length / ((performance.now() - start) / 1000))
  emit({
    bench: 'verify.ed25519',
    keys: N,
    perSec: {
      keptKeyObject: kept,
      importJwk: jwk,
      importSpkiDer: der,
      nodeProviderNewKeys: provider,
      threadPoolKeptKeyObject: pool,
    },
    note: 'importJwk is what the node provider does for a key it has not seen; baseline: keptKeyObject (no import at all)',
  })
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run(row => process.stdout.write(JSON.stringify(row) + '\n'))
}
