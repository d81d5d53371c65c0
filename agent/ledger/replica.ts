/** @module A device's replica of the miner's log: its ledger in miner order up to the last verified head, and that head in a sync file. */
import { KinError, VerificationError, type KinErrorCode } from '../errors.ts'
import { decodeCbor, encodeCbor, MAX_UINT } from '../codec/cbor.ts'
import { abytes, bytesEqual, toHex } from '../codec/bytes.ts'
import type { AppendFile, CryptoProvider } from '../ports/platform.ts'
import { readEvent } from './event.ts'
import { checkHeadSuccession, decodeHead, verifyHeadSignature, type BlockHead } from './head.ts'
import {
  MerkleTree,
  consistencyPath,
  emptyRoot,
  idLeafHash,
  largestPowerOfTwoBelow,
  nodeHash,
  type SubtreeSource,
} from './merkle.ts'
import { Ledger, type Refusal } from './ledger.ts'
import type { PersistentLedger } from './persistent.ts'
import type { ValidateOptions } from './validate.ts'
import { decodeSyncResponse, type SyncRequest } from './sync.ts'
import type { BundleSource } from './bundle.ts'
import type { EncodedEvent } from './types.ts'
import { precheckSignatures } from './precheck.ts'
import type { SharedEvents } from './shared-events.ts'

/*
 * The invariant. The first `head.treeSize` records of the device's ledger file are the miner's log in the miner's
 * order, and `head` is the last head this device verified (kept in the sync file). Events the device holds beyond
 * that prefix (its own, not yet covered by a head) follow it. So every device synced to one head holds the same
 * bytes for the events that head covers, and the miner-ordered ids need no file of their own: they are the
 * ledger's first treeSize ids, checked against the head's root on every open.
 *
 * Adopting a newer head: its events are checked against its root first; then the ledger file gets them in miner
 * order, by appending when the device's uncovered tail agrees with the miner's order, by an atomic rewrite
 * (covered prefix, the miner's new events, then the device's remaining local events) when it does not; only then
 * is the sync file replaced. A crash in between leaves a ledger whose old prefix still matches the old head.
 *
 * Sync file: deterministic CBOR `[1, headBytes, confirmedAt]`, replaced atomically (AppendFile.replace);
 * confirmedAt is when this device last verified that head.
 */

/** Version of the sync file. */
export const SYNC_FILE_VERSION = 1

/** What `applyHead` did. */
export interface HeadOutcome {
  /**
   * unchanged: the head it holds; stale: an older head consistent with it; advanced: adopted (its events were
   * already in the ledger, in order); need-sync: newer, but the ledger lacks its events: send `syncRequest()`.
   */
  status: 'unchanged' | 'stale' | 'advanced' | 'need-sync'
  /** The head held afterwards. */
  head: BlockHead | undefined
}

/** What `applySyncResponse` did. */
export interface SyncOutcome {
  /**
   * advanced: a newer head adopted; partial: events staged, more rounds needed; unchanged / stale: nothing new;
   * need-sync: the response does not fit what this replica holds (a stale answer or a gap): ask again.
   */
  status: 'advanced' | 'partial' | 'unchanged' | 'stale' | 'need-sync'
  head: BlockHead | undefined
  /** Events of the miner's log newly written to the ledger file. */
  added: number
  /** Local events dropped because the miner's log refuses them (e.g. a conflicting authorize that lost). */
  dropped: Refusal[]
  /** Whether the ledger file was rewritten into miner order. */
  rewritten: boolean
  /** Whether the device should send `syncRequest()` again. */
  more: boolean
}

interface HeldHead {
  head: BlockHead
  bytes: Uint8Array
  id: Uint8Array
  confirmedAt: number
}

/** The covered tree extended by further leaves (in memory only): roots and proofs over both, for checks before adopting. */
class ExtendedTree implements SubtreeSource {
  private readonly crypto: CryptoProvider
  private readonly tree: MerkleTree
  private readonly extra: Uint8Array[]

  constructor(crypto: CryptoProvider, tree: MerkleTree, extraLeafHashes: Uint8Array[]) {
    this.crypto = crypto
    this.tree = tree
    this.extra = extraLeafHashes
  }

  get size(): number {
    return this.tree.size + this.extra.length
  }

  subtreeHash(start: number, end: number): Uint8Array {
    if (end <= this.tree.size) return this.tree.subtreeHash(start, end)
    if (end - start === 1) return this.extra[start - this.tree.size]!
    const k = largestPowerOfTwoBelow(end - start)
    return nodeHash(this.crypto, this.subtreeHash(start, start + k), this.subtreeHash(start + k, end))
  }

  root(size: number): Uint8Array {
    return size === 0 ? emptyRoot(this.crypto) : this.subtreeHash(0, size)
  }
}

type Judgement = 'same' | 'stale' | 'newer' | 'unproven'

function isTime(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_UINT
}

function checkNow(now: unknown): void {
  if (!isTime(now)) throw new RangeError(`"now" expected an integer in [0, ${MAX_UINT}], got ${String(now)}`)
}

function damaged(message: string, cause?: unknown): KinError {
  return new KinError('STORAGE_DAMAGED', `sync file: ${message}`, { cause })
}

/** Canonical bytes of the sync file. */
export function encodeSyncFile(headBytes: Uint8Array, confirmedAt: number): Uint8Array {
  return encodeCbor([SYNC_FILE_VERSION, headBytes, confirmedAt])
}

function decodeSyncFile(crypto: CryptoProvider, bytes: Uint8Array): HeldHead {
  let v
  try {
    v = decodeCbor(bytes, 1024)
  } catch (err) {
    throw damaged('not one canonical CBOR item', err)
  }
  if (
    !Array.isArray(v) ||
    v.length !== 3 ||
    v[0] !== SYNC_FILE_VERSION ||
    !(v[1] instanceof Uint8Array) ||
    !isTime(v[2])
  ) {
    throw damaged(`expected [${SYNC_FILE_VERSION}, head, confirmedAt]`)
  }
  let head: BlockHead
  try {
    head = decodeHead(v[1])
  } catch (err) {
    throw damaged('its head does not decode', err)
  }
  return { head, bytes: v[1], id: crypto.sha256(v[1]), confirmedAt: v[2] as number }
}

function alarm(code: KinErrorCode, reason: string, held: HeldHead, offered: Uint8Array): VerificationError {
  // Both signed heads travel with the alarm: together they are the evidence of a forking miner.
  return new VerificationError(code, `forking or rolled-back miner: ${reason}`, {
    detail: { heldHead: toHex(held.bytes), offeredHead: toHex(offered) },
  })
}

/**
 * A device's side of sync. Wraps the device's PersistentLedger: while a Replica is open, the device appends its
 * own events through `appendLocal` (serialized with sync, so a rewrite never races an append).
 */
export class Replica {
  readonly crypto: CryptoProvider
  readonly ledger: PersistentLedger
  private readonly syncFile: AppendFile
  /** RFC 9162 tree over the covered prefix of the ledger (exactly `held.head.treeSize` leaves). */
  private readonly tree: MerkleTree
  private held: HeldHead | undefined
  /** Miner-ordered events after the covered prefix, received but not yet covered by a verified head. */
  private staged: EncodedEvent[] = []
  private queue: Promise<unknown> = Promise.resolve()
  /** The last head whose signature this replica checked: its bytes, the key it was checked with, decoded, its id. */
  private lastVerified: { bytes: Uint8Array; minerKey: Uint8Array; head: BlockHead; id: Uint8Array } | undefined
  private readonly events: SharedEvents | undefined

  private constructor(
    crypto: CryptoProvider,
    ledger: PersistentLedger,
    syncFile: AppendFile,
    tree: MerkleTree,
    held: HeldHead | undefined,
    events: SharedEvents | undefined,
  ) {
    this.crypto = crypto
    this.ledger = ledger
    this.syncFile = syncFile
    this.tree = tree
    this.held = held
    this.events = events
  }

  /**
   * Reads the sync file and checks the invariant: the ledger's first treeSize ids hash to the held head's root
   * (HEAD_ROOT_MISMATCH otherwise: the ledger file lost or reordered covered events; move the sync file away to
   * start over from the miner). With `minerKey`, also checks the held head's signature (HEAD_SIGNATURE). With
   * `events`, the events of sync responses are decoded once per process (shared-events.ts), still validated here.
   */
  static async open(
    crypto: CryptoProvider,
    ledger: PersistentLedger,
    syncFile: AppendFile,
    opts: { minerKey?: Uint8Array; events?: SharedEvents } = {},
  ): Promise<Replica> {
    const raw = await syncFile.read()
    const held = raw.length === 0 ? undefined : decodeSyncFile(crypto, raw)
    const log = ledger.ledger.state.log
    const covered = held === undefined ? 0 : held.head.treeSize
    if (log.length < covered) {
      throw new VerificationError(
        'HEAD_ROOT_MISMATCH',
        `the sync file's head covers ${covered} events but the ledger file holds ${log.length}`,
      )
    }
    const tree = new MerkleTree(crypto)
    for (let i = 0; i < covered; i++) tree.append(log[i]!.id)
    if (held !== undefined) {
      if (!bytesEqual(tree.root(), held.head.root)) {
        throw new VerificationError(
          'HEAD_ROOT_MISMATCH',
          `the ledger file's first ${covered} events do not hash to the root of the held head ${held.head.height}`,
        )
      }
      if (opts.minerKey !== undefined && !verifyHeadSignature(crypto, held.head, opts.minerKey)) {
        throw new VerificationError('HEAD_SIGNATURE', 'the head in the sync file is not signed by the miner key')
      }
    }
    return new Replica(crypto, ledger, syncFile, tree, held, opts.events)
  }

  private serialize<T>(job: () => Promise<T>): Promise<T> {
    const run = this.queue.then(job, job)
    this.queue = run.catch(() => undefined)
    return run
  }

  /** The last verified head. */
  get head(): BlockHead | undefined {
    return this.held?.head
  }

  /** Canonical bytes of the last verified head. */
  get headBytes(): Uint8Array | undefined {
    return this.held?.bytes
  }

  /** Hex id of the last verified head. */
  get headId(): string | undefined {
    return this.held === undefined ? undefined : toHex(this.held.id)
  }

  /** Number of ledger events covered by the last verified head (the miner-ordered prefix). */
  get coveredSize(): number {
    return this.tree.size
  }

  /**
   * When (seconds) this device last verified that its head is the miner's latest: the ledger's freshness. Hearing
   * the same head again updates it in memory; it is persisted with each adopted head (no write per heartbeat).
   */
  get confirmedAt(): number | undefined {
    return this.held?.confirmedAt
  }

  /** The request to send the miner: events from where the replica stands, a proof from the head it holds. */
  syncRequest(): SyncRequest {
    return {
      fromTreeSize: this.tree.size + this.staged.length,
      fromHeadId: this.held === undefined ? undefined : Uint8Array.from(this.held.id),
    }
  }

  /** Events in the local ledger not yet covered by a head: to resubmit to the miner after a reconnect. */
  pendingOwnEvents(): EncodedEvent[] {
    return this.ledger.ledger.state.log.slice(this.tree.size)
  }

  /** Appends this device's own events (serialized with sync); same result as PersistentLedger.appendMany. */
  appendLocal(
    inputs: Array<Uint8Array | EncodedEvent>,
    opts?: ValidateOptions,
  ): Promise<{ accepted: EncodedEvent[]; refused: Refusal[]; pending: EncodedEvent[] }> {
    return this.serialize(() => this.ledger.appendMany(inputs, opts))
  }

  /**
   * The verdict on a signed head over no more events than this replica verified: it must hash to the replica's own
   * tree at its size. HEAD_ROOT_MISMATCH (the miner signed two different logs) when it does not; undefined when it
   * does or when the head reaches past what this replica holds (nothing to compare yet).
   */
  rootContradiction(head: BlockHead): KinError | undefined {
    const source = this.bundleSource()
    if (source === undefined || head.treeSize > this.coveredSize) return undefined
    if (bytesEqual(source.tree.root(head.treeSize), head.root)) return undefined
    return new KinError(
      'HEAD_ROOT_MISMATCH',
      `head ${head.height} signs a root over ${head.treeSize} events that is not the root of the log this device verified at that size: the miner signed two different logs`,
    )
  }

  /**
   * The verdict on a head that needed a sync, once an in-order answer to a request sent after it left this replica
   * below it: the miner went back on a head it published (HEAD_ROLLBACK).
   */
  rollbackOf(head: BlockHead): KinError {
    return new KinError(
      'HEAD_ROLLBACK',
      `the miner signed head ${head.height} over ${head.treeSize} events, but its latest head, sent after that one, is ${this.head?.height ?? 'none'} over ${this.coveredSize}: it went back on a head it published`,
    )
  }

  /** What `buildBundle` needs to build bundles from the covered prefix; undefined before the first head. */
  bundleSource(): BundleSource | undefined {
    const held = this.held
    if (held === undefined) return undefined
    return {
      crypto: this.crypto,
      state: this.ledger.ledger.state,
      tree: this.tree,
      head: held.head,
      headBytes: held.bytes,
    }
  }

  private checkMinerKey(minerKey: Uint8Array): void {
    abytes('minerKey', minerKey, 32)
    const genesis = this.ledger.ledger.state.genesis
    if (genesis !== undefined && !bytesEqual(genesis.body.minerKey, minerKey)) {
      throw new KinError('GENESIS_MISMATCH', "the miner key given is not the one this ledger's genesis names")
    }
  }

  private readHead(headBytes: Uint8Array, minerKey: Uint8Array): { head: BlockHead; id: Uint8Array } {
    // A follower meets each new head twice (announced, then in the sync response it asks for), and the held head on
    // every heartbeat: the very bytes this replica last verified under this key are not verified again.
    const last = this.lastVerified
    if (last !== undefined && bytesEqual(last.bytes, headBytes) && bytesEqual(last.minerKey, minerKey))
      return { head: last.head, id: last.id }
    const head = decodeHead(headBytes)
    const id = this.crypto.sha256(headBytes)
    const known = this.events?.verified
    // A head another replica of this process verified under this key (shared-events.ts) is not verified again.
    const pair = `head/${toHex(id)}`
    if (known?.holds(pair, minerKey) !== true) {
      if (!verifyHeadSignature(this.crypto, head, minerKey)) {
        throw new VerificationError('HEAD_SIGNATURE', `head ${head.height} is not signed by the fleet's miner key`)
      }
      known?.add(pair, Uint8Array.from(minerKey))
    }
    this.lastVerified = { bytes: Uint8Array.from(headBytes), minerKey: Uint8Array.from(minerKey), head, id }
    return { head, id }
  }

  /**
   * How `head` relates to the held one. Throws HEAD_FORK / HEAD_INCONSISTENT / HEAD_ROLLBACK when the miner is
   * shown to contradict itself; 'unproven' when no proof links them (the device must ask, not alarm).
   * `proof` comes from the miner; `local` extends the covered tree by the device's own uncovered events, whose
   * order may differ from the miner's, so a proof from it that fails proves nothing.
   */
  private judge(
    head: BlockHead,
    id: Uint8Array,
    headBytes: Uint8Array,
    proof: { from: number; hashes: Uint8Array[] } | undefined,
    local: ExtendedTree | undefined,
  ): Judgement {
    const held = this.held
    if (held === undefined) return 'newer'
    if (bytesEqual(id, held.id)) return 'same'
    if (head.height < held.head.height) {
      const ours = head.treeSize <= this.tree.size ? this.tree.consistencyProof(head.treeSize, this.tree.size) : []
      const v = checkHeadSuccession(this.crypto, head, held.head, ours)
      if (v.ok) return 'stale'
      throw alarm(v.code, v.reason, held, headBytes)
    }
    let hashes: Uint8Array[] | undefined
    let fromMiner = false
    if (proof !== undefined && proof.from === held.head.treeSize) {
      hashes = proof.hashes
      fromMiner = true
    } else if (local !== undefined && head.treeSize >= held.head.treeSize && local.size >= head.treeSize) {
      hashes = consistencyPath(local, held.head.treeSize, head.treeSize)
    }
    const v = checkHeadSuccession(this.crypto, held.head, head, hashes ?? [])
    if (v.ok) return 'newer'
    if (v.code === 'HEAD_INCONSISTENT' && !fromMiner) return 'unproven'
    throw alarm(v.code, v.reason, held, headBytes)
  }

  private localExtension(): ExtendedTree {
    const log = this.ledger.ledger.state.log
    const extra: Uint8Array[] = []
    for (let i = this.tree.size; i < log.length; i++) extra.push(idLeafHash(this.crypto, log[i]!.id))
    return new ExtendedTree(this.crypto, this.tree, extra)
  }

  /**
   * A head on its own (the retained head topic): verified with the miner key (HEAD_SIGNATURE), judged against the
   * held head (HEAD_FORK, HEAD_INCONSISTENT, HEAD_ROLLBACK: the old head is kept), and adopted at once when the
   * ledger already holds its events in its order; otherwise 'need-sync'.
   */
  applyHead(headBytes: Uint8Array, minerKey: Uint8Array, now: number): Promise<HeadOutcome> {
    return this.serialize(async () => {
      this.checkMinerKey(minerKey)
      checkNow(now)
      abytes('headBytes', headBytes)
      const { head, id } = this.readHead(headBytes, minerKey)
      const local = this.localExtension()
      const verdict = this.judge(head, id, headBytes, undefined, local)
      if (verdict === 'same') {
        this.held!.confirmedAt = Math.max(this.held!.confirmedAt, now)
        return { status: 'unchanged', head: this.head }
      }
      if (verdict === 'stale') return { status: 'stale', head: this.head }
      if (verdict === 'unproven' || local.size < head.treeSize || !bytesEqual(local.root(head.treeSize), head.root)) {
        return { status: 'need-sync', head: this.head }
      }
      const c = this.tree.size
      const covered = this.ledger.ledger.state.log.slice(c, head.treeSize)
      this.checkGenesis(c, covered, minerKey)
      await this.syncFile.replace(encodeSyncFile(headBytes, now))
      this.cover(covered, { head, bytes: Uint8Array.from(headBytes), id, confirmedAt: now })
      return { status: 'advanced', head }
    })
  }

  /**
   * A sync response (or the miner's announcement on the events topic): head verified and judged as in
   * `applyHead` (the old head is kept on any refusal), events staged in miner order, and once they reach the
   * head's tree size, checked against its root (HEAD_ROOT_MISMATCH), written to the ledger in miner order and the
   * head persisted. DecodeError for bytes that do not decode, SYNC_MISMATCH for events that contradict the covered
   * prefix or that this ledger refuses although the miner accepted them.
   */
  applySyncResponse(bytes: Uint8Array, minerKey: Uint8Array, now: number): Promise<SyncOutcome> {
    return this.serialize(async () => {
      this.checkMinerKey(minerKey)
      checkNow(now)
      const r = decodeSyncResponse(bytes)
      const { head, id } = this.readHead(r.headBytes, minerKey)
      const quiet = (status: SyncOutcome['status'], more: boolean): SyncOutcome => ({
        status,
        head: this.head,
        added: 0,
        dropped: [],
        rewritten: false,
        more,
      })
      const verdict = this.judge(head, id, r.headBytes, { from: r.proofFrom, hashes: r.consistencyProof }, undefined)
      if (verdict === 'same') {
        this.held!.confirmedAt = Math.max(this.held!.confirmedAt, now)
        return quiet('unchanged', false)
      }
      if (verdict === 'stale') return quiet('stale', false)
      if (verdict === 'unproven') return quiet('need-sync', true)
      const shared = this.events
      const events = r.events.map(b => (shared === undefined ? readEvent(this.crypto, b) : shared.read(this.crypto, b)))
      if (!this.stage(r.from, events)) return quiet('need-sync', true)
      if (this.tree.size + this.staged.length < head.treeSize) return quiet('partial', true)
      return this.finalize(head, r.headBytes, id, minerKey, now)
    })
  }

  /** Adds miner-ordered events at log index `from` to the staged run; false when they leave a gap. */
  private stage(from: number, events: EncodedEvent[]): boolean {
    const c = this.tree.size
    if (from > c + this.staged.length) return false
    const log = this.ledger.ledger.state.log
    for (let i = 0; i < events.length && from + i < c; i++) {
      if (log[from + i]!.idHex !== events[i]!.idHex) {
        throw new VerificationError(
          'SYNC_MISMATCH',
          `the response's event at leaf ${from + i} is not the one the verified head covers`,
          { detail: { leaf: from + i } },
        )
      }
    }
    for (let i = 0; i < events.length; i++) {
      const k = from + i - c
      if (k < 0) continue
      const e = events[i]!
      if (k < this.staged.length) {
        // A later response wins over an earlier one: nothing staged is trusted before the root check.
        if (this.staged[k]!.idHex !== e.idHex) {
          this.staged.length = k
          this.staged.push(e)
        }
      } else {
        this.staged.push(e)
      }
    }
    return true
  }

  private checkGenesis(c: number, fresh: EncodedEvent[], minerKey: Uint8Array): void {
    if (c > 0 || fresh.length === 0) return
    const g = fresh[0]!.event
    if (g.type !== 'genesis' || !bytesEqual(g.body.minerKey, minerKey)) {
      throw new VerificationError(
        'GENESIS_MISMATCH',
        "the miner's log does not start with a genesis naming this miner key",
      )
    }
  }

  private async finalize(
    head: BlockHead,
    headBytes: Uint8Array,
    id: Uint8Array,
    minerKey: Uint8Array,
    now: number,
  ): Promise<SyncOutcome> {
    const c = this.tree.size
    const n = head.treeSize
    const fresh = this.staged.slice(0, n - c)
    const extended = new ExtendedTree(
      this.crypto,
      this.tree,
      fresh.map(e => idLeafHash(this.crypto, e.id)),
    )
    if (!bytesEqual(extended.root(n), head.root)) {
      this.staged = []
      throw new VerificationError(
        'HEAD_ROOT_MISMATCH',
        `the events received for head ${head.height} do not hash to its root; the head is refused and the old one kept`,
        {
          detail: { height: head.height, treeSize: n },
        },
      )
    }
    this.checkGenesis(c, fresh, minerKey)
    const order = await this.adoptOrder(c, fresh)
    await this.syncFile.replace(encodeSyncFile(headBytes, now))
    this.cover(fresh, { head, bytes: Uint8Array.from(headBytes), id, confirmedAt: now })
    return {
      status: 'advanced',
      head,
      added: order.added,
      dropped: order.dropped,
      rewritten: order.rewritten,
      more: this.staged.length > 0,
    }
  }

  /** Extends the covered prefix by `events` (already in the ledger, in this order) under the new head. */
  private cover(events: EncodedEvent[], held: HeldHead): void {
    for (const e of events) this.tree.append(e.id)
    const k = events.length
    const agrees = this.staged.slice(0, k).every((e, i) => e.idHex === events[i]!.idHex)
    this.staged = agrees ? this.staged.slice(k) : []
    this.held = held
  }

  private prefixMatches(c: number, fresh: EncodedEvent[]): boolean {
    const log = this.ledger.ledger.state.log
    return fresh.every((e, i) => log[c + i]?.idHex === e.idHex)
  }

  /** Makes the ledger file's records c … c + fresh.length the miner's new events, appending or rewriting. */
  private async adoptOrder(
    c: number,
    fresh: EncodedEvent[],
  ): Promise<{ added: number; dropped: Refusal[]; rewritten: boolean }> {
    const uncovered = this.ledger.ledger.state.log.slice(c)
    let k = 0
    while (k < uncovered.length && k < fresh.length && uncovered[k]!.idHex === fresh[k]!.idHex) k++
    if (k === uncovered.length || k === fresh.length) {
      const added = fresh.length - k
      if (added > 0) {
        // Signatures checked on every core first (precheck.ts); appendMany verifies whatever that did not cover.
        const incoming = fresh.slice(k)
        await this.ledger.appendMany(incoming, {
          verified: await precheckSignatures(
            this.crypto,
            this.ledger.ledger.state,
            incoming,
            undefined,
            this.events?.verified,
          ),
        })
      }
      if (this.prefixMatches(c, fresh)) return { added, dropped: [], rewritten: false }
    }
    const state = this.ledger.ledger.state
    const before = new Set(state.log.map(e => e.idHex))
    // The miner's events this ledger lacks: their signatures checked on every core first, as on the append path;
    // validation in the scratch ledger verifies whatever that did not cover.
    const prechecked = await precheckSignatures(
      this.crypto,
      state,
      fresh.filter(e => !before.has(e.idHex)),
      undefined,
      this.events?.verified,
    )
    let dropped: Refusal[] = []
    await this.ledger.rewrite(
      log => {
        const scratch = new Ledger(this.crypto)
        for (let i = 0; i < c; i++) scratch.ingest(log[i]!, { trustSignatures: true })
        // Events already in this ledger had their signatures checked when they entered it.
        const verified = new Set(log.map(e => e.idHex))
        fresh.forEach((e, i) => {
          try {
            scratch.ingest(e, { trustSignatures: verified.has(e.idHex), verified: prechecked })
          } catch (err) {
            if (!(err instanceof KinError)) throw err
            throw new VerificationError(
              'SYNC_MISMATCH',
              `the miner's event at leaf ${c + i} is refused by this ledger: ${err.code}: ${err.message}`,
              { cause: err, detail: { leaf: c + i, code: err.code } },
            )
          }
        })
        const covered = new Set(fresh.map(e => e.idHex))
        const rest = log.slice(c).filter(e => !covered.has(e.idHex))
        const kept = scratch.ingestMany(rest, { trustSignatures: true })
        dropped = kept.refused.concat(
          kept.pending.map(e => ({
            idHex: e.idHex,
            code: 'MISSING_LINK',
            message: "it builds on a local event the miner's log refused",
          })),
        )
        return scratch.state.log
      },
      { trustSignatures: true },
    )
    return { added: fresh.filter(e => !before.has(e.idHex)).length, dropped, rewritten: true }
  }

  /** Waits for pending work and closes the sync file (the ledger stays open: its owner closes it). */
  close(): Promise<void> {
    return this.serialize(() => this.syncFile.close())
  }
}
