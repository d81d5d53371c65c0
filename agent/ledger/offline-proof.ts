/** @module Offline proofs negotiated in an access exchange: the requester sends what the verifier's stated head lacks; the verifier checks it against that head. */
import { KinError, VerificationError } from '../errors.ts'
import { bytesEqual, toHex } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { placeLineage, sourceOf, type BundleSource } from './bundle.ts'
import { headId, verifyHeadSignature, type BlockHead } from './head.ts'
import { idLeafHash } from './merkle.ts'
import { multiInclusionProof, multiInclusionRoots } from './multiproof.ts'
import { Ledger } from './ledger.ts'
import type { LedgerState } from './state.ts'
import type { EncodedEvent } from './types.ts'
import {
  MAX_OFFLINE_PROOF_BYTES,
  OFFLINE_PROOF_VERSION,
  decodeOfflineProof,
  type OfflineProof,
} from './proof-encoding.ts'

/*
 * DESIGN.md "Offline proofs are negotiated, not guessed". The verifier states its head (tree size m and root) first;
 * the requester answers with an OfflineProof (proof-encoding.ts) built from its own replica: its lineage's events at
 * leaves ≥ m, and one shared proof (multiproof.ts, boundary m) that places them under its head (tree size n > m) and
 * shows the verifier's tree of m leaves a prefix of it: the inclusion and the consistency proof in one.
 * Why the verifier needs nothing more: its head covers leaves 0 … m−1 and it holds their events; the consistency
 * proof shows the requester's tree starts with exactly those leaves, so every lineage event under m is one the
 * verifier already holds (the genesis included: it is anchored at enrollment, never sent). The verifier never
 * accepts a head that does not extend its own (checkHeadSuccession: HEAD_ROLLBACK, HEAD_FORK, HEAD_INCONSISTENT),
 * and like a bundle an offline proof shows presence, never absence: the events are merged into a copy of the
 * verifier's ledger, so every revocation the verifier knows still applies.
 */

/** What a verifier states at the start of an exchange: its head's tree size and root (size 0: it holds no head). */
export interface HeadStatement {
  treeSize: number
  root: Uint8Array | undefined
}

/** The statement of a verifier holding `head` (or none). */
export function statementOf(head: BlockHead | undefined): HeadStatement {
  return head === undefined ? { treeSize: 0, root: undefined } : { treeSize: head.treeSize, root: head.root }
}

/**
 * The offline proof of `cn` for a verifier that stated `base`, from a replica or the miner; undefined when the
 * verifier lacks nothing this source's head can prove (its head is as new, or newer; or it holds every lineage
 * event already). HEAD_INCONSISTENT when the verifier's stated root is not this log's root at its size (it follows
 * another log, a forking miner's); BUNDLE_INCOMPLETE when a lineage event is not covered by the head yet.
 */
export function buildOfflineProof(
  from: BundleSource | { bundleSource(): BundleSource | undefined },
  cn: string,
  base: HeadStatement,
): OfflineProof | undefined {
  const source = sourceOf(from)
  const { tree, head } = source
  const m = base.treeSize
  if (!Number.isSafeInteger(m) || m < 0) throw new RangeError(`"treeSize" expected a tree size, got ${m}`)
  if (head.treeSize <= m) return undefined
  if (m > 0 && base.root !== undefined && !bytesEqual(tree.root(m), base.root)) {
    throw new VerificationError(
      'HEAD_INCONSISTENT',
      `the verifier's head (${m} events) is not this log's tree at that size: it follows another log`,
      { detail: { treeSize: m } },
    )
  }
  const missing = placeLineage(source, cn).filter(p => p.leafIndex >= m)
  if (missing.length === 0) return undefined
  const leafIndexes = missing.map(p => p.leafIndex)
  return {
    version: OFFLINE_PROOF_VERSION,
    fromTreeSize: m,
    headBytes: source.headBytes,
    head,
    events: missing.map(p => p.e.bytes),
    leafIndexes,
    proof: multiInclusionProof(tree, leafIndexes, head.treeSize, m),
  }
}

/** What the verifier holds: the miner key, the head it stated, and the ledger that head covers. */
export interface OfflineProofVerifier {
  minerKey: Uint8Array
  /** The head whose statement opened the exchange (undefined: it stated size 0). */
  knownHead: BlockHead | undefined
  /** Its verified ledger: every event its head covers (and possibly more). */
  ledger: LedgerState
}

/** An offline proof that verified: the verifier's ledger copied with the proof's events merged, for one decision. */
export interface VerifiedOfflineProof {
  proof: OfflineProof
  head: BlockHead
  headId: string
  /** 'consistent': proven to extend the verifier's head; 'unanchored': the verifier held no head. */
  anchoring: 'consistent' | 'unanchored'
  ledger: Ledger
  state: LedgerState
  /** The proof's events the copy accepted (the verifier's own ledger is untouched). */
  added: EncodedEvent[]
  /** Seconds between the head's time and `now`. */
  headAge: number
}

/**
 * How the proof's head stands to the verifier's, before any hash is computed (checkHeadSuccession's rules less its
 * consistency proof, which the shared proof carries): a head that does not extend it is HEAD_ROLLBACK or HEAD_FORK.
 */
function checkExtends(crypto: CryptoProvider, head: BlockHead, known: BlockHead): void {
  const detail = {
    knownHeight: known.height,
    knownTreeSize: known.treeSize,
    proofHeight: head.height,
    proofTreeSize: head.treeSize,
  }
  const refuse = (code: 'HEAD_ROLLBACK' | 'HEAD_FORK', why: string): never => {
    throw new VerificationError(
      code,
      `the proof's head (height ${head.height}, ${head.treeSize} events) does not extend this device's (height ${known.height}, ${known.treeSize} events): ${why}`,
      { detail },
    )
  }
  if (head.height < known.height || head.treeSize <= known.treeSize) refuse('HEAD_ROLLBACK', 'it is not newer')
  if (head.height === known.height) refuse('HEAD_FORK', 'two different heads at one height')
  if (head.time < known.time) refuse('HEAD_ROLLBACK', 'its time goes back')
  if (head.height === known.height + 1 && !bytesEqual(head.prevHeadId, headId(crypto, known)))
    refuse('HEAD_FORK', "it does not name this device's head as its predecessor")
}

/**
 * Verifies an offline proof as a recipe, cheapest refusal first: size (PROOF_OVERSIZE) → decode (DECODE_*) → built
 * from the stated tree size (PROOF_BASE_MISMATCH) → every event at a leaf the verifier lacks (PROOF_HELD_EVENT) →
 * head signed by the miner key (HEAD_SIGNATURE) → head extends the verifier's (HEAD_ROLLBACK, HEAD_FORK,
 * HEAD_INCONSISTENT) → the shared inclusion proof (BUNDLE_INCLUSION) → each event validated, signature included, into
 * a copy of the verifier's ledger (BUNDLE_INCOMPLETE for a missing link, the event's own code otherwise). Throws only
 * KinErrors.
 */
export function verifyOfflineProof(
  crypto: CryptoProvider,
  bytes: Uint8Array,
  verifier: OfflineProofVerifier,
  now: number,
): VerifiedOfflineProof {
  if (bytes.length > MAX_OFFLINE_PROOF_BYTES) {
    throw new VerificationError(
      'PROOF_OVERSIZE',
      `the offline proof is ${bytes.length} bytes, over the limit of ${MAX_OFFLINE_PROOF_BYTES}`,
      { detail: { bytes: bytes.length } },
    )
  }
  const proof = decodeOfflineProof(bytes)
  const stated = verifier.knownHead?.treeSize ?? 0
  if (proof.fromTreeSize !== stated) {
    throw new VerificationError(
      'PROOF_BASE_MISMATCH',
      `the offline proof starts from a tree of ${proof.fromTreeSize} events; this device stated ${stated}`,
      { detail: { fromTreeSize: proof.fromTreeSize, stated } },
    )
  }
  if (proof.leafIndexes[0]! < stated) {
    throw new VerificationError(
      'PROOF_HELD_EVENT',
      `the offline proof sends the event at leaf ${proof.leafIndexes[0]}, which this device's head (${stated} events) already covers`,
    )
  }
  if (!verifyHeadSignature(crypto, proof.head, verifier.minerKey)) {
    throw new VerificationError(
      'HEAD_SIGNATURE',
      `the proof's head (height ${proof.head.height}) is not signed by the fleet's miner key`,
    )
  }
  const known = verifier.knownHead
  if (known !== undefined) checkExtends(crypto, proof.head, known)
  if (proof.leafIndexes[proof.leafIndexes.length - 1]! >= proof.head.treeSize) {
    throw new VerificationError(
      'BUNDLE_INCLUSION',
      `the proof places an event at leaf ${proof.leafIndexes[proof.leafIndexes.length - 1]}, beyond its head's ${proof.head.treeSize} events`,
    )
  }
  const leafHashes = proof.events.map(e => idLeafHash(crypto, crypto.sha256(e)))
  const roots = multiInclusionRoots(crypto, leafHashes, proof.leafIndexes, proof.head.treeSize, proof.proof, stated)
  if (known !== undefined && (roots?.boundaryRoot === undefined || !bytesEqual(roots.boundaryRoot, known.root))) {
    throw new VerificationError(
      'HEAD_INCONSISTENT',
      `the proof does not show this device's tree (${stated} events) a prefix of the proof's head's (${proof.head.treeSize}): a consistency proof that fails (RFC 9162 §2.1.4)`,
    )
  }
  if (roots === undefined || !bytesEqual(roots.root, proof.head.root)) {
    throw new VerificationError(
      'BUNDLE_INCLUSION',
      `the proof does not place its ${proof.events.length} events at leaves ${proof.leafIndexes.join(', ')} of its head's tree (RFC 9162 §2.1.3.2)`,
    )
  }
  const anchoring: VerifiedOfflineProof['anchoring'] = known === undefined ? 'unanchored' : 'consistent'
  const ledger = new Ledger(crypto)
  ledger.ingestMany(verifier.ledger.log, { trustSignatures: true })
  const added: EncodedEvent[] = []
  proof.events.forEach((bytes, i) => {
    try {
      const e = ledger.read(bytes)
      if (ledger.state.has(e.idHex)) return
      added.push(ledger.ingest(e))
    } catch (err) {
      if (!(err instanceof KinError)) throw err
      if (err.code === 'MISSING_LINK' || err.code === 'NO_GENESIS') {
        throw new KinError(
          'BUNDLE_INCOMPLETE',
          `proof event ${i} links to an event neither the proof nor this device's ledger holds: ${err.message}`,
          { detail: { event: i } },
        )
      }
      throw new VerificationError(err.code, `proof event ${i} is refused: ${err.message}`, {
        cause: err,
        detail: { event: i },
      })
    }
  })
  return {
    proof,
    head: proof.head,
    headId: toHex(headId(crypto, proof.head)),
    anchoring,
    ledger,
    state: ledger.state,
    added,
    headAge: now - proof.head.time,
  }
}
