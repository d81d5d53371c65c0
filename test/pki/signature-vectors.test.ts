// test/vectors/pki/signatures.json on every path: node:crypto, the portable verifier, and kin-core's (the QuickJS run
// is in test/footprint/quickjs-signatures.test.ts). RFC 6979 §A.2.5, fresh node:crypto signatures and their
// Wycheproof-style edits: each path must reach the verdict the vector names.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { nodeVerifier } from '../../runtime/node/verifier.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { portableVerifier, createPortableVerifier } from '../../agent/pki/portable-verifier.ts'
import { coreVerifier } from '../../agent/core.ts'
import type { SignatureAlgorithm } from '../../agent/pki/signature-algorithm.ts'
import { p256SignatureCompact, P256_ORDER } from '../../agent/pki/ecdsa-signature.ts'

interface Vector {
  name: string
  algorithm: SignatureAlgorithm
  spki: string
  message: string
  signature: string
  valid: boolean
}
const { vectors } = JSON.parse(readFileSync(new URL('../vectors/pki/signatures.json', import.meta.url), 'utf8')) as {
  vectors: Vector[]
}
const bytes = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'))

t.test("every verifier reaches each vector's verdict", async t => {
  t.ok(vectors.length >= 40, `${vectors.length} vectors`)
  t.ok(
    vectors.some(v => v.valid && v.algorithm === 'ecdsa-p256-sha256') &&
      vectors.some(v => v.valid && v.algorithm === 'rsa-pkcs1-sha256'),
    'valid vectors of both kinds',
  )
  for (const verifier of [
    nodeVerifier,
    portableVerifier,
    createPortableVerifier(nodeCrypto.sha256, 'portable on node sha256'),
    coreVerifier,
  ]) {
    for (const v of vectors) {
      t.equal(
        verifier.verifySignature(v.algorithm, bytes(v.spki), bytes(v.message), bytes(v.signature)),
        v.valid,
        `${verifier.name}: ${v.name}`,
      )
    }
  }
})

t.test('SEC 1 §4.1.4: the strict DER reading both paths share', async t => {
  t.equal(p256SignatureCompact(new Uint8Array(73)), undefined, 'longer than any P-256 signature')
  const n = Buffer.from(P256_ORDER.toString(16), 'hex')
  t.equal(p256SignatureCompact(Uint8Array.from([0x30, 0x26, 0x02, 0x21, 0, ...n, 0x02, 0x01, 1])), undefined, 'r = n')
  const ok = p256SignatureCompact(Uint8Array.from([0x30, 0x06, 0x02, 0x01, 1, 0x02, 0x01, 2]))
  t.same(ok && [ok[31], ok[63], ok.length], [1, 2, 64], 'r = 1, s = 2 as 64 bytes r ‖ s')
})
