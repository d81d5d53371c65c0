/** @module Writes the proof-bundle vectors (bundle.json) and the compact-encoding vectors (compact.json) from the deterministic house fleet: `npx tsx test/vectors/bundle/generate.ts`. */
import { writeFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { nodeCrypto } from '../../../runtime/node/crypto.ts'
import { toHex } from '../../../agent/codec/bytes.ts'
import { encodeHead, headId } from '../../../agent/ledger/head.ts'
import { memoryMiner, mineInParts } from '../../../sim/memory-miner.ts'
import { buildBundle, encodeBundle, verifyBundle } from '../../../agent/ledger/bundle.ts'
import { Ledger } from '../../../agent/ledger/ledger.ts'
import { buildOfflineProof, statementOf, verifyOfflineProof } from '../../../agent/ledger/offline-proof.ts'
import { encodeOfflineProof } from '../../../agent/ledger/proof-encoding.ts'
import { T0, houseFleet } from '../../helpers/ledger-fleet.ts'

/** One vector: a bundle, what a verifier trusts, and what verifying it yields. */
export interface BundleVector {
  name: string
  description: string
  cn: string
  now: number
  anchor: { minerKey: string; genesisId: string; knownHead?: string }
  bundle: string
  bytes: number
  expect: { anchoring: string; headId: string; eventIds: string[]; lineage: string[] }
}

/**
 * The house of DESIGN.md cut down (L0 → laptop → owner phone → front-door lock), sealed by the miner in two heads
 * (after the laptop, then after everything); the lock's bundle, once plain and once for a verifier holding head 0.
 */
export async function vectorBundles(): Promise<BundleVector[]> {
  const { f, lock } = houseFleet('kinship-bundle-vectors')
  const miner = await memoryMiner(f.secrets.get(f.l0)!)
  const now = T0 + 1000
  const h0 = (await mineInParts(miner, f.events, [3, f.events.length], now, { sealAt: i => now + i }))[0]!
  const minerKey = f.ledger.state.genesis!.body.minerKey
  const genesisId = f.events[0]!.idHex
  const plain = buildBundle(miner, lock)
  const forHead0 = buildBundle(miner, lock, { knownTreeSize: h0.treeSize })
  const out: BundleVector[] = []
  for (const [name, bundle, knownHead] of [
    ['lock', plain, undefined],
    ['lock-for-head-0', forHead0, h0],
  ] as const) {
    const bytes = encodeBundle(bundle)
    const anchor = { minerKey, genesisId, knownHead }
    const v = verifyBundle(nodeCrypto, bytes, anchor, now + 10)
    out.push({
      name,
      description:
        knownHead === undefined
          ? "Proof bundle of the front-door lock: genesis, then authorize and certified of laptop, phone and lock, each with its RFC 9162 audit path against the miner's head 1."
          : "The same bundle built for a verifier holding head 0: a fourth item carries the RFC 9162 consistency proof from head 0's tree to head 1's.",
      cn: lock,
      now: now + 10,
      anchor: {
        minerKey: toHex(minerKey),
        genesisId,
        ...(knownHead === undefined ? {} : { knownHead: toHex(encodeHead(knownHead)) }),
      },
      bundle: toHex(bytes),
      bytes: bytes.length,
      expect: {
        anchoring: v.anchoring,
        headId: toHex(headId(nodeCrypto, bundle.head)),
        eventIds: v.state.log.map(e => e.idHex),
        lineage: v.state.lineage(lock),
      },
    })
  }
  return out
}

/** One compact-encoding vector: a version 2 bundle, or an offline proof for a verifier holding head 0. */
export interface CompactVector {
  name: string
  kind: 'bundle' | 'offline-proof'
  description: string
  cn: string
  now: number
  anchor: { minerKey: string; genesisId: string; knownHead?: string }
  /** Offline proofs: the events (hex) the verifier holds, the ones its head covers. */
  held?: string[]
  bytes: string
  size: number
  expect: { anchoring: string; headId: string; eventIds: string[] }
}

/**
 * The same house and heads as vectorBundles: the lock's compact bundle (version 2), once plain and once with the
 * consistency proof from head 0; and the lock's offline proof for a verifier that stated head 0 and holds its events.
 */
export async function vectorCompact(): Promise<CompactVector[]> {
  const { f, lock } = houseFleet('kinship-bundle-vectors')
  const miner = await memoryMiner(f.secrets.get(f.l0)!)
  const now = T0 + 1000
  const h0 = (await mineInParts(miner, f.events, [3, f.events.length], now, { sealAt: i => now + i }))[0]!
  const minerKey = f.ledger.state.genesis!.body.minerKey
  const genesisId = f.events[0]!.idHex
  const anchorOf = (knownHead?: typeof h0) => ({
    minerKey: toHex(minerKey),
    genesisId,
    ...(knownHead === undefined ? {} : { knownHead: toHex(encodeHead(knownHead)) }),
  })
  const out: CompactVector[] = []
  for (const [name, knownHead] of [
    ['lock-compact', undefined],
    ['lock-compact-for-head-0', h0],
  ] as const) {
    const bundle = buildBundle(miner, lock, {
      compact: true,
      ...(knownHead === undefined ? {} : { knownTreeSize: knownHead.treeSize }),
    })
    const bytes = encodeBundle(bundle)
    const v = verifyBundle(nodeCrypto, bytes, { minerKey, genesisId, knownHead }, now + 10)
    out.push({
      name,
      kind: 'bundle',
      cn: lock,
      now: now + 10,
      anchor: anchorOf(knownHead),
      bytes: toHex(bytes),
      size: bytes.length,
      description:
        knownHead === undefined
          ? "The lock's compact bundle (version 2): [2, headBytes, [eventBytes...], [leafIndex...], inclusion] with ONE multi-leaf inclusion proof, its hashes packed in one byte string."
          : "The same with a sixth item [otherTreeSize, consistency]: the RFC 9162 consistency proof from head 0's tree, packed.",
      expect: {
        anchoring: v.anchoring,
        headId: toHex(headId(nodeCrypto, bundle.head)),
        eventIds: v.state.log.map(e => e.idHex),
      },
    })
  }
  const held = f.events.slice(0, h0.treeSize)
  const verifierLedger = new Ledger(nodeCrypto)
  verifierLedger.ingestMany(held, { trustSignatures: true })
  const proof = buildOfflineProof(miner, lock, statementOf(h0))!
  const bytes = encodeOfflineProof(proof)
  const v = verifyOfflineProof(nodeCrypto, bytes, { minerKey, knownHead: h0, ledger: verifierLedger.state }, now + 10)
  out.push({
    name: 'lock-offline-proof-for-head-0',
    kind: 'offline-proof',
    cn: lock,
    now: now + 10,
    anchor: anchorOf(h0),
    held: held.map(e => toHex(e.bytes)),
    bytes: toHex(bytes),
    size: bytes.length,
    description:
      "The lock's offline proof for a verifier that stated head 0 and holds its events: [1, m, headBytes, [eventBytes...], [leafIndex...], proof], the events at leaves >= m only, and one packed proof that is both their inclusion proof and the consistency proof from m.",
    expect: { anchoring: v.anchoring, headId: v.headId, eventIds: v.added.map(e => e.idHex) },
  })
  return out
}

async function main(): Promise<void> {
  const compact = {
    description:
      'Compact proof encoding (docs/PROTOCOL.md §11.3, §11.7): version 2 bundles and an offline proof. Verify with the anchor at `now` (offline proofs: against the knownHead and a ledger of `held` events); expect the listed outcome (offline proofs: the events merged).',
    generator: 'test/vectors/bundle/generate.ts',
    vectors: await vectorCompact(),
  }
  writeFileSync(new URL('./compact.json', import.meta.url), JSON.stringify(compact, null, 2) + '\n')
  const vectors = await vectorBundles()
  const file = {
    description:
      'Proof bundles (DESIGN.md "Proof bundle"): [1, headBytes, [[eventBytes, leafIndex, proof]...], ([otherTreeSize, consistencyProof])]. Verify with the anchor at `now`; expect the listed outcome.',
    generator: 'test/vectors/bundle/generate.ts',
    vectors,
  }
  writeFileSync(new URL('./bundle.json', import.meta.url), JSON.stringify(file, null, 2) + '\n')
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await main()
