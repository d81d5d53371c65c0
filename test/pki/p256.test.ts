// agent/pki/p256.ts (kin-core's BigInt P-256) against two independent verifiers on random inputs: @noble/curves' p256
// and node:crypto. Signatures come from noble with random keys and messages; each is checked as made, with s
// replaced by n − s (high S, valid in X.509), over another digest, and under another key.
import t from 'tap'
import fc from 'fast-check'
import { createPublicKey, verify } from 'node:crypto'
import { p256 } from '@noble/curves/nist.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { verifyP256 } from '../../agent/pki/p256.ts'
import { P256_ORDER } from '../../agent/pki/ecdsa-signature.ts'

const SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex')
function nodeVerifies(point: Uint8Array, message: Uint8Array, compact: Uint8Array): boolean {
  const key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, point]), format: 'der', type: 'spki' })
  return verify('sha256', message, { key, dsaEncoding: 'ieee-p1363' }, compact)
}
function highS(compact: Uint8Array): Uint8Array {
  const s = BigInt('0x' + Buffer.from(compact.subarray(32)).toString('hex'))
  return Uint8Array.from([
    ...compact.subarray(0, 32),
    ...Buffer.from((P256_ORDER - s).toString(16).padStart(64, '0'), 'hex'),
  ])
}

t.test('same verdict as noble and node:crypto on random keys, messages and edits', async t => {
  let checked = 0
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ maxLength: 200 }),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      (seed, message, otherSeed) => {
        const secret = p256.utils.randomSecretKey(
          seed.length === 32 ? Uint8Array.from([...seed, ...seed.subarray(0, 16)]) : undefined,
        )
        const other = p256.utils.randomSecretKey(Uint8Array.from([...otherSeed, ...otherSeed.subarray(0, 16)]))
        const point = p256.getPublicKey(secret, false),
          otherPoint = p256.getPublicKey(other, false)
        const digest = sha256(message)
        const compact = p256.sign(digest, secret, { prehash: false })
        const cases: [Uint8Array, Uint8Array, Uint8Array, Uint8Array][] = [
          [digest, compact, point, message],
          [digest, highS(compact), point, message],
          [sha256(Uint8Array.from([...message, 1])), compact, point, Uint8Array.from([...message, 1])],
          [digest, compact, otherPoint, message],
        ]
        for (const [d, sig, q, m] of cases) {
          const ours = verifyP256(d, sig, q)
          if (ours !== p256.verify(sig, d, q, { prehash: false, lowS: false }) || ours !== nodeVerifies(q, m, sig))
            return false
          checked++
        }
        return true
      },
    ),
    { numRuns: 30 },
  )
  t.equal(checked, 120, '30 keys × 4 cases, three verifiers agreeing on each')
})

t.test('points and sizes it refuses', async t => {
  const secret = p256.utils.randomSecretKey(),
    point = p256.getPublicKey(secret, false),
    digest = sha256(new Uint8Array(3))
  const compact = p256.sign(digest, secret, { prehash: false })
  t.equal(verifyP256(digest, compact, point), true, 'the genuine signature')
  const off = point.slice()
  off[64]! ^= 1
  t.equal(verifyP256(digest, compact, off), false, 'a point off the curve (SEC 1 §3.2.2.1)')
  t.equal(verifyP256(digest, compact, p256.getPublicKey(secret, true)), false, 'a compressed point')
  t.equal(verifyP256(digest.subarray(1), compact, point), false, 'a 31-byte digest')
  t.equal(verifyP256(digest, new Uint8Array(64), point), false, 'r = s = 0')
})
