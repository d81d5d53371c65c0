/** @module RFC 6962 / RFC 9162 §2.1 Merkle tree over event ids: roots, inclusion and consistency proofs. */
import type { CryptoProvider } from '../ports/platform.ts'
import { abytes, bytesEqual } from '../codec/bytes.ts'

// Sizes and indexes are plain numbers up to 2^53 - 1, so every bit operation here is arithmetic
// (x % 2, Math.floor(x / 2)): JavaScript's bitwise operators would truncate them to 32 bits.

/** Bytes in every hash of the tree (SHA-256). */
export const HASH_BYTES = 32
/** Longest proof any verifier accepts: RFC 9162 proofs hold at most ceil(log2 n) + 1 hashes, n < 2^53. */
export const MAX_PROOF_HASHES = 64

const LEAF_PREFIX = new Uint8Array([0x00])
const NODE_PREFIX = new Uint8Array([0x01])

/** RFC 9162 §2.1.1: MTH of the empty list is the hash of the empty string. */
export function emptyRoot(crypto: CryptoProvider): Uint8Array {
  return crypto.sha256(new Uint8Array(0))
}

/** RFC 9162 §2.1.1: leaf hash HASH(0x00 ‖ leaf) of raw leaf data. */
export function leafHash(crypto: CryptoProvider, leaf: Uint8Array): Uint8Array {
  abytes('leaf', leaf)
  const input = new Uint8Array(1 + leaf.length)
  input.set(LEAF_PREFIX, 0)
  input.set(leaf, 1)
  return crypto.sha256(input)
}

/** Leaf hash of a kinship event id (the tree's leaves are 32-byte event ids). */
export function idLeafHash(crypto: CryptoProvider, id: Uint8Array): Uint8Array {
  return leafHash(crypto, abytes('id', id, HASH_BYTES))
}

/** RFC 9162 §2.1.1: interior node hash HASH(0x01 ‖ left ‖ right). */
export function nodeHash(crypto: CryptoProvider, left: Uint8Array, right: Uint8Array): Uint8Array {
  abytes('left', left, HASH_BYTES)
  abytes('right', right, HASH_BYTES)
  const input = new Uint8Array(1 + 2 * HASH_BYTES)
  input.set(NODE_PREFIX, 0)
  input.set(left, 1)
  input.set(right, 1 + HASH_BYTES)
  return crypto.sha256(input)
}

/** Whether `n` is a non-negative integer that arithmetic on numbers handles exactly (< 2^53). */
export function isTreeSize(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0
}

/** The k of RFC 9162 §2.1.1: largest power of two strictly smaller than `n` (n >= 2). */
export function largestPowerOfTwoBelow(n: number): number {
  if (!isTreeSize(n) || n < 2) throw new RangeError(`"n" expected an integer in [2, 2^53), got ${n}`)
  let k = 1
  while (k * 2 < n) k *= 2
  return k
}

/** h when `n` = 2^h, otherwise -1. */
export function exactLog2(n: number): number {
  if (!isTreeSize(n) || n === 0) return -1
  let h = 0,
    p = 1
  while (p < n) {
    p *= 2
    h++
  }
  return p === n ? h : -1
}

/** Whether `n` is a power of two (1, 2, 4, ...). */
export function isPowerOfTwo(n: number): boolean {
  return exactLog2(n) >= 0
}

/** LSB(x) of RFC 9162 §2.1.3.2: whether the lowest bit of `x` is set. */
export function lowBitSet(x: number): boolean {
  return x % 2 === 1
}

/** x >> 1 without the 32-bit truncation of `>>`. */
export function shiftRight(x: number): number {
  return Math.floor(x / 2)
}

/** Where proof generators read MTH(D[start:end]) from; `end - start` >= 1, ranges as RFC 9162 §2.1.3.1 uses them. */
export interface SubtreeSource {
  /** MTH of the leaves in [start, end). */
  subtreeHash(start: number, end: number): Uint8Array
}

/**
 * RFC 9162 §2.1.3.1 PATH(m, D[n]), unrolled: the audit path for leaf `index` of the first `size` leaves.
 * Siblings are found top-down and listed bottom-up, as the recursive definition concatenates them.
 */
export function inclusionPath(source: SubtreeSource, index: number, size: number): Uint8Array[] {
  if (!isTreeSize(size) || !isTreeSize(index) || index >= size) {
    throw new RangeError(`inclusion proof needs 0 <= index < size, got index ${index}, size ${size}`)
  }
  const topDown: Uint8Array[] = []
  let start = 0,
    width = size,
    m = index
  while (width > 1) {
    const k = largestPowerOfTwoBelow(width)
    if (m < k) {
      topDown.push(source.subtreeHash(start + k, start + width))
      width = k
    } else {
      topDown.push(source.subtreeHash(start, start + k))
      start += k
      width -= k
      m -= k
    }
  }
  return topDown.reverse()
}

/**
 * RFC 9162 §2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true), unrolled. Once the walk leaves the left
 * edge, the old tree is no longer a node the verifier holds, so SUBPROOF(m, D[m], false) adds MTH(D[m]).
 * Empty when m = 0 or m = n: there is nothing to prove (§2.1.4.2 checks those cases directly).
 */
export function consistencyPath(source: SubtreeSource, m: number, n: number): Uint8Array[] {
  if (!isTreeSize(m) || !isTreeSize(n) || m > n)
    throw new RangeError(`consistency proof needs 0 <= m <= n, got m ${m}, n ${n}`)
  if (m === 0 || m === n) return []
  const topDown: Uint8Array[] = []
  let start = 0,
    width = n,
    first = m,
    known = true
  while (first !== width) {
    const k = largestPowerOfTwoBelow(width)
    if (first <= k) {
      topDown.push(source.subtreeHash(start + k, start + width))
      width = k
    } else {
      topDown.push(source.subtreeHash(start, start + k))
      start += k
      width -= k
      first -= k
      known = false
    }
  }
  const proof = known ? [] : [source.subtreeHash(start, start + width)]
  for (let i = topDown.length - 1; i >= 0; i--) proof.push(topDown[i]!)
  return proof
}

/** MTH over `leafHashes` (already leaf-hashed, RFC 9162 §2.1.1), of the first `size` of them. */
export function merkleRoot(
  crypto: CryptoProvider,
  leafHashes: readonly Uint8Array[],
  size: number = leafHashes.length,
): Uint8Array {
  if (!isTreeSize(size) || size > leafHashes.length)
    throw new RangeError(`"size" expected 0..${leafHashes.length}, got ${size}`)
  if (size === 0) return emptyRoot(crypto)
  return rangeRoot(crypto, leafHashes, 0, size)
}

/** MTH over kinship event ids (each leaf-hashed first), of the first `size` of them. */
export function merkleRootOfIds(
  crypto: CryptoProvider,
  ids: readonly Uint8Array[],
  size: number = ids.length,
): Uint8Array {
  if (!isTreeSize(size) || size > ids.length) throw new RangeError(`"size" expected 0..${ids.length}, got ${size}`)
  const hashes: Uint8Array[] = []
  for (let i = 0; i < size; i++) hashes.push(idLeafHash(crypto, ids[i]!))
  return merkleRoot(crypto, hashes, size)
}

function rangeRoot(crypto: CryptoProvider, leafHashes: readonly Uint8Array[], start: number, end: number): Uint8Array {
  if (end - start === 1) return Uint8Array.from(abytes('leafHash', leafHashes[start], HASH_BYTES))
  const k = largestPowerOfTwoBelow(end - start)
  return nodeHash(
    crypto,
    rangeRoot(crypto, leafHashes, start, start + k),
    rangeRoot(crypto, leafHashes, start + k, end),
  )
}

/**
 * One level of a MerkleTree: its 32-byte hashes back to back in one buffer that doubles as it fills, so a tree of n
 * leaves holds about 2n hashes in a handful of buffers rather than 2n small arrays (each a typed array, an array
 * buffer and a backing store: ~7 times the 32 bytes it holds).
 */
class HashRow {
  private bytes: Uint8Array = new Uint8Array(0)
  length = 0

  push(hash: Uint8Array): void {
    const at = this.length * HASH_BYTES
    if (at + HASH_BYTES > this.bytes.length) {
      const grown = new Uint8Array(Math.max(4 * HASH_BYTES, 2 * this.bytes.length))
      grown.set(this.bytes)
      this.bytes = grown
    }
    this.bytes.set(hash, at)
    this.length++
  }

  /** A view of hash `i` (valid until the next push): callers that keep it take a copy. */
  view(i: number): Uint8Array {
    return this.bytes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES)
  }
}

/**
 * An append-only Merkle tree that keeps every complete subtree hash (about 2n hashes), so that an
 * append costs amortised O(1) hashes, a root at any size n O(log n), and proofs O(log² n) at worst.
 */
export class MerkleTree implements SubtreeSource {
  private readonly crypto: CryptoProvider
  /** levels[h] hash i = MTH of the 2^h leaves starting at i·2^h; levels[0] are the leaf hashes. */
  private readonly levels: HashRow[] = [new HashRow()]

  /** An empty tree hashing through `crypto`. */
  constructor(crypto: CryptoProvider) {
    this.crypto = crypto
  }

  /** A tree holding `leafHashes` (already leaf-hashed) in order. */
  static fromLeafHashes(crypto: CryptoProvider, leafHashes: readonly Uint8Array[]): MerkleTree {
    const tree = new MerkleTree(crypto)
    for (const h of leafHashes) tree.appendLeafHash(h)
    return tree
  }

  /** A tree holding kinship event `ids` in order. */
  static fromIds(crypto: CryptoProvider, ids: readonly Uint8Array[]): MerkleTree {
    const tree = new MerkleTree(crypto)
    for (const id of ids) tree.append(id)
    return tree
  }

  /** Number of leaves. */
  get size(): number {
    return this.levels[0]!.length
  }

  /** Appends an event id; returns its leaf index. */
  append(id: Uint8Array): number {
    return this.appendLeafHash(idLeafHash(this.crypto, id))
  }

  /** Appends an already computed leaf hash; returns its leaf index. Each right child completes its parent. */
  appendLeafHash(hash: Uint8Array): number {
    const levels = this.levels
    const index = levels[0]!.length
    levels[0]!.push(abytes('leafHash', hash, HASH_BYTES))
    let level = 0,
      pos = index
    while (lowBitSet(pos)) {
      const row = levels[level]!
      const parent = nodeHash(this.crypto, row.view(pos - 1), row.view(pos))
      level++
      if (levels.length === level) levels.push(new HashRow())
      levels[level]!.push(parent)
      pos = (pos - 1) / 2
    }
    return index
  }

  /** The leaf hash at `index`. */
  leafHashAt(index: number): Uint8Array {
    this.checkSize('index', index, this.size - 1)
    return this.levels[0]!.view(index).slice()
  }

  /** MTH(D[0:size]) for any size up to the current one (default: the current root). */
  root(size: number = this.size): Uint8Array {
    this.checkSize('size', size, this.size)
    return size === 0 ? emptyRoot(this.crypto) : this.subtreeHash(0, size)
  }

  /** RFC 9162 §2.1.3.1 inclusion proof of leaf `index` in the tree of the first `size` leaves. */
  inclusionProof(index: number, size: number = this.size): Uint8Array[] {
    this.checkSize('size', size, this.size)
    return inclusionPath(this, index, size)
  }

  /** RFC 9162 §2.1.4.1 consistency proof from the tree of size `m` to that of size `n`. */
  consistencyProof(m: number, n: number = this.size): Uint8Array[] {
    this.checkSize('n', n, this.size)
    return consistencyPath(this, m, n)
  }

  /** MTH(D[start:end]) from the stored complete subtrees; `end` <= size, `end - start` >= 1. */
  subtreeHash(start: number, end: number): Uint8Array {
    if (!isTreeSize(start) || !isTreeSize(end) || start >= end || end > this.size) {
      throw new RangeError(`subtree [${start}, ${end}) outside the tree of size ${this.size}`)
    }
    return this.storedSubtree(start, end).slice()
  }

  /** Aligned power-of-two ranges are stored; any other range splits as MTH does (RFC 9162 §2.1.1). */
  private storedSubtree(start: number, end: number): Uint8Array {
    const width = end - start
    const h = exactLog2(width)
    if (h >= 0 && start % width === 0) return this.levels[h]!.view(start / width)
    const k = largestPowerOfTwoBelow(width)
    return nodeHash(this.crypto, this.storedSubtree(start, start + k), this.storedSubtree(start + k, end))
  }

  private checkSize(name: string, value: number, max: number): void {
    if (!isTreeSize(value) || value > max)
      throw new RangeError(`"${name}" expected an integer in [0, ${max}], got ${value}`)
  }
}

function isHash(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array && value.length === HASH_BYTES
}

function isProof(proof: unknown): proof is Uint8Array[] {
  if (!Array.isArray(proof) || proof.length > MAX_PROOF_HASHES) return false
  for (let i = 0; i < proof.length; i++) if (!isHash(proof[i])) return false
  return true
}

/**
 * RFC 9162 §2.1.3.2: whether `proof` shows the leaf with hash `leafHashValue` at `index` in the tree
 * of `size` leaves whose root is `root`. False, never a throw, on any malformed input.
 */
export function verifyLeafHashInclusion(
  crypto: CryptoProvider,
  leafHashValue: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  try {
    if (!isHash(leafHashValue) || !isHash(root) || !isProof(proof)) return false
    if (!isTreeSize(index) || !isTreeSize(size) || index >= size) return false
    let fn = index,
      sn = size - 1,
      r = leafHashValue
    for (const p of proof) {
      if (sn === 0) return false
      if (lowBitSet(fn) || fn === sn) {
        r = nodeHash(crypto, p, r)
        while (!lowBitSet(fn) && fn !== 0) {
          fn = shiftRight(fn)
          sn = shiftRight(sn)
        }
      } else {
        r = nodeHash(crypto, r, p)
      }
      fn = shiftRight(fn)
      sn = shiftRight(sn)
    }
    return sn === 0 && bytesEqual(r, root)
  } catch {
    return false
  }
}

/** RFC 9162 §2.1.3.2 for a kinship leaf: whether `proof` shows event `id` at `index` under `root` of a tree of `size`. */
export function verifyInclusion(
  crypto: CryptoProvider,
  id: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!isHash(id)) return false
  try {
    return verifyLeafHashInclusion(crypto, idLeafHash(crypto, id), index, size, proof, root)
  } catch {
    return false
  }
}

/**
 * RFC 9162 §2.1.4.2: whether `proof` shows the tree of size `m` with root `rootM` is a prefix of the tree
 * of size `n` with root `rootN`. m = 0 holds with an empty proof when `rootM` is the empty tree's root;
 * m = n holds with an empty proof when the roots are equal. False, never a throw, on malformed input.
 */
export function verifyConsistency(
  crypto: CryptoProvider,
  m: number,
  n: number,
  rootM: Uint8Array,
  rootN: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  try {
    if (!isTreeSize(m) || !isTreeSize(n) || m > n) return false
    if (!isHash(rootM) || !isHash(rootN) || !isProof(proof)) return false
    if (m === 0)
      return proof.length === 0 && bytesEqual(rootM, emptyRoot(crypto)) && (n > 0 || bytesEqual(rootN, rootM))
    if (m === n) return proof.length === 0 && bytesEqual(rootM, rootN)
    return verifyConsistencyPath(crypto, m, n, rootM, rootN, proof)
  } catch {
    return false
  }
}

// RFC 9162 §2.1.4.2 steps 1-7 for 0 < m < n. Step 2: a power-of-two old tree is itself a node of the new
// one, so the proof leaves it out and the verifier puts `rootM` in front.
function verifyConsistencyPath(
  crypto: CryptoProvider,
  m: number,
  n: number,
  rootM: Uint8Array,
  rootN: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (proof.length === 0) return false
  const path = isPowerOfTwo(m) ? [rootM].concat(proof) : proof
  let fn = m - 1,
    sn = n - 1
  while (lowBitSet(fn)) {
    fn = shiftRight(fn)
    sn = shiftRight(sn)
  }
  let fr = path[0]!,
    sr = path[0]!
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!
    if (sn === 0) return false
    if (lowBitSet(fn) || fn === sn) {
      fr = nodeHash(crypto, c, fr)
      sr = nodeHash(crypto, c, sr)
      while (!lowBitSet(fn) && fn !== 0) {
        fn = shiftRight(fn)
        sn = shiftRight(sn)
      }
    } else {
      sr = nodeHash(crypto, sr, c)
    }
    fn = shiftRight(fn)
    sn = shiftRight(sn)
  }
  return sn === 0 && bytesEqual(fr, rootM) && bytesEqual(sr, rootN)
}
