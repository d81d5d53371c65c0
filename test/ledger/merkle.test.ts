import t from 'tap'
import fc from 'fast-check'
import { readFileSync } from 'node:fs'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { portableCrypto } from '../../agent/portable/crypto.ts'
import type { CryptoProvider } from '../../agent/ports/platform.ts'
import { concatBytes, fromHex, toHex } from '../../agent/codec/bytes.ts'
import {
  MerkleTree,
  consistencyPath,
  emptyRoot,
  exactLog2,
  idLeafHash,
  inclusionPath,
  isPowerOfTwo,
  isTreeSize,
  largestPowerOfTwoBelow,
  leafHash,
  lowBitSet,
  merkleRoot,
  merkleRootOfIds,
  nodeHash,
  shiftRight,
  verifyConsistency,
  verifyInclusion,
  verifyLeafHashInclusion,
} from '../../agent/ledger/merkle.ts'
import type { SubtreeSource } from '../../agent/ledger/merkle.ts'

const ct = JSON.parse(readFileSync(new URL('../vectors/merkle/ct-reference.json', import.meta.url), 'utf8'))
const shapes = JSON.parse(readFileSync(new URL('../vectors/merkle/structural.json', import.meta.url), 'utf8'))

type ShapeRef = string | [string, string]

const hexList = (xs: Uint8Array[]): string[] => xs.map(toHex)
const flipBit = (b: Uint8Array, bit: number): Uint8Array => {
  const c = Uint8Array.from(b)
  c[bit >> 3]! ^= 1 << (bit & 7)
  return c
}

// The RFC 6962 §2.1 definitions, literally (recursive, over slices), hashing through raw sha256 and
// never through the module under test: MTH §2.1, PATH §2.1.1, PROOF/SUBPROOF §2.1.2.
const ref = {
  k(n: number): number {
    let k = 1
    while (k * 2 < n) k *= 2
    return k
  },
  leaf(c: CryptoProvider, d: Uint8Array): Uint8Array {
    return c.sha256(concatBytes(new Uint8Array([0]), d))
  },
  mth(c: CryptoProvider, D: Uint8Array[]): Uint8Array {
    if (D.length === 0) return c.sha256(new Uint8Array(0))
    if (D.length === 1) return D[0]!
    const k = ref.k(D.length)
    return c.sha256(concatBytes(new Uint8Array([1]), ref.mth(c, D.slice(0, k)), ref.mth(c, D.slice(k))))
  },
  path(c: CryptoProvider, m: number, D: Uint8Array[]): Uint8Array[] {
    if (D.length === 1) return []
    const k = ref.k(D.length)
    return m < k
      ? [...ref.path(c, m, D.slice(0, k)), ref.mth(c, D.slice(k))]
      : [...ref.path(c, m - k, D.slice(k)), ref.mth(c, D.slice(0, k))]
  },
  subproof(c: CryptoProvider, m: number, D: Uint8Array[], b: boolean): Uint8Array[] {
    if (m === D.length) return b ? [] : [ref.mth(c, D)]
    const k = ref.k(D.length)
    return m <= k
      ? [...ref.subproof(c, m, D.slice(0, k), b), ref.mth(c, D.slice(k))]
      : [...ref.subproof(c, m - k, D.slice(k), false), ref.mth(c, D.slice(0, k))]
  },
}

function ctTree(c: CryptoProvider): { tree: MerkleTree; hashes: Uint8Array[] } {
  const hashes = ct.leaves.map((h: string) => leafHash(c, fromHex(h)))
  return { tree: MerkleTree.fromLeafHashes(c, hashes), hashes }
}

function resolveShape(c: CryptoProvider, r: ShapeRef): Uint8Array {
  const node = (s: string): Uint8Array => {
    const [l, i] = s.split('.').map(Number)
    return fromHex(ct.nodeHashes[l!][i!])
  }
  return typeof r === 'string' ? node(r) : nodeHash(c, node(r[0]), node(r[1]))
}

for (const c of [nodeCrypto, portableCrypto]) {
  t.test(`${c.name}: CT reference leaf and node hashes (RFC 6962 §2.1)`, async t => {
    const { tree, hashes } = ctTree(c)
    t.same(hexList(hashes), ct.nodeHashes[0], 'leaf hashes HASH(0x00 ‖ d)')
    for (let level = 1; level < ct.nodeHashes.length; level++) {
      for (let i = 0; i < ct.nodeHashes[level].length; i++) {
        const w = 2 ** level
        t.equal(toHex(tree.subtreeHash(i * w, (i + 1) * w)), ct.nodeHashes[level][i], `stored node ${level}.${i}`)
        const below = ct.nodeHashes[level - 1]
        t.equal(
          toHex(nodeHash(c, fromHex(below[2 * i]), fromHex(below[2 * i + 1]))),
          ct.nodeHashes[level][i],
          `nodeHash ${level}.${i}`,
        )
      }
    }
    t.equal(toHex(emptyRoot(c)), ct.roots[0], 'empty tree: SHA-256 of the empty string')
  })

  t.test(`${c.name}: CT reference roots for sizes 0..8`, async t => {
    const { tree, hashes } = ctTree(c)
    const growing = new MerkleTree(c)
    t.equal(toHex(growing.root()), ct.roots[0], 'empty incremental tree')
    for (let n = 0; n <= 8; n++) {
      t.equal(toHex(merkleRoot(c, hashes, n)), ct.roots[n], `merkleRoot size ${n}`)
      t.equal(toHex(tree.root(n)), ct.roots[n], `older root at size ${n} of the full tree`)
      if (n > 0) {
        t.equal(growing.appendLeafHash(hashes[n - 1]!), n - 1, 'append returns the leaf index')
        t.equal(toHex(growing.root()), ct.roots[n], `incremental root at size ${n}`)
      }
    }
  })

  t.test(`${c.name}: CT reference inclusion proofs (RFC 9162 §2.1.3)`, async t => {
    const { tree, hashes } = ctTree(c)
    for (const v of ct.inclusion) {
      const root = fromHex(ct.roots[v.size])
      t.same(hexList(tree.inclusionProof(v.index, v.size)), v.proof, `proof for leaf ${v.index} of ${v.size}`)
      const proof = v.proof.map(fromHex)
      t.ok(
        verifyLeafHashInclusion(c, hashes[v.index]!, v.index, v.size, proof, root),
        `verifies leaf ${v.index} of ${v.size}`,
      )
      for (const [desc, probe] of corruptInclusion(hashes[v.index]!, v.index, v.size, proof, root)) {
        t.notOk(
          verifyLeafHashInclusion(c, probe.leaf, probe.index, probe.size, probe.proof, probe.root),
          `${v.index}/${v.size}: ${desc} refused`,
        )
      }
    }
  })

  t.test(`${c.name}: CT reference consistency proofs (RFC 9162 §2.1.4)`, async t => {
    const { tree } = ctTree(c)
    for (const v of ct.consistency) {
      const rootM = fromHex(ct.roots[v.m]),
        rootN = fromHex(ct.roots[v.n])
      t.same(hexList(tree.consistencyProof(v.m, v.n)), v.proof, `proof ${v.m} -> ${v.n}`)
      const proof = v.proof.map(fromHex)
      t.ok(verifyConsistency(c, v.m, v.n, rootM, rootN, proof), `verifies ${v.m} -> ${v.n}`)
      if (proof.length === 0) continue
      for (const [desc, p] of corruptConsistency(v.m, v.n, rootM, rootN, proof)) {
        t.notOk(verifyConsistency(c, p.m, p.n, p.rootM, p.rootN, p.proof), `${v.m} -> ${v.n}: ${desc} refused`)
      }
    }
  })

  t.test(`${c.name}: RFC 6962 §2.1.3 example and transparency-dev proof shapes`, async t => {
    const { tree, hashes } = ctTree(c)
    const l = resolveShape(c, ['1.2', '0.6'])
    t.equal(
      toHex(nodeHash(c, resolveShape(c, '2.0'), l)),
      ct.roots[7],
      'l = MTH(D[4:7]) closes the published 7-leaf root',
    )
    for (const v of shapes.inclusion) {
      const want = v.proof.map((r: ShapeRef) => resolveShape(c, r))
      t.same(
        hexList(tree.inclusionProof(v.index, v.size)),
        hexList(want),
        `${v.source}: PATH(${v.index}, D[${v.size}])`,
      )
      t.ok(
        verifyLeafHashInclusion(c, hashes[v.index]!, v.index, v.size, want, fromHex(ct.roots[v.size])),
        `${v.source}: verifies`,
      )
    }
    for (const v of shapes.consistency) {
      const want = v.proof.map((r: ShapeRef) => resolveShape(c, r))
      t.same(hexList(tree.consistencyProof(v.m, v.n)), hexList(want), `${v.source}: PROOF(${v.m}, D[${v.n}])`)
      t.ok(
        verifyConsistency(c, v.m, v.n, fromHex(ct.roots[v.m]), fromHex(ct.roots[v.n]), want),
        `${v.source}: verifies`,
      )
    }
  })
}

interface InclusionProbe {
  leaf: Uint8Array
  index: number
  size: number
  proof: Uint8Array[]
  root: Uint8Array
}
interface ConsistencyProbe {
  m: number
  n: number
  rootM: Uint8Array
  rootN: Uint8Array
  proof: Uint8Array[]
}

// The mutations of transparency-dev/merkle proof/verify_test.go corruptInclusionProof, plus wrong lengths.
function corruptInclusion(
  leaf: Uint8Array,
  index: number,
  size: number,
  proof: Uint8Array[],
  root: Uint8Array,
): [string, InclusionProbe][] {
  const some = fromHex('abacaba000000000000000000000000000000000000000000060061e00123456')
  const p = (o: Partial<InclusionProbe>): InclusionProbe => ({ leaf, index, size, proof, root, ...o })
  const out: [string, InclusionProbe][] = [
    ['index - 1', p({ index: index - 1 })],
    ['index + 1', p({ index: index + 1 })],
    ['index ^ 2', p({ index: index ^ 2 })],
    ['size * 2', p({ size: size * 2 })],
    ['size / 2', p({ size: Math.floor(size / 2) })],
    ['wrong leaf', p({ leaf: some })],
    ['empty root', p({ root: fromHex(ct.roots[0]) })],
    ['random root', p({ root: some })],
    ['trailing empty element', p({ proof: [...proof, new Uint8Array(0)] })],
    ['trailing root', p({ proof: [...proof, root] })],
    ['preceding empty element', p({ proof: [new Uint8Array(0), ...proof] })],
    ['preceding root', p({ proof: [root, ...proof] })],
    ['33-byte leaf', p({ leaf: concatBytes(leaf, new Uint8Array(1)) })],
    ['31-byte root', p({ root: root.subarray(1) })],
  ]
  proof.forEach((_, i) =>
    out.push([`proof[${i}] bit 3 flipped`, p({ proof: proof.map((h, j) => (j === i ? flipBit(h, 3) : h)) })]),
  )
  if (proof.length > 0) out.push(['removed component', p({ proof: proof.slice(0, -1) })])
  if (proof.length > 1) out.push(['inserted component', p({ proof: [some, proof[0]!, ...proof.slice(1)] })])
  return out
}

// The mutations of transparency-dev/merkle proof/verify_test.go corruptConsistencyProof.
function corruptConsistency(
  m: number,
  n: number,
  rootM: Uint8Array,
  rootN: Uint8Array,
  proof: Uint8Array[],
): [string, ConsistencyProbe][] {
  const wrong = fromHex('abacaba000000000000000000000000000000000000000000060061e00123456')
  const p = (o: Partial<ConsistencyProbe>): ConsistencyProbe => ({ m, n, rootM, rootN, proof, ...o })
  const out: [string, ConsistencyProbe][] = [
    ['m - 1', p({ m: m - 1 })],
    ['m + 1', p({ m: m + 1 })],
    ['m ^ 2', p({ m: m ^ 2 })],
    ['n * 2', p({ n: n * 2 })],
    ['n / 2', p({ n: Math.floor(n / 2) })],
    ['wrong rootM', p({ rootM: wrong })],
    ['wrong rootN', p({ rootN: wrong })],
    ['swapped roots', p({ rootM: rootN, rootN: rootM })],
    ['short rootM', p({ rootM: rootM.subarray(1) })],
    ['empty proof', p({ proof: [] })],
    ['trailing empty element', p({ proof: [...proof, new Uint8Array(0)] })],
    ['trailing rootM', p({ proof: [...proof, rootM] })],
    ['trailing rootN', p({ proof: [...proof, rootN] })],
    ['preceding empty element', p({ proof: [new Uint8Array(0), ...proof] })],
    ['preceding rootM', p({ proof: [rootM, ...proof] })],
    ['preceding rootN', p({ proof: [rootN, ...proof] })],
    ['preceding proof[0]', p({ proof: [proof[0]!, ...proof] })],
    ['truncated proof', p({ proof: proof.slice(0, -1) })],
  ]
  proof.forEach((_, i) =>
    out.push([`proof[${i}] bit 4 flipped`, p({ proof: proof.map((h, j) => (j === i ? flipBit(h, 4) : h)) })]),
  )
  return out
}

t.test(
  'incremental tree agrees with the literal RFC 6962 definitions for every size, index and m <= n up to 70',
  async t => {
    const c = nodeCrypto
    const data = Array.from({ length: 70 }, (_, i) => c.sha256(new Uint8Array([i, i >> 8])))
    const D = data.map(d => ref.leaf(c, d))
    const tree = MerkleTree.fromIds(c, data)
    let mismatches = 0,
      checks = 0
    for (let n = 0; n <= D.length; n++) {
      const Dn = D.slice(0, n)
      if (toHex(tree.root(n)) !== toHex(ref.mth(c, Dn))) mismatches++
      for (let i = 0; i < n; i++) {
        checks++
        if (hexList(tree.inclusionProof(i, n)).join() !== hexList(ref.path(c, i, Dn)).join()) mismatches++
        if (!verifyInclusion(c, data[i]!, i, n, tree.inclusionProof(i, n), tree.root(n))) mismatches++
      }
      for (let m = 1; m < n; m++) {
        checks++
        if (hexList(tree.consistencyProof(m, n)).join() !== hexList(ref.subproof(c, m, Dn, true)).join()) mismatches++
        if (!verifyConsistency(c, m, n, tree.root(m), tree.root(n), tree.consistencyProof(m, n))) mismatches++
      }
    }
    t.equal(mismatches, 0, `no mismatch in ${checks} proofs`)
    t.ok(checks > 4000)
  },
)

t.test('property: every inclusion proof verifies and any single-bit change fails (sizes up to 300)', async t => {
  const c = nodeCrypto
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 300 }),
      fc.nat(),
      fc.nat(),
      fc.integer({ min: 0, max: 255 }),
      (size, seed, other, bit) => {
        const ids = Array.from({ length: size }, (_, i) => c.sha256(new Uint8Array([seed & 255, seed >> 8, i, i >> 8])))
        const tree = MerkleTree.fromIds(c, ids)
        const index = seed % size,
          root = tree.root(),
          proof = tree.inclusionProof(index)
        if (!verifyInclusion(c, ids[index]!, index, size, proof, root)) return false
        for (let e = 0; e < proof.length; e++) {
          for (let b = 0; b < 256; b++) {
            if (
              verifyInclusion(
                c,
                ids[index]!,
                index,
                size,
                proof.map((h, j) => (j === e ? flipBit(h, b) : h)),
                root,
              )
            )
              return false
          }
        }
        if (verifyInclusion(c, flipBit(ids[index]!, bit), index, size, proof, root)) return false
        if (verifyInclusion(c, ids[index]!, index, size, proof, flipBit(root, bit))) return false
        const j = other % size
        if (j !== index && verifyInclusion(c, ids[index]!, j, size, proof, root)) return false
        return !verifyInclusion(c, ids[index]!, index, size * 2, proof, root)
      },
    ),
    { numRuns: 60 },
  )
  t.pass('60 random trees')
})

t.test(
  'property: every consistency proof m <= n verifies and fails against a wrong root (sizes up to 300)',
  async t => {
    const c = nodeCrypto
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 300 }), fc.nat(), fc.integer({ min: 0, max: 255 }), (n, seed, bit) => {
        const ids = Array.from({ length: n }, (_, i) => c.sha256(new Uint8Array([seed & 255, seed >> 8, i, i >> 8])))
        const tree = MerkleTree.fromIds(c, ids)
        const m = n === 0 ? 0 : seed % (n + 1)
        const proof = tree.consistencyProof(m, n),
          rootM = tree.root(m),
          rootN = tree.root(n)
        if (!verifyConsistency(c, m, n, rootM, rootN, proof)) return false
        if (verifyConsistency(c, m, n, flipBit(rootM, bit), rootN, proof)) return false
        if (m !== 0 && m !== n && verifyConsistency(c, m, n, rootM, flipBit(rootN, bit), proof)) return false
        for (let e = 0; e < proof.length; e++) {
          if (
            verifyConsistency(
              c,
              m,
              n,
              rootM,
              rootN,
              proof.map((h, j) => (j === e ? flipBit(h, bit) : h)),
            )
          )
            return false
        }
        const other = MerkleTree.fromIds(
          c,
          ids.map((id, i) => (i === Math.max(0, m - 1) ? flipBit(id, bit) : id)),
        )
        return m === 0 || !verifyConsistency(c, m, n, rootM, other.root(n), other.consistencyProof(m, n))
      }),
      { numRuns: 150 },
    )
    t.pass('150 random trees')
  },
)

t.test('size helpers are exact beyond 2^31 and up to 2^53 (no 32-bit bit operations)', async t => {
  t.equal(largestPowerOfTwoBelow(2), 1)
  t.equal(largestPowerOfTwoBelow(3), 2)
  t.equal(largestPowerOfTwoBelow(8), 4)
  t.equal(largestPowerOfTwoBelow(9), 8)
  t.equal(largestPowerOfTwoBelow(2 ** 31), 2 ** 30)
  t.equal(largestPowerOfTwoBelow(2 ** 31 + 5), 2 ** 31)
  t.equal(largestPowerOfTwoBelow(2 ** 32), 2 ** 31)
  t.equal(largestPowerOfTwoBelow(2 ** 32 + 3), 2 ** 32)
  t.equal(largestPowerOfTwoBelow(2 ** 53 - 1), 2 ** 52)
  t.throws(() => largestPowerOfTwoBelow(1), RangeError)
  t.throws(() => largestPowerOfTwoBelow(2 ** 53), RangeError)
  t.equal(exactLog2(1), 0)
  t.equal(exactLog2(2 ** 32), 32)
  t.equal(exactLog2(2 ** 52), 52)
  t.equal(exactLog2(2 ** 32 + 3), -1)
  t.equal(exactLog2(0), -1)
  t.ok(isPowerOfTwo(2 ** 40))
  t.notOk(isPowerOfTwo(2 ** 31 + 5))
  t.ok(lowBitSet(2 ** 32 + 3))
  t.notOk(lowBitSet(2 ** 32 + 2))
  t.ok(lowBitSet(2 ** 53 - 1))
  t.equal(shiftRight(2 ** 32 + 3), 2 ** 31 + 1)
  t.equal(shiftRight(2 ** 53 - 1), 2 ** 52 - 1)
  t.notOk(isTreeSize(2 ** 53))
  t.notOk(isTreeSize(-1))
  t.notOk(isTreeSize(1.5))
  t.ok(isTreeSize(2 ** 53 - 1))
})

// A tree whose leaves all hash to the same value has MTH(D[a:b]) depending only on b - a, so proofs
// over 2^32+ leaves can be built and checked in O(log n) without storing the tree.
class UniformTree implements SubtreeSource {
  private readonly memo = new Map<number, Uint8Array>()
  constructor(
    readonly c: CryptoProvider,
    readonly leaf: Uint8Array,
  ) {}
  subtreeHash(start: number, end: number): Uint8Array {
    return this.width(end - start)
  }
  width(w: number): Uint8Array {
    if (w === 1) return this.leaf
    const known = this.memo.get(w)
    if (known) return known
    const k = ref.k(w)
    const h = ref.mth(this.c, [this.width(k), this.width(w - k)])
    this.memo.set(w, h)
    return h
  }
}

t.test('uniform-tree oracle matches a real tree (checks the oracle itself)', async t => {
  const c = nodeCrypto
  const id = c.sha256(new Uint8Array([7]))
  const tree = MerkleTree.fromIds(
    c,
    Array.from({ length: 100 }, () => id),
  )
  const oracle = new UniformTree(c, idLeafHash(c, id))
  for (const n of [1, 2, 3, 37, 64, 100]) {
    t.equal(toHex(oracle.width(n)), toHex(tree.root(n)), `root ${n}`)
    t.same(
      hexList(inclusionPath(oracle, n - 1, n)),
      hexList(tree.inclusionProof(n - 1, n)),
      `path for last leaf of ${n}`,
    )
    t.same(
      hexList(consistencyPath(oracle, Math.ceil(n / 3), n)),
      hexList(tree.consistencyProof(Math.ceil(n / 3), n)),
      `consistency ${Math.ceil(n / 3)} -> ${n}`,
    )
  }
})

t.test('proofs over trees of 2^31+5, 2^32+3 and 2^40+1 leaves generate and verify', async t => {
  const c = nodeCrypto
  const leaf = idLeafHash(c, c.sha256(new Uint8Array([1])))
  const oracle = new UniformTree(c, leaf)
  for (const size of [2 ** 31 + 5, 2 ** 32 + 3, 2 ** 40 + 1]) {
    const root = oracle.width(size)
    for (const index of [0, 2 ** 31 - 1, 2 ** 31 + 4, size - 2, size - 1]) {
      const proof = inclusionPath(oracle, index, size)
      t.ok(verifyLeafHashInclusion(c, leaf, index, size, proof, root), `inclusion of ${index} in ${size}`)
      t.notOk(
        verifyLeafHashInclusion(
          c,
          leaf,
          index,
          size,
          proof.map((h, j) => (j === 0 ? flipBit(h, 9) : h)),
          root,
        ),
        `flipped proof refused (${index})`,
      )
      t.notOk(verifyLeafHashInclusion(c, leaf, index, size * 2, proof, root), `wrong size refused (${index})`)
    }
    t.equal(
      inclusionPath(oracle, 0, size).length,
      Math.ceil(Math.log2(size)),
      'leaf 0 has a path of ceil(log2 n) hashes',
    )
    // The last leaf's path holds one left sibling per set bit of the size, less its own.
    const setBits = size === 2 ** 40 + 1 ? 2 : 3
    t.equal(
      inclusionPath(oracle, size - 1, size).length,
      setBits - 1,
      'last leaf: one hash per other set bit of the size',
    )
    for (const m of [1, 2 ** 31, 2 ** 31 + 3, size - 1]) {
      const proof = consistencyPath(oracle, m, size)
      t.ok(verifyConsistency(c, m, size, oracle.width(m), root, proof), `consistency ${m} -> ${size}`)
      t.notOk(verifyConsistency(c, m, size, oracle.width(m), flipBit(root, 1), proof), `wrong new root refused (${m})`)
      t.notOk(verifyConsistency(c, m, size * 2, oracle.width(m), root, proof), `wrong new size refused (${m})`)
    }
  }
})

t.test('verifiers return false, never throw, on malformed input', async t => {
  const c = nodeCrypto
  const { tree, hashes } = ctTree(c)
  const root = tree.root(),
    proof = tree.inclusionProof(5),
    h = hashes[5]!
  const bad: unknown[] = [
    undefined,
    null,
    'x',
    {},
    [null],
    [new Uint8Array(31)],
    [new Uint8Array(33)],
    [{ length: 32 }],
    Array(65).fill(h),
  ]
  for (const p of bad)
    t.equal(verifyLeafHashInclusion(c, h, 5, 8, p as Uint8Array[], root), false, `proof ${String(p)}`)
  for (const [i, n] of [
    [8, 8],
    [9, 8],
    [-1, 8],
    [0, 0],
    [1.5, 8],
    [5, NaN],
    [5, 2 ** 53],
    [5, Infinity],
    ['5', 8],
  ] as const) {
    t.equal(verifyLeafHashInclusion(c, h, i as number, n as number, proof, root), false, `index ${i} size ${n}`)
  }
  t.equal(verifyLeafHashInclusion(c, h.subarray(1), 5, 8, proof, root), false, 'short leaf hash')
  t.equal(verifyLeafHashInclusion(c, h, 5, 8, proof, null as unknown as Uint8Array), false, 'null root')
  t.equal(verifyInclusion(c, new Uint8Array(31), 5, 8, proof, root), false, '31-byte id')
  t.equal(verifyInclusion(c, 'id' as unknown as Uint8Array, 5, 8, proof, root), false, 'string id')
  const throwing = {
    get length(): number {
      throw new Error('boom')
    },
  }
  t.equal(verifyLeafHashInclusion(c, h, 5, 8, throwing as unknown as Uint8Array[], root), false, 'hostile proof object')

  const r3 = tree.root(3),
    r8 = tree.root(8),
    cp = tree.consistencyProof(3, 8)
  t.ok(verifyConsistency(c, 3, 8, r3, r8, cp))
  for (const p of bad)
    t.equal(verifyConsistency(c, 3, 8, r3, r8, p as Uint8Array[]), false, `consistency proof ${String(p)}`)
  for (const [m, n] of [
    [8, 3],
    [-1, 8],
    [3, 2 ** 53],
    [3.5, 8],
    [NaN, 8],
  ] as const) {
    t.equal(verifyConsistency(c, m, n, r3, r8, cp), false, `m ${m} n ${n}`)
  }
  t.equal(verifyConsistency(c, 3, 8, r3.subarray(1), r8, cp), false, 'short rootM')
  t.equal(verifyConsistency(c, 3, 8, r3, undefined as unknown as Uint8Array, cp), false, 'missing rootN')
})

t.test('RFC 9162 §2.1.4.2 edge cases: m = 0 and m = n', async t => {
  const c = nodeCrypto
  const { tree } = ctTree(c)
  const E = emptyRoot(c),
    r1 = tree.root(1),
    r2 = tree.root(2)
  t.ok(verifyConsistency(c, 0, 0, E, E, []), 'empty to empty')
  t.ok(verifyConsistency(c, 0, 5, E, tree.root(5), []), 'the empty tree is a prefix of any tree')
  t.notOk(verifyConsistency(c, 0, 0, E, r1, []), 'size 0 with a non-empty root')
  t.notOk(verifyConsistency(c, 0, 5, r1, tree.root(5), []), 'size 0 needs the empty root')
  t.notOk(verifyConsistency(c, 0, 5, E, tree.root(5), [E]), 'size 0 needs an empty proof')
  t.ok(verifyConsistency(c, 1, 1, r1, r1, []), 'same size, same root')
  t.notOk(verifyConsistency(c, 1, 1, r1, r2, []), 'same size, different roots')
  t.notOk(verifyConsistency(c, 1, 1, r1, r1, [E]), 'same size needs an empty proof')
  t.notOk(verifyConsistency(c, 1, 2, r1, r2, []), 'growth needs a proof')
  t.notOk(verifyConsistency(c, 2, 1, r2, r1, tree.consistencyProof(1, 2)), 'shrinking is never consistent')
})

t.test('generation refuses impossible sizes and keeps its state private', async t => {
  const c = nodeCrypto
  const { tree, hashes } = ctTree(c)
  t.throws(() => tree.inclusionProof(0, 0), RangeError)
  t.throws(() => tree.inclusionProof(8, 8), RangeError)
  t.throws(() => tree.inclusionProof(0, 9), RangeError)
  t.throws(() => tree.consistencyProof(9, 8), RangeError)
  t.throws(() => tree.consistencyProof(1, 9), RangeError)
  t.throws(() => tree.root(9), RangeError)
  t.throws(() => tree.root(-1), RangeError)
  t.throws(() => tree.subtreeHash(3, 3), RangeError)
  t.throws(() => tree.appendLeafHash(new Uint8Array(31)), RangeError)
  t.throws(() => tree.append(new Uint8Array(33)), RangeError)
  t.throws(() => merkleRoot(c, hashes, 9), RangeError)
  t.same(tree.consistencyProof(0, 8), [], 'from the empty tree: empty proof')
  t.same(tree.consistencyProof(8, 8), [], 'same size: empty proof')
  tree.root(8).fill(0)
  tree.inclusionProof(0, 8)[0]!.fill(0)
  tree.leafHashAt(0).fill(0)
  tree.subtreeHash(0, 4).fill(0)
  t.equal(toHex(tree.root(8)), ct.roots[8], 'mutating returned hashes does not change the tree')
  t.equal(toHex(tree.leafHashAt(1)), ct.nodeHashes[0][1])
})

t.test('id leaves: merkleRootOfIds, fromIds and append agree; ids must be 32 bytes', async t => {
  const c = portableCrypto
  const ids = Array.from({ length: 13 }, (_, i) => c.sha256(new Uint8Array([i])))
  const tree = new MerkleTree(c)
  ids.forEach((id, i) => t.equal(tree.append(id), i))
  t.equal(tree.size, 13)
  t.equal(toHex(merkleRootOfIds(c, ids)), toHex(tree.root()))
  t.equal(toHex(merkleRootOfIds(c, ids, 5)), toHex(MerkleTree.fromIds(c, ids.slice(0, 5)).root()))
  t.equal(
    toHex(merkleRootOfIds(c, ids)),
    toHex(
      ref.mth(
        c,
        ids.map(id => ref.leaf(c, id)),
      ),
    ),
  )
  t.equal(toHex(idLeafHash(c, ids[0]!)), toHex(ref.leaf(c, ids[0]!)))
  t.throws(() => idLeafHash(c, new Uint8Array(31)), RangeError)
  t.throws(() => merkleRootOfIds(c, [new Uint8Array(5)]), RangeError)
  t.ok(verifyInclusion(c, ids[12]!, 12, 13, tree.inclusionProof(12), tree.root()))
  t.notOk(verifyInclusion(c, ids[11]!, 12, 13, tree.inclusionProof(12), tree.root()))
})
