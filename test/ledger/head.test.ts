import t from 'tap'
import fc from 'fast-check'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { portableCrypto } from '../../agent/portable/crypto.ts'
import type { CryptoProvider } from '../../agent/ports/platform.ts'
import { concatBytes, toHex, utf8 } from '../../agent/codec/bytes.ts'
import { decodeCbor, encodeCbor } from '../../agent/codec/cbor.ts'
import { DecodeError } from '../../agent/errors.ts'
import { MerkleTree } from '../../agent/ledger/merkle.ts'
import {
  HEAD_SIGNING_PREFIX,
  checkHeadSuccession,
  decodeHead,
  encodeHead,
  genesisPrevHeadId,
  headId,
  headSigningBytes,
  signHead,
  verifyHeadSignature,
} from '../../agent/ledger/head.ts'
import type { BlockHead } from '../../agent/ledger/head.ts'

const DECODE_CODES = new Set([
  'DECODE_CBOR',
  'DECODE_TRAILING',
  'DECODE_NONCANONICAL',
  'DECODE_SHAPE',
  'DECODE_FIELD',
  'DECODE_OVERSIZE',
])

// A miner with a log of event ids that signs a chain of heads over growing prefixes of it.
function minerChain(
  c: CryptoProvider,
  sizes: number[],
): { tree: MerkleTree; heads: BlockHead[]; publicKey: Uint8Array; secretKey: Uint8Array } {
  const { publicKey, secretKey } = c.ed25519KeyPair(c.sha256(utf8('miner seed')))
  const tree = MerkleTree.fromIds(
    c,
    Array.from({ length: Math.max(...sizes) }, (_, i) => c.sha256(new Uint8Array([i, 1]))),
  )
  const heads: BlockHead[] = []
  sizes.forEach((treeSize, height) => {
    const prevHeadId = height === 0 ? genesisPrevHeadId() : headId(c, heads[height - 1]!)
    heads.push(
      signHead(
        c,
        { height, prevHeadId, time: 1_700_000_000 + 60 * height, treeSize, root: tree.root(treeSize) },
        secretKey,
      ),
    )
  })
  return { tree, heads, publicKey, secretKey }
}

function decodeErrorCode(f: () => unknown): string {
  try {
    f()
  } catch (e) {
    if (e instanceof DecodeError) return e.code
    return `not a DecodeError: ${String(e)}`
  }
  return 'no error'
}

for (const c of [nodeCrypto, portableCrypto]) {
  t.test(`${c.name}: a signed head encodes, decodes and verifies`, async t => {
    const { heads, publicKey } = minerChain(c, [0, 3, 10])
    for (const head of heads) {
      const bytes = encodeHead(head)
      t.same(
        decodeCbor(bytes),
        [head.height, head.prevHeadId, head.time, head.treeSize, head.root, head.signature],
        'the 6-item CBOR array of DESIGN.md "Blocks"',
      )
      const back = decodeHead(bytes)
      t.same(back, head, 'decode(encode(head)) = head')
      t.ok(verifyHeadSignature(c, back, publicKey), `head ${head.height} verifies`)
      t.equal(toHex(headId(c, head)), toHex(c.sha256(bytes)), 'id = SHA-256 of the encoded head')
      const signed = concatBytes(
        utf8('kinship/head/v1\0'),
        encodeCbor([head.height, head.prevHeadId, head.time, head.treeSize, head.root]),
      )
      t.same(headSigningBytes(head), signed, 'signed message = prefix ‖ CBOR of the first five fields')
      t.ok(c.ed25519Verify(head.signature, signed, publicKey), 'the signature is plain Ed25519 over that message')
    }
    t.equal(HEAD_SIGNING_PREFIX.length, 16)
    t.ok(encodeHead(heads[0]!).length < 160, 'a head is about 150 bytes')
  })
}

t.test('forged or misapplied signatures are refused', async t => {
  const c = nodeCrypto
  const { heads, publicKey } = minerChain(c, [0, 4])
  const head = heads[1]!
  const other = c.ed25519KeyPair(c.sha256(utf8('not the miner')))
  t.notOk(verifyHeadSignature(c, head, other.publicKey), 'another key')
  t.notOk(verifyHeadSignature(c, signHead(c, head, other.secretKey), publicKey), 'signed by someone else')
  const sig = Uint8Array.from(head.signature)
  sig[10]! ^= 0x20
  t.notOk(verifyHeadSignature(c, { ...head, signature: sig }, publicKey), 'flipped signature bit')
  t.notOk(verifyHeadSignature(c, { ...head, treeSize: head.treeSize + 1 }, publicKey), 'changed tree size')
  t.notOk(verifyHeadSignature(c, { ...head, time: head.time + 1 }, publicKey), 'changed time')
  t.notOk(verifyHeadSignature(c, { ...head, height: 2 }, publicKey), 'changed height')
  const root = Uint8Array.from(head.root)
  root[0]! ^= 1
  t.notOk(verifyHeadSignature(c, { ...head, root }, publicKey), 'changed root')
  const plain = c.ed25519Sign(
    encodeCbor([head.height, head.prevHeadId, head.time, head.treeSize, head.root]),
    c.sha256(utf8('miner seed')),
  )
  t.notOk(verifyHeadSignature(c, { ...head, signature: plain }, publicKey), 'a signature without the domain prefix')
  t.notOk(
    verifyHeadSignature(c, { ...head, signature: sig.subarray(1) }, publicKey),
    'short signature: false, no throw',
  )
  t.notOk(verifyHeadSignature(c, { ...head, root: head.root.subarray(1) }, publicKey), 'short root: false, no throw')
  t.notOk(verifyHeadSignature(c, head, publicKey.subarray(1)), 'short key: false, no throw')
  t.notOk(verifyHeadSignature(c, null as unknown as BlockHead, publicKey), 'not a head: false, no throw')
})

t.test('signHead and encodeHead refuse impossible fields', async t => {
  const c = nodeCrypto
  const sk = c.sha256(utf8('miner seed'))
  const ok = { height: 1, prevHeadId: new Uint8Array(32).fill(1), time: 5, treeSize: 2, root: new Uint8Array(32) }
  t.ok(signHead(c, ok, sk))
  t.throws(() => signHead(c, { ...ok, height: -1 }, sk), RangeError)
  t.throws(() => signHead(c, { ...ok, time: 1.5 }, sk), RangeError)
  t.throws(
    () => signHead(c, { ...ok, treeSize: 2 ** 32 }, sk),
    RangeError,
    'the CBOR codec carries integers up to 2^32 - 1',
  )
  t.throws(() => signHead(c, { ...ok, root: new Uint8Array(31) }, sk), RangeError)
  t.throws(() => signHead(c, { ...ok, prevHeadId: 'x' as unknown as Uint8Array }, sk), TypeError)
  t.throws(() => signHead(c, { ...ok, height: 0 }, sk), RangeError, 'height 0 needs the zero prevHeadId')
  t.throws(
    () => signHead(c, { ...ok, prevHeadId: genesisPrevHeadId() }, sk),
    RangeError,
    'only height 0 has the zero prevHeadId',
  )
  t.throws(() => encodeHead({ ...signHead(c, ok, sk), signature: new Uint8Array(63) }), RangeError)
})

t.test('decodeHead refuses wrong shapes and fields with coded errors', async t => {
  const c = nodeCrypto
  const { heads } = minerChain(c, [0, 2])
  const h = heads[1]!
  const fields = [h.height, h.prevHeadId, h.time, h.treeSize, h.root, h.signature]
  const cases: [string, unknown, string][] = [
    ['5 items', fields.slice(0, 5), 'DECODE_SHAPE'],
    ['7 items', [...fields, 0], 'DECODE_SHAPE'],
    ['not an array', h.root, 'DECODE_SHAPE'],
    ['height as text', ['1', ...fields.slice(1)], 'DECODE_FIELD'],
    ['height as bytes', [new Uint8Array(1), ...fields.slice(1)], 'DECODE_FIELD'],
    ['prevHeadId 31 bytes', [h.height, h.prevHeadId.subarray(1), ...fields.slice(2)], 'DECODE_FIELD'],
    ['prevHeadId as number', [h.height, 7, ...fields.slice(2)], 'DECODE_FIELD'],
    ['time as boolean', [h.height, h.prevHeadId, true, ...fields.slice(3)], 'DECODE_FIELD'],
    ['treeSize as null', [...fields.slice(0, 3), null, ...fields.slice(4)], 'DECODE_FIELD'],
    ['root 33 bytes', [...fields.slice(0, 4), concatBytes(h.root, new Uint8Array(1)), h.signature], 'DECODE_FIELD'],
    ['signature 63 bytes', [...fields.slice(0, 5), h.signature.subarray(1)], 'DECODE_FIELD'],
    ['signature nested', [...fields.slice(0, 5), [h.signature]], 'DECODE_FIELD'],
    ['height 0 with a non-zero prevHeadId', [0, ...fields.slice(1)], 'DECODE_FIELD'],
    ['height 1 with the zero prevHeadId', [1, genesisPrevHeadId(), ...fields.slice(2)], 'DECODE_FIELD'],
  ]
  for (const [desc, value, code] of cases) {
    t.equal(
      decodeErrorCode(() => decodeHead(encodeCbor(value as never))),
      code,
      desc,
    )
  }
  const good = encodeHead(h)
  t.equal(
    decodeErrorCode(() => decodeHead(concatBytes(good, new Uint8Array([0])))),
    'DECODE_TRAILING',
    'trailing byte',
  )
  t.equal(
    decodeErrorCode(() => decodeHead(good.subarray(0, good.length - 1))),
    'DECODE_CBOR',
    'truncated',
  )
  t.equal(
    decodeErrorCode(() => decodeHead(new Uint8Array(0))),
    'DECODE_CBOR',
    'empty',
  )
  t.equal(
    decodeErrorCode(() => decodeHead(new Uint8Array(300))),
    'DECODE_OVERSIZE',
    'longer than any head',
  )
  // [1, ...] with height written as a 2-byte integer (0x18 0x01) instead of 0x01: RFC 8949 §4.2.1 forbids it.
  const loose = concatBytes(new Uint8Array([0x86, 0x18, 0x01]), good.subarray(2))
  t.equal(
    decodeErrorCode(() => decodeHead(loose)),
    'DECODE_NONCANONICAL',
    'non-shortest integer',
  )
  t.equal(
    decodeErrorCode(() => decodeHead('bytes' as unknown as Uint8Array)),
    'DECODE_CBOR',
    'not bytes',
  )
})

t.test('property: random bytes give a coded DecodeError, never anything else', async t => {
  let decoded = 0
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 300 }), bytes => {
      try {
        decodeHead(bytes)
        decoded++
        return true
      } catch (e) {
        return e instanceof DecodeError && DECODE_CODES.has(e.code)
      }
    }),
    { numRuns: 3000 },
  )
  t.equal(decoded, 0, 'no random string of bytes is a head')
})

t.test('property: mutated heads decode to a different head or a coded DecodeError', async t => {
  const c = nodeCrypto
  const { heads, publicKey } = minerChain(c, [0, 5, 9])
  const encodings = heads.map(encodeHead)
  let refused = 0,
    forged = 0
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: encodings.length - 1 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
      fc.integer({ min: -3, max: 3 }),
      (which, edits, resize) => {
        let bytes: Uint8Array = Uint8Array.from(encodings[which]!)
        for (const [pos, xor] of edits) bytes[pos % bytes.length]! ^= xor
        if (resize < 0) bytes = bytes.subarray(0, bytes.length + resize)
        if (resize > 0) bytes = concatBytes(bytes, new Uint8Array(resize))
        let head: BlockHead
        try {
          head = decodeHead(bytes)
        } catch (e) {
          refused++
          return e instanceof DecodeError && DECODE_CODES.has(e.code)
        }
        if (verifyHeadSignature(c, head, publicKey)) forged++
        return toHex(encodeHead(head)) === toHex(bytes)
      },
    ),
    { numRuns: 3000 },
  )
  t.ok(refused > 0, `${refused} mutations refused with coded errors`)
  t.equal(forged, 0, 'no mutation that still decodes carries a valid miner signature')
})

t.test('checkHeadSuccession accepts an honest chain and equal heads', async t => {
  const c = nodeCrypto
  const { tree, heads, publicKey } = minerChain(c, [0, 1, 1, 7, 20, 33])
  for (let i = 0; i < heads.length; i++) {
    for (let j = i; j < heads.length; j++) {
      const older = heads[i]!,
        newer = heads[j]!
      const proof = tree.consistencyProof(older.treeSize, newer.treeSize)
      t.same(checkHeadSuccession(c, older, newer, proof, publicKey), { ok: true }, `head ${i} -> head ${j}`)
    }
  }
  t.same(checkHeadSuccession(c, heads[3]!, decodeHead(encodeHead(heads[3]!)), []), { ok: true }, 'the same head again')
})

t.test('checkHeadSuccession refuses forgeries, rollbacks, forks and inconsistent trees with coded results', async t => {
  const c = nodeCrypto
  const { tree, heads, publicKey, secretKey } = minerChain(c, [0, 4, 9, 15])
  const [, h1, h2, h3] = heads as [BlockHead, BlockHead, BlockHead, BlockHead]
  const proof = (a: BlockHead, b: BlockHead): Uint8Array[] => tree.consistencyProof(a.treeSize, b.treeSize)
  const code = (r: ReturnType<typeof checkHeadSuccession>): string => (r.ok ? 'ok' : r.code)

  t.equal(code(checkHeadSuccession(c, h1, h2, proof(h1, h2), publicKey)), 'ok')

  const sig = Uint8Array.from(h2.signature)
  sig[0]! ^= 1
  t.equal(
    code(checkHeadSuccession(c, h1, { ...h2, signature: sig }, proof(h1, h2), publicKey)),
    'HEAD_SIGNATURE',
    'forged newer signature',
  )
  t.equal(
    code(checkHeadSuccession(c, { ...h1, signature: sig }, h2, proof(h1, h2), publicKey)),
    'HEAD_SIGNATURE',
    'forged older signature',
  )
  const stranger = c.ed25519KeyPair(c.sha256(utf8('stranger')))
  t.equal(
    code(checkHeadSuccession(c, h1, signHead(c, h2, stranger.secretKey), proof(h1, h2), publicKey)),
    'HEAD_SIGNATURE',
    'signed by a stranger',
  )

  // The miner signs a head whose root does not match its log: the proof from its real tree cannot bridge it.
  const wrongRoot = signHead(c, { ...h2, root: tree.root(8) }, secretKey)
  t.equal(code(checkHeadSuccession(c, h1, wrongRoot, proof(h1, h2), publicKey)), 'HEAD_INCONSISTENT', 'mismatched root')

  // A forking miner: head 2 over a log whose first entries were rewritten.
  const forkIds = Array.from({ length: 9 }, (_, i) => c.sha256(new Uint8Array([i, i === 2 ? 9 : 1])))
  const forkTree = MerkleTree.fromIds(c, forkIds)
  const forked = signHead(c, { ...h2, root: forkTree.root(9) }, secretKey)
  t.equal(
    code(checkHeadSuccession(c, h1, forked, forkTree.consistencyProof(4, 9), publicKey)),
    'HEAD_INCONSISTENT',
    'rewritten history, its own proof',
  )
  t.equal(
    code(checkHeadSuccession(c, h1, forked, proof(h1, h2), publicKey)),
    'HEAD_INCONSISTENT',
    'rewritten history, the honest proof',
  )
  t.equal(code(checkHeadSuccession(c, h1, h2, [], publicKey)), 'HEAD_INCONSISTENT', 'missing proof')
  t.equal(code(checkHeadSuccession(c, h1, h2, [new Uint8Array(3)], publicKey)), 'HEAD_INCONSISTENT', 'malformed proof')

  t.equal(code(checkHeadSuccession(c, h2, h1, proof(h1, h2), publicKey)), 'HEAD_ROLLBACK', 'lower height')
  const shrunk = signHead(c, { ...h3, treeSize: 3, root: tree.root(3) }, secretKey)
  t.equal(code(checkHeadSuccession(c, h2, shrunk, [], publicKey)), 'HEAD_ROLLBACK', 'smaller tree')
  const earlier = signHead(c, { ...h3, time: h2.time - 1 }, secretKey)
  t.equal(code(checkHeadSuccession(c, h2, earlier, proof(h2, h3), publicKey)), 'HEAD_ROLLBACK', 'time went back')

  const twin = signHead(c, { ...h2, time: h2.time + 1 }, secretKey)
  t.equal(code(checkHeadSuccession(c, h2, twin, [], publicKey)), 'HEAD_FORK', 'two heads at one height')
  const unlinked = signHead(c, { ...h3, prevHeadId: headId(c, h1) }, secretKey)
  t.equal(
    code(checkHeadSuccession(c, h2, unlinked, proof(h2, h3), publicKey)),
    'HEAD_FORK',
    'direct successor names another predecessor',
  )
  t.equal(
    code(checkHeadSuccession(c, h1, unlinked, proof(h1, h3), publicKey)),
    'ok',
    'across a gap only the tree can be checked',
  )

  const r = checkHeadSuccession(c, h2, h1, proof(h1, h2))
  t.ok(!r.ok && r.reason.includes('height'), 'refusals carry a reason')
})
