/** @module Merkle figures: appends, roots and proofs over a 100k-leaf tree, native vs portable SHA-256. */
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { portableCrypto } from '../agent/portable/crypto.ts'
import { MerkleTree, verifyConsistency, verifyInclusion } from '../agent/ledger/merkle.ts'

const LEAVES = 100_000

function timed(fn: () => void, times: number): number {
  const start = performance.now()
  for (let i = 0; i < times; i++) fn()
  return Math.round(times / ((performance.now() - start) / 1000))
}

export async function run(emit: (row: object) => void): Promise<void> {
  const ids = Array.from({ length: LEAVES }, (_, i) =>
    nodeCrypto.sha256(new Uint8Array([i & 255, (i >> 8) & 255, i >> 16])),
  )
  for (const crypto of [nodeCrypto, portableCrypto]) {
    const tree = new MerkleTree(crypto)
    const start = performance.now()
    for (const id of ids) tree.append(id)
    const appendMs = performance.now() - start
    emit({
      bench: 'merkle.append',
      provider: crypto.name,
      leaves: LEAVES,
      appendsPerSec: Math.round(LEAVES / (appendMs / 1000)),
    })

    let k = 0
    const rootsPerSec = timed(() => tree.root(LEAVES - (k++ % 1000)), 2000)
    emit({ bench: 'merkle.rootAtOlderSize', provider: crypto.name, leaves: LEAVES, opsPerSec: rootsPerSec })

    const root = tree.root()
    const proofsPerSec = timed(() => {
      const i = (k++ * 7919) % LEAVES
      tree.inclusionProof(i)
    }, 2000)
    const proof = tree.inclusionProof(12345)
    const verifiesPerSec = timed(() => verifyInclusion(crypto, ids[12345]!, 12345, LEAVES, proof, root), 2000)
    emit({
      bench: 'merkle.inclusion',
      provider: crypto.name,
      leaves: LEAVES,
      proofHashes: proof.length,
      proofsPerSec,
      verifiesPerSec,
    })

    const m = 61_803,
      cproof = tree.consistencyProof(m)
    const rootM = tree.root(m)
    const cVerifiesPerSec = timed(() => verifyConsistency(crypto, m, LEAVES, rootM, root, cproof), 2000)
    emit({
      bench: 'merkle.consistency',
      provider: crypto.name,
      m,
      n: LEAVES,
      proofHashes: cproof.length,
      verifiesPerSec: cVerifiesPerSec,
    })
  }
}
