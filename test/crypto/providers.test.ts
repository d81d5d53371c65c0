import t from 'tap'
import { readFileSync } from 'node:fs'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { portableCrypto } from '../../agent/portable/crypto.ts'
import { verifyingCrypto } from '../../agent/portable/verify-crypto.ts'
import { fromHex, toHex } from '../../agent/codec/bytes.ts'

const ed = JSON.parse(readFileSync(new URL('../vectors/crypto/ed25519-rfc8032.json', import.meta.url), 'utf8'))
const sha = JSON.parse(readFileSync(new URL('../vectors/crypto/sha256.json', import.meta.url), 'utf8'))

for (const provider of [nodeCrypto, portableCrypto]) {
  t.test(`${provider.name}: RFC 8032 §7.1 Ed25519 vectors`, async t => {
    for (const v of ed.vectors) {
      const sk = fromHex(v.secretKey),
        msg = fromHex(v.message)
      t.equal(toHex(provider.ed25519PublicKey(sk)), v.publicKey, `${v.name} public key`)
      t.equal(toHex(provider.ed25519Sign(msg, sk)), v.signature, `${v.name} signature`)
      t.ok(provider.ed25519Verify(fromHex(v.signature), msg, fromHex(v.publicKey)), `${v.name} verifies`)
      const bad = fromHex(v.signature)
      bad[5]! ^= 1
      t.notOk(provider.ed25519Verify(bad, msg, fromHex(v.publicKey)), `${v.name} flipped signature refused`)
    }
  })
  t.test(`${provider.name}: SHA-256 vectors`, async t => {
    for (const v of sha.vectors) t.equal(toHex(provider.sha256(fromHex(v.message))), v.digest)
  })
  t.test(`${provider.name}: malformed verify inputs return false, never throw`, async t => {
    const { publicKey, secretKey } = provider.ed25519KeyPair()
    const sig = provider.ed25519Sign(new Uint8Array([1]), secretKey)
    t.equal(provider.ed25519Verify(sig.subarray(0, 63), new Uint8Array([1]), publicKey), false)
    t.equal(provider.ed25519Verify(sig, new Uint8Array([1]), publicKey.subarray(0, 31)), false)
    t.equal(provider.ed25519Verify(sig, new Uint8Array([1]), new Uint8Array(32).fill(0xff)), false)
    t.equal(provider.ed25519Verify(new Uint8Array(64).fill(0xff), new Uint8Array([1]), publicKey), false)
    t.throws(() => provider.ed25519Sign(new Uint8Array(1), new Uint8Array(31)), RangeError)
  })
}

t.test('node and portable agree on random keys and messages', async t => {
  for (let i = 0; i < 50; i++) {
    const seed = nodeCrypto.randomBytes(32)
    const msg = nodeCrypto.randomBytes(i * 7)
    const a = nodeCrypto.ed25519KeyPair(seed),
      b = portableCrypto.ed25519KeyPair(seed)
    t.equal(toHex(a.publicKey), toHex(b.publicKey))
    const sa = nodeCrypto.ed25519Sign(msg, seed)
    t.equal(toHex(sa), toHex(portableCrypto.ed25519Sign(msg, seed)))
    t.ok(portableCrypto.ed25519Verify(sa, msg, a.publicKey))
    t.equal(toHex(nodeCrypto.sha256(msg)), toHex(portableCrypto.sha256(msg)))
  }
})

t.test('RFC 8032 §5.1.7: a signature with S + L (non-canonical) is refused by both providers', async t => {
  const v = ed.vectors[1]
  const sig = fromHex(v.signature)
  // Add L to S (little-endian) to get a malleated signature that an unchecked verifier accepts.
  const L = fromHex('edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010')
  let carry = 0
  for (let i = 0; i < 32; i++) {
    const sum = sig[32 + i]! + L[i]! + carry
    sig[32 + i] = sum & 0xff
    carry = sum >> 8
  }
  t.equal(carry, 0, 'S + L still fits in 32 bytes for this vector')
  for (const provider of [nodeCrypto, portableCrypto, verifyingCrypto]) {
    t.equal(
      provider.ed25519Verify(sig, fromHex(v.message), fromHex(v.publicKey)),
      false,
      `${provider.name} refuses S + L`,
    )
  }
})

t.test('node: ed25519VerifyAsync (thread pool) gives the answers of ed25519Verify', async t => {
  const verifyAsync = nodeCrypto.ed25519VerifyAsync
  t.ok(verifyAsync, 'the node provider verifies off the main thread')
  if (verifyAsync === undefined) return
  for (const v of ed.vectors) {
    const msg = fromHex(v.message),
      pk = fromHex(v.publicKey)
    t.equal(await verifyAsync(fromHex(v.signature), msg, pk), true, `${v.name} verifies`)
    const bad = fromHex(v.signature)
    bad[5]! ^= 1
    t.equal(await verifyAsync(bad, msg, pk), false, `${v.name} flipped signature refused`)
  }
  const { publicKey, secretKey } = nodeCrypto.ed25519KeyPair()
  const sig = nodeCrypto.ed25519Sign(new Uint8Array([1]), secretKey)
  const cases: [Uint8Array, Uint8Array, Uint8Array, string][] = [
    [sig, new Uint8Array([1]), publicKey, 'valid'],
    [sig.subarray(0, 63), new Uint8Array([1]), publicKey, 'short signature'],
    [sig, new Uint8Array([1]), publicKey.subarray(0, 31), 'short key'],
    [sig, new Uint8Array([1]), new Uint8Array(32).fill(0xff), 'key not on the curve'],
    [new Uint8Array(64).fill(0xff), new Uint8Array([1]), publicKey, 'S out of range'],
    [sig, new Uint8Array([2]), publicKey, 'other message'],
  ]
  for (const [s, m, k, name] of cases) t.equal(await verifyAsync(s, m, k), nodeCrypto.ed25519Verify(s, m, k), name)
  // Many in flight at once: the pool's answers come back to the right callers.
  const items = Array.from({ length: 64 }, (_, i) => {
    const kp = nodeCrypto.ed25519KeyPair()
    const msg = nodeCrypto.randomBytes(i + 1)
    const s = nodeCrypto.ed25519Sign(msg, kp.secretKey)
    if (i % 3 === 0) s[0]! ^= 0x40
    return { s, msg, pk: kp.publicKey, expect: i % 3 !== 0 }
  })
  const answers = await Promise.all(items.map(x => verifyAsync(x.s, x.msg, x.pk)))
  t.same(
    answers,
    items.map(x => x.expect),
  )
})

// kin-core's verify-only provider (agent/portable/verify-crypto.ts): the RFC 8032 vectors and random signatures give
// node:crypto's answers; it has no randomness and signs nothing.
t.test('verify-only: Ed25519 verification as node:crypto answers it, and no keys', async t => {
  for (const v of ed.vectors) {
    const msg = fromHex(v.message),
      pk = fromHex(v.publicKey)
    t.ok(verifyingCrypto.ed25519Verify(fromHex(v.signature), msg, pk), `${v.name} verifies`)
    const bad = fromHex(v.signature)
    bad[5]! ^= 1
    t.notOk(verifyingCrypto.ed25519Verify(bad, msg, pk), `${v.name} flipped signature refused`)
  }
  let same = 0
  for (let i = 0; i < 64; i++) {
    const kp = nodeCrypto.ed25519KeyPair()
    const msg = nodeCrypto.randomBytes(i * 13)
    const sig = nodeCrypto.ed25519Sign(msg, kp.secretKey)
    const flipped = sig.slice()
    flipped[i]! ^= 1 << (i % 8)
    const other = nodeCrypto.ed25519KeyPair().publicKey
    for (const [s, k] of [
      [sig, kp.publicKey],
      [flipped, kp.publicKey],
      [sig, other],
    ] as const)
      if (verifyingCrypto.ed25519Verify(s, msg, k) === nodeCrypto.ed25519Verify(s, msg, k)) same++
  }
  t.equal(same, 64 * 3, 'the same answer as node:crypto on 64 good, 64 flipped and 64 wrong-key signatures')
  t.throws(() => verifyingCrypto.randomBytes(16), { code: 'BAD_ARGUMENT' })
  t.throws(() => verifyingCrypto.ed25519Sign(new Uint8Array(1), new Uint8Array(32)), { code: 'BAD_ARGUMENT' })
})
