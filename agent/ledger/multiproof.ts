/** @module One shared inclusion proof for several leaves of an RFC 9162 Merkle tree: only the subtree hashes the leaves cannot give. */
import type { CryptoProvider } from '../ports/platform.ts'
import { bytesEqual } from '../codec/bytes.ts'
import { HASH_BYTES, isTreeSize, largestPowerOfTwoBelow, nodeHash, type SubtreeSource } from './merkle.ts'

/*
 * A multi-leaf inclusion proof walks the tree as RFC 9162 §2.1.1 splits it (left subtree of the largest power of two
 * below the width, then the rest), depth first, left before right. A subtree that holds none of the proven leaves is
 * one hash of the proof; a subtree that holds some is computed from its two halves; a single leaf is its leaf hash.
 * So the proof holds exactly the hashes no proven leaf can give (each hash once), in the order the walk meets them.
 * For one leaf it holds the hashes of that leaf's audit path (left siblings top-down, then right siblings bottom-up). The verifier runs the same walk and must use every
 * hash of the proof, no more and no fewer.
 *
 * With a boundary m (0 < m, every proven leaf at m or above), a subtree without proven leaves that straddles m is split
 * too, so each hash lies wholly below m or wholly above. The ones below m are then exactly the perfect subtrees of m's
 * binary decomposition, largest first, and fold right to left into MTH(D[0:m]) (RFC 9162 §2.1.1): the same proof
 * shows the tree of m leaves is a prefix of the tree of `size` (what an RFC 9162 §2.1.4 consistency proof shows, and
 * with the same hashes), so a verifier holding the head of size m needs no separate consistency proof. The walk's depth is at most 54 (sizes < 2^53), and no function is defined
 * inside it, so it runs on small engines as it is.
 */

/** Most leaves one multi-leaf proof may cover. */
export const MAX_MULTIPROOF_LEAVES = 512
/** Most hashes one multi-leaf proof may hold (each proven leaf adds at most one audit path of 64). */
export const MAX_MULTIPROOF_HASHES = 4096

/** Whether `indexes` increase strictly and all lie in [boundary, size), 1..MAX_MULTIPROOF_LEAVES of them. */
export function isLeafSet(indexes: readonly number[], size: number, boundary = 0): boolean {
  if (!isTreeSize(size) || !isTreeSize(boundary) || indexes.length === 0 || indexes.length > MAX_MULTIPROOF_LEAVES)
    return false
  let last = boundary - 1
  for (let i = 0; i < indexes.length; i++) {
    const x = indexes[i]!
    if (!isTreeSize(x) || x <= last || x >= size) return false
    last = x
  }
  return true
}

// The first position in [lo, hi) whose index is at least `bound` (indexes sorted).
function splitAt(indexes: readonly number[], lo: number, hi: number, bound: number): number {
  let mid = lo
  while (mid < hi && indexes[mid]! < bound) mid++
  return mid
}

// Whether [start, start + width) lies wholly on one side of the boundary.
function oneSide(start: number, width: number, boundary: number): boolean {
  return start + width <= boundary || start >= boundary
}

function collect(
  source: SubtreeSource,
  indexes: readonly number[],
  boundary: number,
  start: number,
  width: number,
  lo: number,
  hi: number,
  out: Uint8Array[],
): void {
  if (lo === hi && oneSide(start, width, boundary)) {
    out.push(source.subtreeHash(start, start + width))
    return
  }
  if (width === 1) return
  const k = largestPowerOfTwoBelow(width)
  const mid = splitAt(indexes, lo, hi, start + k)
  collect(source, indexes, boundary, start, k, lo, mid, out)
  collect(source, indexes, boundary, start + k, width - k, mid, hi, out)
}

/**
 * The shared inclusion proof of the leaves at `indexes` (strictly increasing, none below `boundary`) in the tree of the
 * first `size` leaves; with a boundary m > 0 it also proves the tree of m leaves a prefix (see the module comment).
 */
export function multiInclusionProof(
  source: SubtreeSource,
  indexes: readonly number[],
  size: number,
  boundary = 0,
): Uint8Array[] {
  if (!isLeafSet(indexes, size, boundary)) {
    throw new RangeError(
      `a multi-leaf proof needs 1..${MAX_MULTIPROOF_LEAVES} strictly increasing indexes in [${boundary}, ${size})`,
    )
  }
  const out: Uint8Array[] = []
  collect(source, indexes, boundary, 0, size, 0, indexes.length, out)
  return out
}

interface Walk {
  crypto: CryptoProvider
  indexes: readonly number[]
  leafHashes: readonly Uint8Array[]
  proof: readonly Uint8Array[]
  boundary: number
  used: number
  /** The proof's hashes of subtrees below the boundary, left to right. */
  below: Uint8Array[]
}

// The subtree's hash, or undefined when the proof runs out.
function fold(walk: Walk, start: number, width: number, lo: number, hi: number): Uint8Array | undefined {
  if (lo === hi && oneSide(start, width, walk.boundary)) {
    if (walk.used >= walk.proof.length) return undefined
    const h = walk.proof[walk.used++]!
    if (start + width <= walk.boundary) walk.below.push(h)
    return h
  }
  if (width === 1) return walk.leafHashes[lo]
  const k = largestPowerOfTwoBelow(width)
  const mid = splitAt(walk.indexes, lo, hi, start + k)
  const left = fold(walk, start, k, lo, mid)
  if (left === undefined) return undefined
  const right = fold(walk, start + k, width - k, mid, hi)
  if (right === undefined) return undefined
  return nodeHash(walk.crypto, left, right)
}

/** The roots a multi-leaf proof computes: the tree's of `size`, and with a boundary m > 0 the tree's of m leaves. */
export interface MultiInclusionRoots {
  root: Uint8Array
  /** MTH(D[0:boundary]); undefined when the boundary is 0. */
  boundaryRoot: Uint8Array | undefined
}

/**
 * What `proof` computes for the leaf hashes at `indexes` (strictly increasing, none below `boundary`, one hash per
 * index) in a tree of `size` leaves, every hash of the proof used: the root, and the boundary's root. Undefined, never
 * a throw, on malformed input or a proof of the wrong length; the caller compares the roots with the ones it trusts.
 */
export function multiInclusionRoots(
  crypto: CryptoProvider,
  leafHashes: readonly Uint8Array[],
  indexes: readonly number[],
  size: number,
  proof: readonly Uint8Array[],
  boundary = 0,
): MultiInclusionRoots | undefined {
  try {
    if (
      !isLeafSet(indexes, size, boundary) ||
      leafHashes.length !== indexes.length ||
      proof.length > MAX_MULTIPROOF_HASHES
    )
      return undefined
    for (const h of leafHashes) if (!(h instanceof Uint8Array) || h.length !== HASH_BYTES) return undefined
    for (const h of proof) if (!(h instanceof Uint8Array) || h.length !== HASH_BYTES) return undefined
    const walk: Walk = { crypto, indexes, leafHashes, proof, boundary, used: 0, below: [] }
    const root = fold(walk, 0, size, 0, indexes.length)
    if (root === undefined || walk.used !== proof.length) return undefined
    if (boundary === 0) return { root, boundaryRoot: undefined }
    if (walk.below.length === 0) return undefined
    let boundaryRoot = walk.below[walk.below.length - 1]!
    for (let i = walk.below.length - 2; i >= 0; i--) boundaryRoot = nodeHash(crypto, walk.below[i]!, boundaryRoot)
    return { root, boundaryRoot }
  } catch {
    return undefined
  }
}

/**
 * Whether `proof` shows the leaf hashes `leafHashes` at `indexes` (strictly increasing, one hash per index) in the
 * tree of `size` leaves whose root is `root`, every hash of the proof used. False, never a throw, on malformed input.
 */
export function verifyMultiInclusion(
  crypto: CryptoProvider,
  leafHashes: readonly Uint8Array[],
  indexes: readonly number[],
  size: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  const roots = multiInclusionRoots(crypto, leafHashes, indexes, size, proof)
  return roots !== undefined && root instanceof Uint8Array && bytesEqual(roots.root, root)
}
