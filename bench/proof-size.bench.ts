/** @module Proof sizes: a depth-4 proof bundle in the first encoding and the compact one, and the offline proof sent to a verifier that holds its own lineage. */
import { pathToFileURL } from 'node:url'
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { memoryMiner, mineInParts } from '../sim/memory-miner.ts'
import { Ledger } from '../agent/ledger/ledger.ts'
import { buildBundle, encodeBundle, verifyBundle } from '../agent/ledger/bundle.ts'
import { buildOfflineProof, statementOf, verifyOfflineProof } from '../agent/ledger/offline-proof.ts'
import { encodeOfflineProof } from '../agent/ledger/proof-encoding.ts'
import { multiInclusionProof } from '../agent/ledger/multiproof.ts'
import { deepFleet } from '../test/miner/helpers.ts'

/** Enrolled devices besides the depth-8 chain (two events each): the log the miner bench seals, about 10,000 events. */
const OTHERS = 5000
/** The depth the goals name. */
const DEPTH = 4
/** The goals (issue 14): a standalone depth-4 bundle, and the proof sent to a verifier that holds its own lineage. */
const GOALS = { standalone: 4096, offline: 2048 }

/**
 * deepFleet's chain L0 → … → chain[8] with a sibling camera at every level, a rekey of chain[3], a policy on
 * chain[2]'s subtree and OTHERS devices besides. The miner seals head A right before chain[4] enrolls (after the
 * camera chain[3] enrolled beside it: the verifier, which holds its own lineage and head A), then head B over the rest.
 * chain[4] then proves itself to that camera: its own two events, chain[3]'s rekey and new certificate, chain[2]'s
 * policy, and one shared proof that places them under B and shows A's tree a prefix of B's.
 */
export async function run(emit: (row: object) => void): Promise<void> {
  const { f, chain, siblings } = deepFleet({ tag: 'proof-size-bench', others: OTHERS })
  const requester = chain[DEPTH]!
  const verifier = siblings[DEPTH - 1]!
  const split = f.events.findIndex(e => e.idHex === f.binding(requester).id)
  const now = f.events[f.events.length - 1]!.event.time + 60
  const miner = await memoryMiner(f.secrets.get(f.l0)!)
  const heads = await mineInParts(miner, f.events, [split, f.events.length], now, { batch: 256 })
  const headA = heads[0]!,
    headB = heads[1]!
  const genesis = f.ledger.state.genesis!
  const anchor = { minerKey: genesis.body.minerKey, genesisId: genesis.event.idHex }

  const old = encodeBundle(buildBundle(miner, requester))
  const compact = encodeBundle(buildBundle(miner, requester, { compact: true }))
  const compactEntries = verifyBundle(nodeCrypto, compact, anchor, now).bundle.entries.length
  const oldHashes = buildBundle(miner, requester).entries.reduce((n, e) => n + e.proof.length, 0)
  const compactHashes = buildBundle(miner, requester, { compact: true }).inclusion!.length

  // The verifier: the camera's own lineage up to head A, nothing else.
  const held = new Ledger(nodeCrypto)
  const own = new Set(buildBundle(miner, verifier).entries.map(e => nodeCrypto.sha256(e.eventBytes).join()))
  held.ingestMany(
    f.events.slice(0, split).filter(e => own.has(e.id.join())),
    { trustSignatures: true },
  )
  const offline = buildOfflineProof(miner, requester, statementOf(headA))!
  const offlineBytes = encodeOfflineProof(offline)
  // What an inclusion proof and an RFC 9162 consistency proof would hold apart, for comparison.
  const source = miner.bundleSource()
  const separate =
    multiInclusionProof(source.tree, offline.leafIndexes, headB.treeSize).length +
    source.tree.consistencyProof(headA.treeSize, headB.treeSize).length
  const checked = verifyOfflineProof(
    nodeCrypto,
    offlineBytes,
    { minerKey: anchor.minerKey, knownHead: headA, ledger: held.state },
    now,
  )

  emit({
    bench: 'proof.size',
    depth: DEPTH,
    logSize: headB.treeSize,
    verifierTreeSize: headA.treeSize,
    oldBundle: { bytes: old.length, entries: compactEntries, proofHashes: oldHashes },
    compactBundle: {
      bytes: compact.length,
      entries: compactEntries,
      proofHashes: compactHashes,
      goal: GOALS.standalone,
      met: compact.length <= GOALS.standalone,
    },
    offlineProof: {
      bytes: offlineBytes.length,
      events: offline.events.length,
      eventBytes: offline.events.reduce((n, e) => n + e.length, 0),
      proofHashes: offline.proof.length,
      separateProofsHashes: separate,
      merged: checked.added.length,
      goal: GOALS.offline,
      met: offlineBytes.length <= GOALS.offline,
    },
  })
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href)
  await run(row => process.stdout.write(JSON.stringify(row) + '\n'))
