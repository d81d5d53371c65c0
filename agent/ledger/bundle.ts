/** @module Proof bundles: one CN's lineage events with inclusion proofs against a signed head, verifiable offline. */
import { DecodeError, KinError, VerificationError } from '../errors.ts'
import { decodeCbor, encodeCbor, MAX_UINT, type CborValue } from '../codec/cbor.ts'
import { abytes, bytesEqual, toHex } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { MAX_EVENT_BYTES, readEvent } from './event.ts'
import { checkHeadSuccession, decodeHead, headId, verifyHeadSignature, type BlockHead } from './head.ts'
import { HASH_BYTES, MAX_PROOF_HASHES, idLeafHash, verifyInclusion, type MerkleTree } from './merkle.ts'
import { multiInclusionProof, verifyMultiInclusion } from './multiproof.ts'
import { packHashes, readPackedHashes } from './proof-encoding.ts'
import { Ledger, type Refusal } from './ledger.ts'
import type { PersistentLedger } from './persistent.ts'
import type { LedgerState } from './state.ts'
import { labelFromBase32 } from './names.ts'
import type { EncodedEvent } from './types.ts'
import type { ValidateOptions, VerifiedSignatures } from './validate.ts'
import type { SignatureCache } from './signature-cache.ts'

/*
 * Wire format (deterministic CBOR), two versions, both read:
 *   version 1: [1, headBytes, entries]  or  [1, headBytes, entries, [otherTreeSize, consistencyProof]]
 *              entry = [eventBytes, leafIndex, inclusionProof]      leaf indexes strictly increasing, < head.treeSize
 *   version 2 (compact; what buildBundle makes with `compact`):
 *              [2, headBytes, [eventBytes…], [leafIndex…], inclusion]  or  … , [otherTreeSize, consistency]]
 *              inclusion = ONE multi-leaf proof for all the events (multiproof.ts), its hashes packed back to back in
 *              one byte string (proof-encoding.ts); consistency packed the same way.
 * Version 1 repeats the upper levels of the tree in every entry's audit path (a depth-4 bundle over a log of 10,000
 * events: 168 hashes of which 47 are distinct); version 2 sends each needed subtree hash once, and none that the
 * bundle's own events give. The optional last item is an RFC 9162 §2.1.4 proof between the head's tree and a tree of
 * `otherTreeSize` (the verifier's own head, when the builder knew its size), in whichever direction is smaller → larger.
 *
 * What a bundle for CN holds, so that a verifier can run the access decision's binding and lineage stages from it
 * alone (DESIGN.md "Access decision" steps 2–3):
 *   - the lineage: CN and each ancestor up to L0, following the parent CN of the bindings (a CN's bindings all
 *     share one parent; a rekey is by that parent);
 *   - for each lineage CN, every event whose subject it is: genesis (L0) or its authorize, each rekey (the current
 *     key, the binding stage's CERT_UNBOUND), each certified (CERT_NOT_CERTIFIED), each revoke (ACCESS_REVOKED,
 *     ACCESS_ANCESTOR_REVOKED), each policy (the lineage's policy layers);
 *   - every event those link to (issuer bindings, earlier bindings), so that they validate in a fresh ledger.
 * Nothing about siblings, other subtrees or descendants. Entries are in leaf order, the miner's order: a valid
 * ingest order that settles conflicts as the miner did.
 *
 * What a bundle cannot show: inclusion proves presence, not absence. The bundle shows its events were in the log
 * at its head; it cannot show that no other revoke for the CN exists up to that head, and whoever presents it may
 * leave one out. Hence: a device merges a verified bundle into its own ledger (`mergeBundleInto`), so every
 * revocation it already knows still applies; the head's time bounds how old the evidence is (policy maxHeadAge);
 * a verifier that needs completeness syncs with the miner.
 *
 * The offline rule for heads. A verifier that holds a head H and receives a bundle signed at H':
 *   - H' = H: nothing more to check;
 *   - H' ≠ H: a consistency proof between them is required — `anchor.consistencyProof`, or the bundle's own when
 *     it was built for the verifier's tree size (`buildBundle(…, { knownTreeSize })`; the verifier announces its
 *     tree size with its challenge). It is checked in height order with checkHeadSuccession: a failure is a
 *     forking miner (HEAD_FORK, HEAD_INCONSISTENT, HEAD_ROLLBACK);
 *   - no proof: contradictions visible without one are still refused (two heads at one height: HEAD_FORK; a
 *     direct successor not naming H: HEAD_FORK; tree or time going back: HEAD_ROLLBACK), and anything else is
 *     HEAD_UNPROVEN, fail closed: a verifier holding H cannot tell H' from a fork's head. A caller that accepts
 *     that risk says so by leaving `knownHead` out, and the result reports `anchoring: 'unanchored'`.
 */

/*
 * The bundle tier (DESIGN.md "Small devices: three tiers"). A full device checks every signature of a bundle. A
 * bundle-tier device (kin-core on a small engine, where one Ed25519 check costs a noticeable part of a second)
 * checks the head's signature and every inclusion proof as a full device does, every rule of every event, and the
 * signatures of the events that can grant anything — genesis, authorize and rekey bind keys, policy can widen what
 * a role may do — unless it verified that exact event under that exact key before (its own lineage at boot,
 * earlier peers: a SignatureCache). It takes the signatures of the others on the miner's word (they sit in a head
 * the miner signed): a revoke only takes away, and a certified event only records a certificate for a key its
 * binding already names, which the holder must still prove it holds. Why that keeps
 * the invariant "a compromised L0 alone cannot make it accept an identity under another device's subtree": an
 * identity exists only through an authorize event signed with its parent's ledger key, that key is bound by the
 * parent's own authorize or rekey, signed by its parent, and so on up to the genesis; every link of that chain is
 * a signature the device checked itself. L0 holds its own key, the miner's and the CA's, none of a device's below
 * it. What L0 can still do is what its key may do on every tier: authorize under itself, rekey its own children
 * (and then sign with the keys it gave them), revoke, set policy; and leave events out of a bundle, as any
 * presenter can.
 */

/** The first bundle format version: an audit path per entry. */
export const BUNDLE_VERSION = 1
/** The compact bundle format version: one shared multi-leaf inclusion proof. */
export const COMPACT_BUNDLE_VERSION = 2
/** Largest encoded bundle accepted. */
export const MAX_BUNDLE_BYTES = 256 * 1024
/** Most entries in one bundle. */
export const MAX_BUNDLE_ENTRIES = 512

/** One event of a bundle with its place in the miner's log and its audit path (version 1; empty in version 2). */
export interface BundleEntry {
  eventBytes: Uint8Array
  leafIndex: number
  proof: Uint8Array[]
}

/** A decoded proof bundle. */
export interface ProofBundle {
  version: number
  headBytes: Uint8Array
  head: BlockHead
  entries: BundleEntry[]
  /** A consistency proof between the head's tree and a tree of `treeSize` leaves, when the builder knew one. */
  consistency: { treeSize: number; proof: Uint8Array[] } | undefined
  /** Version 2: the one multi-leaf inclusion proof of all entries (multiproof.ts). */
  inclusion?: Uint8Array[]
}

/** Where a bundle is built from: a verified state whose log order is the miner's order up to the head. */
export interface BundleSource {
  crypto: CryptoProvider
  state: LedgerState
  /** The tree over the same ids, at least `head.treeSize` leaves. */
  tree: MerkleTree
  head: BlockHead
  headBytes: Uint8Array
  /** Leaf index of an event (default: its position in `state.log`). */
  indexOf?: (idHex: string) => number | undefined
  /** Events whose subject is a label (default: a scan of `state.log`). */
  eventsAbout?: (label: Uint8Array) => EncodedEvent[]
}

/** What a verifier trusts: the miner key (and the genesis id) it got at enrollment, and the last head it holds. */
export interface BundleAnchor {
  minerKey: Uint8Array
  /** Hex id of the fleet's genesis event. */
  genesisId?: string
  /** The newest head the verifier holds. */
  knownHead?: BlockHead
  /** RFC 9162 proof between `knownHead` and the bundle's head (smaller tree → larger). */
  consistencyProof?: readonly Uint8Array[]
}

/** How much of a bundle's signatures its verifier checks itself. */
export interface BundleVerifyOptions {
  /**
   * 'full' (the default; every Node device): every event's signature. 'bundle' (kin-core's small-device tier): the
   * signatures of genesis, authorize, rekey and policy events that `cache` does not hold; certified and revoke
   * events' on the miner's word (module comment). Every rule of every event runs in both.
   */
  tier?: 'full' | 'bundle'
  /** Bundle tier: signatures verified before; the ones this bundle verified are added once the whole bundle verified. */
  cache?: SignatureCache
  /** Bundle tier: this is the device's own bundle (at boot); its signatures are pinned in `cache`. */
  own?: boolean
}

/** What a bundle verification did with the events' signatures. */
export interface BundleSignatures {
  tier: 'full' | 'bundle'
  /** Event signatures checked with Ed25519 here (the head's is always checked, and not counted). */
  verified: number
  /** Genesis, authorize, rekey and policy events whose (id, key) the cache held. */
  cached: number
  /** Events whose signature was taken on the miner's word (bundle tier). */
  trusted: number
}

/** A bundle that verified: its events in a fresh ledger, ready for the access stages. */
export interface VerifiedBundle {
  bundle: ProofBundle
  head: BlockHead
  headId: string
  /** 'same' / 'consistent': checked against `anchor.knownHead`; 'unanchored': no known head was given. */
  anchoring: 'same' | 'consistent' | 'unanchored'
  ledger: Ledger
  state: LedgerState
  /** Seconds between the head's time and `now` (negative when the head claims a later time). */
  headAge: number
  /** What was checked of the events' signatures, and how. */
  signatures: BundleSignatures
}

// ---- codec -------------------------------------------------------------------------------------------------

function fail(field: string, why: string): never {
  throw new DecodeError('DECODE_FIELD', `bundle field "${field}" ${why}`, { detail: { field } })
}

function readUint(v: CborValue | undefined, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_UINT) fail(field, 'must be an unsigned integer')
  return v
}

function readArray(v: CborValue | undefined, field: string, min: number, max: number): CborValue[] {
  if (!Array.isArray(v)) fail(field, 'must be an array')
  if (v.length < min || v.length > max) {
    throw new DecodeError('DECODE_SHAPE', `bundle field "${field}" must have ${min}..${max} items, got ${v.length}`, {
      detail: { field },
    })
  }
  return v
}

function readProof(v: CborValue | undefined, field: string): Uint8Array[] {
  return readArray(v, field, 0, MAX_PROOF_HASHES).map(h => {
    if (!(h instanceof Uint8Array) || h.length !== HASH_BYTES) fail(`${field}[]`, `must be ${HASH_BYTES} bytes`)
    return h
  })
}

/** Canonical bytes of a bundle, in its version's format. */
export function encodeBundle(bundle: ProofBundle): Uint8Array {
  if (bundle.version === COMPACT_BUNDLE_VERSION) {
    if (bundle.inclusion === undefined) throw new TypeError('a version 2 bundle needs its shared "inclusion" proof')
    const items: CborValue[] = [
      bundle.version,
      bundle.headBytes,
      bundle.entries.map(e => e.eventBytes),
      bundle.entries.map(e => e.leafIndex),
      packHashes(bundle.inclusion),
    ]
    if (bundle.consistency !== undefined)
      items.push([bundle.consistency.treeSize, packHashes(bundle.consistency.proof)])
    return encodeCbor(items)
  }
  const items: CborValue[] = [
    bundle.version,
    bundle.headBytes,
    bundle.entries.map(e => [e.eventBytes, e.leafIndex, e.proof]),
  ]
  if (bundle.consistency !== undefined) items.push([bundle.consistency.treeSize, bundle.consistency.proof])
  return encodeCbor(items)
}

function readEventBytes(v: CborValue | undefined, field: string): Uint8Array {
  if (!(v instanceof Uint8Array) || v.length === 0 || v.length > MAX_EVENT_BYTES)
    fail(field, `must be 1..${MAX_EVENT_BYTES} bytes`)
  return v
}

/** Leaf indexes strictly increasing below `treeSize`. */
function readLeafIndex(v: CborValue | undefined, field: string, last: number, treeSize: number): number {
  const leafIndex = readUint(v, field)
  if (leafIndex <= last) fail(field, 'must increase strictly from entry to entry')
  if (leafIndex >= treeSize) fail(field, `must be below the head's tree size ${treeSize}`)
  return leafIndex
}

function decodeCompact(v: CborValue[], head: BlockHead, headBytes: Uint8Array): ProofBundle {
  if (v.length !== 5 && v.length !== 6)
    throw new DecodeError('DECODE_SHAPE', 'a version 2 bundle is an array of 5 or 6 items')
  const events = readArray(v[2], 'events', 1, MAX_BUNDLE_ENTRIES)
  const indexes = readArray(v[3], 'leafIndexes', events.length, events.length)
  let last = -1
  const entries = events.map((raw, i) => {
    const eventBytes = readEventBytes(raw, 'events[]')
    last = readLeafIndex(indexes[i], 'leafIndexes[]', last, head.treeSize)
    return { eventBytes, leafIndex: last, proof: [] as Uint8Array[] }
  })
  const inclusion = readPackedHashes(v[4], 'inclusion', events.length * MAX_PROOF_HASHES)
  let consistency: ProofBundle['consistency']
  if (v.length === 6) {
    const c = readArray(v[5], 'consistency', 2, 2)
    consistency = {
      treeSize: readUint(c[0], 'consistency.treeSize'),
      proof: readPackedHashes(c[1], 'consistency.proof', MAX_PROOF_HASHES),
    }
  }
  return { version: COMPACT_BUNDLE_VERSION, headBytes, head, entries, consistency, inclusion }
}

/** Version, head and items of an untrusted bundle; version 2 is read only when `compact` (UNKNOWN_VERSION otherwise). */
function readBundleHeader(
  bytes: Uint8Array,
  compact: boolean,
): { v: CborValue[]; version: number; head: BlockHead; headBytes: Uint8Array } {
  const v = decodeCbor(bytes, MAX_BUNDLE_BYTES)
  if (!Array.isArray(v) || v.length < 3 || v.length > 6)
    throw new DecodeError('DECODE_SHAPE', 'a bundle is an array of 3 to 6 items')
  const version = readUint(v[0], 'version')
  if (version !== BUNDLE_VERSION && (!compact || version !== COMPACT_BUNDLE_VERSION))
    throw new DecodeError('UNKNOWN_VERSION', `bundle version ${version} is not supported here`)
  if (!(v[1] instanceof Uint8Array)) fail('head', 'must be a byte string')
  return { v, version, head: decodeHead(v[1]), headBytes: v[1] }
}

/**
 * Strict decoding of an untrusted bundle: version 1 or 2, a head that decodes, 1..MAX_BUNDLE_ENTRIES entries with
 * events of 1..MAX_EVENT_BYTES bytes, leaf indexes strictly increasing below the head's tree size, audit paths of at
 * most 64 hashes of 32 bytes (version 2: one shared proof of at most 64 per entry). DecodeError with a code
 * otherwise; no signature or proof is checked here.
 */
export function decodeBundle(bytes: Uint8Array): ProofBundle {
  const { v, version, head, headBytes } = readBundleHeader(bytes, true)
  return version === COMPACT_BUNDLE_VERSION ? decodeCompact(v, head, headBytes) : decodeAuditPaths(v, head, headBytes)
}

/** decodeBundle for version 1 only (kin-core's reader: UNKNOWN_VERSION for version 2). */
export function decodeAuditPathBundle(bytes: Uint8Array): ProofBundle {
  const { v, head, headBytes } = readBundleHeader(bytes, false)
  return decodeAuditPaths(v, head, headBytes)
}

function decodeAuditPaths(v: CborValue[], head: BlockHead, headBytes: Uint8Array): ProofBundle {
  if (v.length !== 3 && v.length !== 4)
    throw new DecodeError('DECODE_SHAPE', 'a version 1 bundle is an array of 3 or 4 items')
  let last = -1
  const entries = readArray(v[2], 'entries', 1, MAX_BUNDLE_ENTRIES).map(raw => {
    const item = readArray(raw, 'entries[]', 3, 3)
    const eventBytes = readEventBytes(item[0], 'entries[].event')
    last = readLeafIndex(item[1], 'entries[].leafIndex', last, head.treeSize)
    return { eventBytes, leafIndex: last, proof: readProof(item[2], 'entries[].proof') }
  })
  let consistency: ProofBundle['consistency']
  if (v.length === 4) {
    const c = readArray(v[3], 'consistency', 2, 2)
    consistency = { treeSize: readUint(c[0], 'consistency.treeSize'), proof: readProof(c[1], 'consistency.proof') }
  }
  return { version: BUNDLE_VERSION, headBytes, head, entries, consistency }
}

// ---- building ----------------------------------------------------------------------------------------------

function incomplete(message: string, detail?: Record<string, unknown>): KinError {
  return new KinError('BUNDLE_INCOMPLETE', message, { detail })
}

/** The lineage labels of `cn`: itself, then each parent CN up to L0. BUNDLE_INCOMPLETE when the state lacks one. */
function lineageLabels(state: LedgerState, cn: string): Uint8Array[] {
  const labels: Uint8Array[] = []
  let current: string | undefined = cn
  while (current !== undefined) {
    const bindings = state.bindingsByCn.get(current)
    if (bindings === undefined || bindings.length === 0)
      throw incomplete(`the ledger holds no binding for ${current}, in the lineage of ${cn}`, { cn: current })
    if (labels.length > 32) throw incomplete(`the lineage of ${cn} is deeper than 32`)
    labels.push(labelFromBase32(bindings[0]!.label))
    current = bindings[0]!.parentCn
  }
  return labels
}

/**
 * The events a bundle for `cn` carries (see the module comment): everything about each lineage member, closed
 * under links. In no particular order.
 */
export function lineageEvents(source: Pick<BundleSource, 'state' | 'eventsAbout'>, cn: string): EncodedEvent[] {
  const state = source.state
  const labels = lineageLabels(state, cn)
  const selected = new Map<string, EncodedEvent>()
  if (source.eventsAbout !== undefined) {
    for (const label of labels) for (const e of source.eventsAbout(label)) selected.set(e.idHex, e)
  } else {
    const wanted = new Set(labels.map(toHex))
    for (const e of state.log) if (wanted.has(toHex(e.event.subject))) selected.set(e.idHex, e)
  }
  const stack = [...selected.values()]
  while (stack.length > 0) {
    const e = stack.pop()!
    for (const link of e.event.links) {
      const hex = toHex(link)
      if (selected.has(hex)) continue
      const linked = state.event(hex)
      if (linked === undefined)
        throw incomplete(`event ${e.idHex.slice(0, 16)}… links to ${hex.slice(0, 16)}…, which the ledger lacks`)
      selected.set(hex, linked)
      stack.push(linked)
    }
  }
  return [...selected.values()]
}

/** The source itself, or the one a miner or replica gives; HEAD_MISSING before their first head. */
export function sourceOf(from: BundleSource | { bundleSource(): BundleSource | undefined }): BundleSource {
  const source = 'bundleSource' in from ? from.bundleSource() : from
  if (source === undefined)
    throw new KinError('HEAD_MISSING', 'no verified head yet: nothing to prove inclusion against')
  return source
}

/**
 * The events a bundle for `cn` carries (lineageEvents), each with its leaf index, in leaf order; BUNDLE_INCOMPLETE
 * when one is not covered by the source's head yet.
 */
export function placeLineage(source: BundleSource, cn: string): Array<{ e: EncodedEvent; leafIndex: number }> {
  const { state, tree, head } = source
  let positions: Map<string, number> | undefined
  const indexOf =
    source.indexOf ??
    ((idHex: string) => {
      if (positions === undefined) {
        positions = new Map()
        state.log.forEach((e, i) => positions!.set(e.idHex, i))
      }
      return positions.get(idHex)
    })
  return lineageEvents(source, cn)
    .map(e => {
      const leafIndex = indexOf(e.idHex)
      if (leafIndex === undefined || leafIndex >= head.treeSize) {
        throw incomplete(`event ${e.idHex.slice(0, 16)}… (${e.event.type}) is not covered by head ${head.height} yet`, {
          id: e.idHex,
        })
      }
      if (!bytesEqual(tree.leafHashAt(leafIndex), idLeafHash(source.crypto, e.id))) {
        throw new KinError(
          'INTERNAL',
          `the bundle source's tree does not hold event ${e.idHex.slice(0, 16)}… at leaf ${leafIndex}`,
        )
      }
      return { e, leafIndex }
    })
    .sort((a, b) => a.leafIndex - b.leafIndex)
}

/** How a bundle is built. */
export interface BuildBundleOptions {
  /** The verifier's tree size: the bundle carries the consistency proof between it and the head's (BUNDLE_KNOWN_SIZE when the source cannot). */
  knownTreeSize?: number
  /** Version 2: one shared multi-leaf inclusion proof instead of an audit path per entry. */
  compact?: boolean
}

/**
 * Builds the proof bundle of `cn` from the miner (its last head), a replica (its last verified head) or any source
 * whose log is in miner order. With `knownTreeSize` (the requester's head's tree size) the bundle also carries the
 * consistency proof between that tree and the head's; a size the source's tree does not reach is BUNDLE_KNOWN_SIZE,
 * never silently left out. BUNDLE_INCOMPLETE when a needed event is missing or not yet covered by the head (seal,
 * then build again).
 */
export function buildBundle(
  from: BundleSource | { bundleSource(): BundleSource | undefined },
  cn: string,
  opts: BuildBundleOptions = {},
): ProofBundle {
  const source = sourceOf(from)
  const { tree, head } = source
  const placed = placeLineage(source, cn)
  const compact = opts.compact === true
  const entries = placed.map(({ e, leafIndex }) => ({
    eventBytes: e.bytes,
    leafIndex,
    proof: compact ? [] : tree.inclusionProof(leafIndex, head.treeSize),
  }))
  const consistency = consistencyFor(tree, head, opts.knownTreeSize)
  if (!compact) return { version: BUNDLE_VERSION, headBytes: source.headBytes, head, entries, consistency }
  const inclusion = multiInclusionProof(
    tree,
    entries.map(e => e.leafIndex),
    head.treeSize,
  )
  return { version: COMPACT_BUNDLE_VERSION, headBytes: source.headBytes, head, entries, consistency, inclusion }
}

/** The consistency proof between a verifier's tree of `k` leaves and the head's; BUNDLE_KNOWN_SIZE when the tree cannot give it. */
function consistencyFor(tree: MerkleTree, head: BlockHead, k: number | undefined): ProofBundle['consistency'] {
  if (k === undefined || k === 0 || k === head.treeSize) return undefined
  if (!Number.isSafeInteger(k) || k < 1 || k > tree.size) {
    throw new KinError(
      'BUNDLE_KNOWN_SIZE',
      `no consistency proof from a tree of ${k} events: this log holds ${tree.size} (a verifier ahead of the miner holds another log)`,
      { detail: { knownTreeSize: k, treeSize: tree.size } },
    )
  }
  return { treeSize: k, proof: tree.consistencyProof(Math.min(k, head.treeSize), Math.max(k, head.treeSize)) }
}

// ---- verifying ---------------------------------------------------------------------------------------------

function verifyBundleHead(crypto: CryptoProvider, bundle: ProofBundle, minerKey: Uint8Array): void {
  if (!verifyHeadSignature(crypto, bundle.head, minerKey)) {
    throw new VerificationError(
      'HEAD_SIGNATURE',
      `the bundle's head (height ${bundle.head.height}) is not signed by the fleet's miner key`,
    )
  }
}

/** The offline rule of the module comment: how the bundle's head relates to the verifier's known head. */
function anchorBundleHead(
  crypto: CryptoProvider,
  bundle: ProofBundle,
  anchor: BundleAnchor,
  id: Uint8Array,
): VerifiedBundle['anchoring'] {
  const known = anchor.knownHead
  if (known === undefined) return 'unanchored'
  const head = bundle.head
  if (bytesEqual(headId(crypto, known), id)) return 'same'
  const proof =
    anchor.consistencyProof ??
    (bundle.consistency !== undefined && bundle.consistency.treeSize === known.treeSize
      ? bundle.consistency.proof
      : undefined)
  const [older, newer] = head.height < known.height ? [head, known] : [known, head]
  const verdict = checkHeadSuccession(crypto, older, newer, proof ?? [])
  if (verdict.ok) return 'consistent'
  const detail = { knownHeight: known.height, bundleHeight: head.height }
  if (proof === undefined && verdict.code === 'HEAD_INCONSISTENT') {
    throw new VerificationError(
      'HEAD_UNPROVEN',
      `the bundle's head (height ${head.height}) differs from the known head (height ${known.height}) and no consistency proof links them`,
      { detail },
    )
  }
  throw new VerificationError(verdict.code, `the bundle's head contradicts the known head: ${verdict.reason}`, {
    detail,
  })
}

function verifyAuditPaths(crypto: CryptoProvider, bundle: ProofBundle): void {
  const { head } = bundle
  bundle.entries.forEach((entry, i) => {
    const id = crypto.sha256(entry.eventBytes)
    if (!verifyInclusion(crypto, id, entry.leafIndex, head.treeSize, entry.proof, head.root)) {
      throw new VerificationError(
        'BUNDLE_INCLUSION',
        `bundle entry ${i} is not proven at leaf ${entry.leafIndex} of the head's tree (RFC 9162 §2.1.3.2)`,
        { detail: { entry: i, leafIndex: entry.leafIndex } },
      )
    }
  })
}

function verifyInclusions(crypto: CryptoProvider, bundle: ProofBundle): void {
  if (bundle.inclusion === undefined) return verifyAuditPaths(crypto, bundle)
  const { head } = bundle
  const leafHashes = bundle.entries.map(e => idLeafHash(crypto, crypto.sha256(e.eventBytes)))
  if (
    !verifyMultiInclusion(
      crypto,
      leafHashes,
      bundle.entries.map(e => e.leafIndex),
      head.treeSize,
      bundle.inclusion,
      head.root,
    )
  ) {
    throw new VerificationError(
      'BUNDLE_INCLUSION',
      `the bundle's shared inclusion proof does not place its ${bundle.entries.length} events at their leaves of the head's tree (RFC 9162 §2.1.3.2)`,
    )
  }
}

// The options come from a host program in plain JavaScript: a misspelt tier must not quietly check less.
function checkVerifyOptions(opts: BundleVerifyOptions): void {
  if (opts.tier !== undefined && opts.tier !== 'full' && opts.tier !== 'bundle')
    throw new RangeError(`"tier" expected 'full' or 'bundle', got ${JSON.stringify(opts.tier)}`)
  const cache = opts.cache as Partial<SignatureCache> | undefined
  if (cache !== undefined && (typeof cache.holds !== 'function' || typeof cache.add !== 'function'))
    throw new TypeError('"cache" expected a SignatureCache')
}

// The events that can grant (keys or actions), whose signatures the bundle tier always checks or finds in its cache:
// all but the two kinds that cannot, so that a kind added later is checked until someone argues otherwise.
function grants(e: EncodedEvent): boolean {
  const type = e.event.type
  return type !== 'certified' && type !== 'revoke'
}

/** Per event, the validation options of a tier, counting what it checked; `commit` fills the cache once all verified. */
function signaturePolicy(opts: BundleVerifyOptions): {
  optionsFor(e: EncodedEvent): ValidateOptions
  signatures: BundleSignatures
  commit(): void
} {
  const tier = opts.tier ?? 'full'
  const signatures: BundleSignatures = { tier, verified: 0, cached: 0, trusted: 0 }
  if (tier === 'full')
    return {
      optionsFor: () => {
        signatures.verified++
        return {}
      },
      signatures,
      commit: () => {},
    }
  const checked: [string, Uint8Array][] = []
  // Validation asks once per event, with the exact key it would verify under; a miss is verified by validation itself.
  const verified: VerifiedSignatures = {
    holds(idHex, ledgerKey) {
      if (opts.cache?.holds(idHex, ledgerKey) === true) {
        signatures.cached++
        return true
      }
      signatures.verified++
      checked.push([idHex, ledgerKey])
      return false
    },
  }
  return {
    signatures,
    optionsFor: e => {
      if (grants(e)) return { verified }
      signatures.trusted++
      return { trustSignatures: true }
    },
    commit: () => {
      for (const [idHex, key] of checked) opts.cache?.add(idHex, key, opts.own === true)
    },
  }
}

/** Checks the genesis (first entry, leaf 0) against the anchor, then ingests every event in leaf order, every rule checked, signatures as the tier says. */
function replayBundle(
  crypto: CryptoProvider,
  bundle: ProofBundle,
  anchor: BundleAnchor,
  opts: BundleVerifyOptions,
): { ledger: Ledger; signatures: BundleSignatures } {
  const first = bundle.entries[0]!
  const genesis = readEvent(crypto, first.eventBytes)
  if (first.leafIndex !== 0 || genesis.event.type !== 'genesis')
    throw incomplete("a bundle starts with the fleet's genesis event at leaf 0")
  if (!bytesEqual(genesis.event.body.minerKey, anchor.minerKey))
    throw new VerificationError('GENESIS_MISMATCH', "the bundle's genesis names another miner key than the verifier's")
  if (anchor.genesisId !== undefined && genesis.idHex !== anchor.genesisId.toLowerCase()) {
    throw new VerificationError(
      'GENESIS_MISMATCH',
      `the bundle belongs to another fleet (genesis ${genesis.idHex.slice(0, 16)}…)`,
    )
  }
  const ledger = new Ledger(crypto)
  const policy = signaturePolicy(opts)
  bundle.entries.forEach((entry, i) => {
    try {
      const e = i === 0 ? genesis : ledger.read(entry.eventBytes)
      ledger.ingest(e, policy.optionsFor(e))
    } catch (err) {
      if (!(err instanceof KinError)) throw err
      if (err.code === 'MISSING_LINK' || err.code === 'NO_GENESIS')
        throw incomplete(`bundle entry ${i} links to an event the bundle lacks: ${err.message}`, { entry: i })
      throw new VerificationError(err.code, `bundle entry ${i} is refused: ${err.message}`, {
        cause: err,
        detail: { entry: i },
      })
    }
  })
  policy.commit()
  return { ledger, signatures: policy.signatures }
}

/**
 * Verifies a proof bundle as a recipe: decode → head signed by `anchor.minerKey` (HEAD_SIGNATURE) → head
 * anchored to `anchor.knownHead` (the offline rule: HEAD_UNPROVEN, HEAD_FORK, HEAD_INCONSISTENT, HEAD_ROLLBACK)
 * → every inclusion proof (BUNDLE_INCLUSION) → genesis equals the anchor's (GENESIS_MISMATCH) → every event
 * ingested in leaf order into a fresh Ledger with full validation (BUNDLE_INCOMPLETE for a missing link, the
 * event's own code otherwise). Returns that ledger's state for the access stages. Throws only KinErrors. `opts.tier`
 * 'bundle' checks fewer signatures (BundleVerifyOptions); the default checks them all.
 */
export function verifyBundle(
  crypto: CryptoProvider,
  bundleBytes: Uint8Array,
  anchor: BundleAnchor,
  now: number,
  opts: BundleVerifyOptions = {},
): VerifiedBundle {
  return verifyWith(crypto, bundleBytes, anchor, now, opts, decodeBundle, verifyInclusions)
}

/**
 * verifyBundle for version 1 bundles only (an audit path per event): what kin-core runs on a small engine, whose
 * heap has no room for the compact reader's code. A version 2 bundle is UNKNOWN_VERSION here.
 */
export function verifyAuditPathBundle(
  crypto: CryptoProvider,
  bundleBytes: Uint8Array,
  anchor: BundleAnchor,
  now: number,
  opts: BundleVerifyOptions = {},
): VerifiedBundle {
  return verifyWith(crypto, bundleBytes, anchor, now, opts, decodeAuditPathBundle, verifyAuditPaths)
}

function verifyWith(
  crypto: CryptoProvider,
  bundleBytes: Uint8Array,
  anchor: BundleAnchor,
  now: number,
  opts: BundleVerifyOptions,
  decode: (bytes: Uint8Array) => ProofBundle,
  checkInclusions: (crypto: CryptoProvider, bundle: ProofBundle) => void,
): VerifiedBundle {
  abytes('anchor.minerKey', anchor.minerKey, 32)
  checkVerifyOptions(opts)
  const bundle = decode(bundleBytes)
  verifyBundleHead(crypto, bundle, anchor.minerKey)
  const id = headId(crypto, bundle.head)
  const anchoring = anchorBundleHead(crypto, bundle, anchor, id)
  checkInclusions(crypto, bundle)
  const { ledger, signatures } = replayBundle(crypto, bundle, anchor, opts)
  return {
    bundle,
    head: bundle.head,
    headId: toHex(id),
    anchoring,
    ledger,
    state: ledger.state,
    headAge: now - bundle.head.time,
    signatures,
  }
}

/**
 * Adds a verified bundle's events to a device's own ledger (kept, unlike the throw-away ledger of verifyBundle):
 * duplicates are skipped, conflicts refused with their codes. Signatures were checked by verifyBundle, so only
 * the rules run again, in this ledger's context.
 */
export async function mergeBundleInto(
  target: Ledger | PersistentLedger,
  verified: VerifiedBundle,
): Promise<{ accepted: EncodedEvent[]; refused: Refusal[]; pending: EncodedEvent[] }> {
  const events = verified.state.log
  if (target instanceof Ledger) return target.ingestMany(events, { trustSignatures: true })
  return target.appendMany(events, { trustSignatures: true })
}
