// The shared multi-leaf inclusion proof (agent/ledger/multiproof.ts), the compact bundle (version 2) and the offline
// proof (agent/ledger/offline-proof.ts): against the RFC 9162 audit and consistency paths they replace, and tampered.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { portableCrypto } from '../../agent/portable/crypto.ts'
import { bytesEqual, fromHex, toHex } from '../../agent/codec/bytes.ts'
import { KinError } from '../../agent/errors.ts'
import { decodeHead, encodeHead } from '../../agent/ledger/head.ts'
import { MerkleTree, inclusionPath } from '../../agent/ledger/merkle.ts'
import { multiInclusionProof, multiInclusionRoots, verifyMultiInclusion } from '../../agent/ledger/multiproof.ts'
import { buildBundle, decodeBundle, encodeBundle, verifyBundle } from '../../agent/ledger/bundle.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import { buildOfflineProof, statementOf, verifyOfflineProof } from '../../agent/ledger/offline-proof.ts'
import { decodeOfflineProof, encodeOfflineProof, type OfflineProof } from '../../agent/ledger/proof-encoding.ts'
import type { CompactVector } from '../vectors/bundle/generate.ts'
import { T0, deepFleet, memoryStorage, minerKeyOf, openMiner, prng } from '../miner/helpers.ts'

function treeOf(n: number, seed: number): MerkleTree {
  const tree = new MerkleTree(nodeCrypto)
  for (let i = 0; i < n; i++) tree.append(nodeCrypto.sha256(new Uint8Array([seed, i & 255, i >> 8])))
  return tree
}

function pick(random: (n: number) => number, from: number, to: number, count: number): number[] {
  const set = new Set<number>()
  while (set.size < Math.min(count, to - from)) set.add(from + random(to - from))
  return [...set].sort((a, b) => a - b)
}

t.test('multi-leaf proofs agree with the trees they prove, on both providers (300 random cases)', async t => {
  const random = prng(9162)
  let checked = 0
  for (let run = 0; run < 300; run++) {
    const n = 1 + random(300)
    const tree = treeOf(n, run)
    const boundary = random(3) === 0 ? 0 : random(n)
    const indexes = pick(random, boundary, n, 1 + random(6))
    const leaves = indexes.map(i => tree.leafHashAt(i))
    const proof = multiInclusionProof(tree, indexes, n, boundary)
    for (const crypto of [nodeCrypto, portableCrypto]) {
      const roots = multiInclusionRoots(crypto, leaves, indexes, n, proof, boundary)
      if (roots === undefined || !bytesEqual(roots.root, tree.root(n)))
        t.fail(`root of ${n} from leaves ${indexes} (boundary ${boundary})`)
      if (boundary > 0 && (roots?.boundaryRoot === undefined || !bytesEqual(roots.boundaryRoot, tree.root(boundary))))
        t.fail(`boundary root ${boundary} of ${n}`)
    }
    // Never more hashes than the audit paths hold distinct (and the audit paths hold each needed one).
    const distinct = new Set(indexes.flatMap(i => tree.inclusionProof(i, n).map(toHex)))
    if (boundary === 0 && proof.length > distinct.size)
      t.fail(`${proof.length} hashes, more than the ${distinct.size} distinct of the audit paths`)
    // Any change is refused: a flipped hash, one hash less or more, another leaf.
    if (proof.length > 0) {
      const j = random(proof.length)
      const flipped = proof.map((h, k) => (k !== j ? h : Uint8Array.from(h, (x, b) => (b === 0 ? x ^ 1 : x))))
      if (verifyMultiInclusion(nodeCrypto, leaves, indexes, n, flipped, tree.root(n))) t.fail('a flipped hash verified')
      if (verifyMultiInclusion(nodeCrypto, leaves, indexes, n, proof.slice(1), tree.root(n)))
        t.fail('a shorter proof verified')
    }
    if (verifyMultiInclusion(nodeCrypto, leaves, indexes, n, [...proof, tree.root(n)], tree.root(n)))
      t.fail('a longer proof verified')
    const other = leaves.map((h, k) => (k !== 0 ? h : nodeCrypto.sha256(h)))
    if (verifyMultiInclusion(nodeCrypto, other, indexes, n, proof, tree.root(n))) t.fail('another leaf verified')
    checked++
  }
  t.equal(checked, 300, 'every case checked')
})

t.test(
  'one leaf: the multi-leaf proof holds the hashes of its RFC 9162 §2.1.3.1 audit path, in walk order',
  async t => {
    const tree = treeOf(37, 1)
    for (const i of [0, 5, 31, 32, 36])
      t.same(
        multiInclusionProof(tree, [i], 37).map(toHex).sort(),
        inclusionPath(tree, i, 37).map(toHex).sort(),
        `leaf ${i} of 37`,
      )
    t.throws(() => multiInclusionProof(tree, [3, 3], 37), RangeError, 'indexes must increase strictly')
    t.throws(() => multiInclusionProof(tree, [3], 37, 4), RangeError, 'and lie at or above the boundary')
    t.equal(
      multiInclusionRoots(nodeCrypto, [tree.leafHashAt(3)], [3], 37, multiInclusionProof(tree, [3], 37), 0)!
        .boundaryRoot,
      undefined,
    )
  },
)

function codeOf(fn: () => unknown): string {
  try {
    fn()
    return 'ok'
  } catch (e) {
    return e instanceof KinError ? e.code : `thrown ${(e as Error).name}`
  }
}

t.test('the compact bundle and the offline proof of a depth-4 device, over a deep fleet', async t => {
  const { f, chain, siblings } = deepFleet({ tag: 'multiproof-test', others: 60 })
  const requester = chain[4]!
  const split = f.events.findIndex(e => e.idHex === f.binding(requester).id)
  const miner = await openMiner(f, memoryStorage())
  const now = T0 + 20_000
  await miner.submit(
    f.events.slice(0, split).map(e => e.bytes),
    now,
  )
  const headA = (await miner.seal(now))!
  await miner.submit(
    f.events.slice(split).map(e => e.bytes),
    now,
  )
  const headB = (await miner.seal(now + 1))!
  const anchor = { minerKey: minerKeyOf(f), genesisId: f.events[0]!.idHex }

  const v1 = buildBundle(miner, requester)
  const v2 = buildBundle(miner, requester, { compact: true })
  const v2Bytes = encodeBundle(v2)
  t.ok(v2Bytes.length < encodeBundle(v1).length, `compact ${v2Bytes.length} bytes against ${encodeBundle(v1).length}`)
  t.ok(
    v2.inclusion!.length < new Set(v1.entries.flatMap(e => e.proof.map(toHex))).size,
    'fewer hashes than the audit paths hold distinct',
  )
  t.same(encodeBundle(decodeBundle(v2Bytes)), v2Bytes, 'decode(encode(x)) round-trips')
  const verified = verifyBundle(nodeCrypto, v2Bytes, anchor, now)
  t.same(
    verified.state.log.map(e => e.idHex),
    verifyBundle(nodeCrypto, encodeBundle(v1), anchor, now).state.log.map(e => e.idHex),
    'both versions prove the same events',
  )
  const forA = encodeBundle(buildBundle(miner, requester, { compact: true, knownTreeSize: headA.treeSize }))
  t.equal(
    verifyBundle(nodeCrypto, forA, { ...anchor, knownHead: headA }, now).anchoring,
    'consistent',
    'a compact bundle carries the consistency proof asked for',
  )
  t.equal(
    codeOf(() => buildBundle(miner, requester, { knownTreeSize: headB.treeSize + 1 })),
    'BUNDLE_KNOWN_SIZE',
    'a size the log does not reach is refused, not dropped',
  )
  const tampered = { ...v2, inclusion: v2.inclusion!.map((h, i) => (i !== 0 ? h : nodeCrypto.sha256(h))) }
  t.equal(
    codeOf(() => verifyBundle(nodeCrypto, encodeBundle(tampered), anchor, now)),
    'BUNDLE_INCLUSION',
    'a tampered shared proof',
  )

  // The camera beside chain[4] (enrolled just before it) holds its own lineage and head A.
  const held = new Ledger(nodeCrypto)
  held.ingestMany(
    verifyBundle(nodeCrypto, encodeBundle(buildBundle(miner, siblings[3]!)), anchor, now).state.log.filter(
      e => miner.indexOf(e.idHex)! < headA.treeSize,
    ),
    { trustSignatures: true },
  )
  const proof = buildOfflineProof(miner, requester, statementOf(headA))!
  t.ok(
    proof.leafIndexes.every(i => i >= headA.treeSize),
    'only events the verifier lacks',
  )
  t.notOk(
    proof.events.some(e => bytesEqual(e, f.events[0]!.bytes)),
    'never the genesis',
  )
  const bytes = encodeOfflineProof(proof)
  t.same(encodeOfflineProof(decodeOfflineProof(bytes)), bytes, 'decode(encode(x)) round-trips')
  const ok = verifyOfflineProof(
    nodeCrypto,
    bytes,
    { minerKey: anchor.minerKey, knownHead: headA, ledger: held.state },
    now,
  )
  t.equal(ok.added.length, proof.events.length, 'every event merged into the copy')
  t.ok(ok.state.currentBinding(requester) !== undefined, 'the requester is bound in the copy')
  t.equal(held.state.currentBinding(requester), undefined, "the verifier's own ledger is untouched")
  t.equal(
    buildOfflineProof(miner, requester, statementOf(headB)),
    undefined,
    'nothing to send to a verifier as new as the head',
  )
  t.equal(
    codeOf(() => buildOfflineProof(miner, requester, { treeSize: headA.treeSize, root: headB.root })),
    'HEAD_INCONSISTENT',
    'a verifier on another log is told so',
  )

  const verify = (p: OfflineProof | Uint8Array, ledger = held.state) =>
    codeOf(() =>
      verifyOfflineProof(
        nodeCrypto,
        p instanceof Uint8Array ? p : encodeOfflineProof(p),
        { minerKey: anchor.minerKey, knownHead: headA, ledger },
        now,
      ),
    )
  t.equal(verify(new Uint8Array(17 * 1024)), 'PROOF_OVERSIZE')
  t.equal(verify(bytes.subarray(0, bytes.length - 1)), 'DECODE_CBOR')
  t.equal(verify({ ...proof, fromTreeSize: headA.treeSize + 1 }), 'PROOF_BASE_MISMATCH')
  t.equal(verify({ ...proof, leafIndexes: [headA.treeSize - 1, ...proof.leafIndexes.slice(1)] }), 'PROOF_HELD_EVENT')
  t.equal(
    verify({
      ...proof,
      headBytes: Uint8Array.from(proof.headBytes, (x, i) => (i === proof.headBytes.length - 1 ? x ^ 1 : x)),
    }),
    'HEAD_SIGNATURE',
  )
  t.equal(
    verify({ ...proof, head: headA, headBytes: encodeHead(headA) }),
    'HEAD_ROLLBACK',
    "the verifier's own head replayed",
  )
  t.equal(
    verify({ ...proof, proof: [nodeCrypto.sha256(proof.proof[0]!), ...proof.proof.slice(1)] }),
    'HEAD_INCONSISTENT',
    'a forged consistency part',
  )
  t.equal(
    verify({ ...proof, proof: [...proof.proof.slice(0, -1), nodeCrypto.sha256(proof.proof.at(-1)!)] }),
    'BUNDLE_INCLUSION',
    'a forged inclusion part',
  )
  t.equal(
    verify({ ...proof, events: [...proof.events.slice(0, -1), f.events[1]!.bytes] }),
    'BUNDLE_INCLUSION',
    'another event at a proven leaf',
  )
  t.equal(
    verify(proof, new Ledger(nodeCrypto).state),
    'BUNDLE_INCOMPLETE',
    'a verifier without the lineage the proof builds on',
  )
})

t.test(
  'vectors: the compact encoding (test/vectors/bundle/compact.json) verifies on both providers, and regenerates byte for byte',
  async t => {
    const file = JSON.parse(readFileSync(new URL('../vectors/bundle/compact.json', import.meta.url), 'utf8')) as {
      vectors: CompactVector[]
    }
    t.same(
      file.vectors.map(v => v.kind),
      ['bundle', 'bundle', 'offline-proof'],
    )
    for (const v of file.vectors) {
      const bytes = fromHex(v.bytes)
      t.equal(bytes.length, v.size, `${v.name}: ${v.size} bytes`)
      const knownHead = v.anchor.knownHead === undefined ? undefined : decodeHead(fromHex(v.anchor.knownHead))
      for (const crypto of [nodeCrypto, portableCrypto]) {
        if (v.kind === 'bundle') {
          const out = verifyBundle(
            crypto,
            bytes,
            { minerKey: fromHex(v.anchor.minerKey), genesisId: v.anchor.genesisId, knownHead },
            v.now,
          )
          t.same(
            [out.anchoring, out.headId, out.state.log.map(e => e.idHex)],
            [v.expect.anchoring, v.expect.headId, v.expect.eventIds],
            `${v.name} (${crypto.name})`,
          )
        } else {
          const held = new Ledger(crypto)
          held.ingestMany(v.held!.map(fromHex))
          const out = verifyOfflineProof(
            crypto,
            bytes,
            { minerKey: fromHex(v.anchor.minerKey), knownHead, ledger: held.state },
            v.now,
          )
          t.same(
            [out.anchoring, out.headId, out.added.map(e => e.idHex)],
            [v.expect.anchoring, v.expect.headId, v.expect.eventIds],
            `${v.name} (${crypto.name})`,
          )
        }
      }
    }
    const { vectorCompact } = await import('../vectors/bundle/generate.ts')
    t.same(
      (await vectorCompact()).map(v => v.bytes),
      file.vectors.map(v => v.bytes),
      'regenerated bytes are identical',
    )
  },
)
