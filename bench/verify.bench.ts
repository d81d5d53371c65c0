/** @module Ed25519 verification on Node: what importing the public key costs (JWK, SPKI DER, a kept key object), sync and on the thread pool. */
import { createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import { nodeCrypto } from '../firmware-shims/node/crypto.ts'

/** Distinct keys, so that nothing is found in the provider's key cache: every event of a fleet has a new signer. */
const N = 3000

interface Item { msg: Buffer; sig: Buffer; der: Buffer; raw: Uint8Array; x: string; key: KeyObject }

function items(): Item[] {
  return Array.from({ length: N }, (_, i) => {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519')
    const msg = Buffer.alloc(230, i & 0xff)
    const der = publicKey.export({ format: 'der', type: 'spki' })
    const raw = new Uint8Array(der.subarray(der.length - 32))
    return { msg, sig: sign(null, msg, privateKey), der, raw, x: Buffer.from(raw).toString('base64url'), key: publicKey }
  })
}

function rate(work: Item[], check: (it: Item) => boolean): number {
  const start = performance.now()
  for (const it of work) if (!check(it)) throw new Error('verify failed')
  return Math.round(work.length / ((performance.now() - start) / 1000))
}

export async function run(emit: (row: object) => void): Promise<void> {
  const work = items()
  // Each variant on its own fresh keys would cost key generation; the provider's cache is what the first pass
  // could fill, so the provider runs first, on keys it has never seen.
  const provider = rate(work, it => nodeCrypto.ed25519Verify(it.sig, it.msg, it.raw))
  const kept = rate(work, it => verify(null, it.msg, it.key, it.sig))
  const jwk = rate(work, it => verify(null, it.msg, createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: it.x }, format: 'jwk' }), it.sig))
  const der = rate(work, it => verify(null, it.msg, createPublicKey({ key: it.der, format: 'der', type: 'spki' }), it.sig))
  const start = performance.now()
  const ok = await Promise.all(work.map(it => new Promise<boolean>(res => verify(null, it.msg, it.key, it.sig, (e, v) => res(e === null && v)))))
  if (ok.includes(false)) throw new Error('verify failed')
  const pool = Math.round(work.length / ((performance.now() - start) / 1000))
  emit({
    bench: 'verify.ed25519', keys: N, perSec: { keptKeyObject: kept, importJwk: jwk, importSpkiDer: der, nodeProviderNewKeys: provider, threadPoolKeptKeyObject: pool },
    note: 'importJwk is what the node provider does for a key it has not seen; baseline: keptKeyObject (no import at all)',
  })
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run(row => process.stdout.write(JSON.stringify(row) + '\n'))
}
