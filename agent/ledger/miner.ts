/** @module L0's miner: its ledger file in log order, an RFC 9162 tree over the event ids, and signed heads kept in a heads file. */
import { KinError, VerificationError } from '../errors.ts'
import { MAX_UINT } from '../codec/cbor.ts'
import { abytes, bytesEqual, concatBytes, toHex } from '../codec/bytes.ts'
import type { AppendFile, CryptoProvider } from '../ports/platform.ts'
import { readEvent } from './event.ts'
import {
  decodeHead,
  encodeHead,
  genesisPrevHeadId,
  headId,
  signHead,
  verifyHeadSignature,
  type BlockHead,
} from './head.ts'
import { MerkleTree } from './merkle.ts'
import type { PersistentLedger } from './persistent.ts'
import type { Refusal } from './ledger.ts'
import { LedgerStore } from './store.ts'
import type { EncodedEvent } from './types.ts'
import type { BundleSource } from './bundle.ts'
import { anyOf, keyBoundBy, precheckSignatures, type VerifiedSignatureSet } from './precheck.ts'

/*
 * The heads file. A raw head `[height, prevHeadId, time, treeSize, root, signature]` does not pass the ledger
 * store's framing rules (store.ts F2: a record's second item must be an unsigned integer and the record must
 * hold an array), so each head is written inside a three-item envelope `[1, 0, head]`: version 1, record kind 0
 * (a signed head), then the head itself as a CBOR array. The envelope satisfies F1–F3 (the head array has a byte
 * string second, so it never looks like an envelope), so the same LedgerStore frames the heads file with the same
 * torn-tail and damage discipline as the ledger: a head cut by a crash is dropped on reopen, a damaged one is
 * reported with its offset. In deterministic CBOR the envelope is the bytes 0x83 0x01 0x00 followed by the
 * encoded head, so a record's head bytes are a plain suffix.
 */

/** The bytes in front of every head in the heads file: array(3), version 1, kind 0. */
export const HEADS_RECORD_PREFIX: Uint8Array = new Uint8Array([0x83, 0x01, 0x00])

/** One heads-file record for `head`: HEADS_RECORD_PREFIX ‖ encodeHead(head). */
export function encodeHeadsRecord(head: BlockHead): Uint8Array {
  return concatBytes(HEADS_RECORD_PREFIX, encodeHead(head))
}

/** The head in one heads-file record: STORAGE_DAMAGED when it is not `[1, 0, …]`, a DecodeError when the head does not decode. */
export function decodeHeadsRecord(record: Uint8Array): BlockHead {
  abytes('record', record)
  for (let i = 0; i < HEADS_RECORD_PREFIX.length; i++) {
    if (record[i] !== HEADS_RECORD_PREFIX[i]) {
      throw new KinError(
        'STORAGE_DAMAGED',
        'a heads-file record must start with [1, 0, …] (version 1, kind 0: a signed head)',
      )
    }
  }
  return decodeHead(record.subarray(HEADS_RECORD_PREFIX.length))
}

/** What one `submit` did with its events. */
export interface SubmitResult {
  /** Newly appended to the log, in log order (each now has an index: `indexOf(idHex)`). */
  accepted: EncodedEvent[]
  /** Ids (hex) of events that were already in the log: resubmissions, harmless. */
  known: string[]
  /** Refused with a code: undecodable bytes (idHex undefined), failed validation, GENESIS_MISMATCH. */
  refused: Refusal[]
  /** Events whose links are in neither the log nor the batch: the submitter should send the missing ones first. */
  pending: EncodedEvent[]
}

/** Options of `Miner.open`. */
export interface MinerOptions {
  /** Told when a torn tail (a head cut by a crash) was dropped from the heads file. */
  onTornHead?: (offset: number, dropped: number) => void
  /**
   * The fleet's admission rule, run on each decoded event before any signature work: a refusal keeps it out of
   * the log (L0 refuses certified events for certificates its CA never issued, CERTIFIED_NOT_ISSUED).
   */
  admit?: (e: EncodedEvent) => Refusal | undefined
  /**
   * Whether claimed times must lie within MAX_CLOCK_SKEW of `now` and not before the last head less the skew
   * (TIME_TOO_OLD, TIME_BEFORE_HEAD; default true: the miner is the fleet's timestamp authority). False only where a
   * recorded history is replayed into a fresh miner in one go (tests, benchmarks, vectors), never on L0.
   */
  boundTimes?: boolean
}

interface Submission {
  events: EncodedEvent[]
  early: Refusal[]
  /** Signatures of `events` verified ahead of the flush (precheck.ts). */
  verified: VerifiedSignatureSet
  now: number
  resolve: (result: SubmitResult) => void
  reject: (err: unknown) => void
}

interface SignedHead {
  head: BlockHead
  bytes: Uint8Array
  id: Uint8Array
  idHex: string
}

function checkTime(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_UINT) {
    throw new RangeError(`"${name}" expected an integer in [0, ${MAX_UINT}], got ${String(value)}`)
  }
  return value
}

function inconsistent(message: string, detail?: Record<string, unknown>): VerificationError {
  return new VerificationError('HEAD_INCONSISTENT', message, { detail })
}

/**
 * Checks the heads read back from the heads file against the tree rebuilt from the ledger: heights 0, 1, 2…,
 * each naming its predecessor's id, time and tree size never going back, every root equal to the tree's root at
 * that size, and the last head signed by the miner key. The chain of prevHeadIds ties every earlier head to the
 * last signature, so one signature check covers the file.
 */
function checkHeadChain(crypto: CryptoProvider, heads: SignedHead[], tree: MerkleTree, minerKey: Uint8Array): void {
  for (let i = 0; i < heads.length; i++) {
    const { head } = heads[i]!
    if (head.height !== i) throw inconsistent(`heads file: head ${i} claims height ${head.height}`, { height: i })
    if (i > 0) {
      const prev = heads[i - 1]!
      if (!bytesEqual(head.prevHeadId, prev.id))
        throw inconsistent(`heads file: head ${i} does not name head ${i - 1} as its predecessor`, { height: i })
      if (head.time < prev.head.time) throw inconsistent(`heads file: head ${i} goes back in time`, { height: i })
      if (head.treeSize < prev.head.treeSize)
        throw inconsistent(`heads file: head ${i} covers fewer events than head ${i - 1}`, { height: i })
    }
    if (head.treeSize > tree.size) {
      throw inconsistent(
        `head ${i} covers ${head.treeSize} events but the ledger file holds ${tree.size}: the ledger lost events the miner signed`,
        { height: i },
      )
    }
    if (!bytesEqual(head.root, tree.root(head.treeSize))) {
      throw inconsistent(
        `head ${i} does not match the ledger file's first ${head.treeSize} events: the ledger file was changed or reordered`,
        { height: i },
      )
    }
  }
  const last = heads[heads.length - 1]
  if (last !== undefined && !verifyHeadSignature(crypto, last.head, minerKey)) {
    throw new VerificationError(
      'HEAD_SIGNATURE',
      `the last head in the heads file (height ${last.head.height}) is not signed by this miner key`,
    )
  }
}

/**
 * The miner on L0. Its PersistentLedger is the log: the order of the ledger file is the order of the Merkle tree's
 * leaves, and the Miner is the only writer of that ledger (appends elsewhere would break the tree; they are
 * detected and refused with INTERNAL). Submissions that arrive while a write is in flight are coalesced into the
 * next write (one fsync for all of them). `seal` signs a head over everything durable, never two inconsistent
 * heads: the heads file is checked against the ledger on every open.
 */
export class Miner {
  readonly crypto: CryptoProvider
  readonly ledger: PersistentLedger
  /** The miner's Ed25519 public key (genesis.body.minerKey). */
  readonly minerKey: Uint8Array
  private readonly secretKey: Uint8Array
  private readonly tree: MerkleTree
  private readonly headsStore: LedgerStore
  private readonly heads: SignedHead[]
  private readonly headsById: Map<string, SignedHead> = new Map()
  private readonly positions: Map<string, number> = new Map()
  private readonly bySubject: Map<string, number[]> = new Map()
  private waiting: Submission[] = []
  // Submissions enter `waiting` in the order of their submit calls, each once its signature checks are done.
  private intake: Promise<void> = Promise.resolve()
  // Keys bound by events submitted but not yet flushed (event id → key, with a count of submissions holding it),
  // so a child submitted right after its parent has its signature checked ahead too.
  private readonly queuedKeys = new Map<string, { key: Uint8Array; holders: number }>()
  private flushQueued = false
  private readonly boundTimes: boolean
  private queue: Promise<unknown> = Promise.resolve()
  private failure: KinError | undefined = undefined
  private admit: MinerOptions['admit'] = undefined

  private constructor(
    crypto: CryptoProvider,
    ledger: PersistentLedger,
    headsStore: LedgerStore,
    heads: SignedHead[],
    tree: MerkleTree,
    secretKey: Uint8Array,
    minerKey: Uint8Array,
    boundTimes: boolean,
  ) {
    this.crypto = crypto
    this.boundTimes = boundTimes
    this.ledger = ledger
    this.headsStore = headsStore
    this.heads = heads
    this.tree = tree
    this.secretKey = secretKey
    this.minerKey = minerKey
    for (const h of heads) this.headsById.set(h.idHex, h)
    ledger.ledger.state.log.forEach((e, i) => this.index(e, i))
  }

  /**
   * Rebuilds the tree over the ledger's event ids in file order, reads the heads file, and refuses to start
   * (HEAD_INCONSISTENT, HEAD_SIGNATURE) when the heads do not match the ledger: a miner that signed head H must
   * never sign a head inconsistent with H, also after a restart. GENESIS_MISMATCH when the ledger's genesis names
   * another miner key; STORAGE_DAMAGED for a damaged heads file.
   */
  static async open(
    crypto: CryptoProvider,
    ledger: PersistentLedger,
    headsFile: AppendFile,
    minerSecretKey: Uint8Array,
    opts: MinerOptions = {},
  ): Promise<Miner> {
    abytes('minerSecretKey', minerSecretKey, 32)
    const minerKey = crypto.ed25519PublicKey(minerSecretKey)
    const genesis = ledger.ledger.state.genesis
    if (genesis !== undefined && !bytesEqual(genesis.body.minerKey, minerKey)) {
      throw new KinError(
        'GENESIS_MISMATCH',
        "the ledger's genesis names another miner key than the one this miner signs with",
      )
    }
    const tree = new MerkleTree(crypto)
    for (const e of ledger.ledger.state.log) tree.append(e.id)
    const onTornTail =
      opts.onTornHead === undefined ? undefined : (offset: number, dropped: number) => opts.onTornHead!(offset, dropped)
    const { store, records } = await LedgerStore.open(headsFile, { onTornTail })
    const heads: SignedHead[] = []
    for (const r of records) {
      let head: BlockHead
      try {
        head = decodeHeadsRecord(r.bytes)
      } catch (err) {
        if (!(err instanceof KinError)) throw err
        throw new KinError('STORAGE_DAMAGED', `heads file damaged at offset ${r.offset}: ${err.message}`, {
          cause: err,
          detail: { offset: r.offset },
        })
      }
      const bytes = r.bytes.slice(HEADS_RECORD_PREFIX.length)
      const id = crypto.sha256(bytes)
      heads.push({ head, bytes, id, idHex: toHex(id) })
    }
    checkHeadChain(crypto, heads, tree, minerKey)
    const miner = new Miner(
      crypto,
      ledger,
      store,
      heads,
      tree,
      Uint8Array.from(minerSecretKey),
      minerKey,
      opts.boundTimes ?? true,
    )
    miner.admit = opts.admit
    return miner
  }

  private index(e: EncodedEvent, position: number): void {
    this.positions.set(e.idHex, position)
    const key = toHex(e.event.subject)
    const list = this.bySubject.get(key)
    if (list === undefined) this.bySubject.set(key, [position])
    else list.push(position)
  }

  private serialize<T>(job: () => Promise<T>): Promise<T> {
    const run = this.queue.then(job, job)
    this.queue = run.catch(() => undefined)
    return run
  }

  /**
   * Validates and appends events (in any order: an event whose link comes later in the batch is retried) and
   * resolves once they are durable and in the tree. `now` (seconds) bounds claimed event times: TIME_IN_FUTURE,
   * TIME_TOO_OLD beyond MAX_CLOCK_SKEW, TIME_BEFORE_HEAD before the last head's time less the skew.
   * Never throws for a bad event: refusals come back with their codes; throws only for storage failures.
   * `verified`: (event id, key) pairs this process verified already (L0's CA checks an authorize event before it
   * issues): taken without a second check, still validated in full.
   */
  submit(eventBytes: Uint8Array[], now: number, opts: { verified?: VerifiedSignatureSet } = {}): Promise<SubmitResult> {
    if (!Array.isArray(eventBytes)) return Promise.reject(new TypeError('"eventBytes" expected an array of Uint8Array'))
    try {
      checkTime('now', now)
    } catch (err) {
      return Promise.reject(err)
    }
    const events: EncodedEvent[] = []
    const early: Refusal[] = []
    for (const bytes of eventBytes) {
      let e: EncodedEvent
      try {
        e = readEvent(this.crypto, abytes('eventBytes[]', bytes))
      } catch (err) {
        if (!(err instanceof KinError)) return Promise.reject(err)
        early.push({ idHex: undefined, code: err.code, message: err.message })
        continue
      }
      if (e.event.type === 'genesis' && !bytesEqual(e.event.body.minerKey, this.minerKey)) {
        early.push({
          idHex: e.idHex,
          code: 'GENESIS_MISMATCH',
          message: 'this genesis names another miner key than the one this miner signs with',
        })
        continue
      }
      const refusal = this.admit?.(e)
      if (refusal !== undefined) {
        early.push(refusal)
        continue
      }
      events.push(e)
    }
    // Signatures are checked at once, in parallel with earlier flushes and their fsync; submissions still join
    // the queue in the order they came, so a parent submitted before its child is validated before it.
    const queued = this.queueKeys(events)
    // An event already in the log is answered `known` without validation: its signature was verified when it
    // entered, and checking it again (a device hands over its authorize event, which L0's CA appended) is waste.
    const verified = precheckSignatures(
      this.crypto,
      this.ledger.ledger.state,
      events.filter(e => !this.positions.has(e.idHex)),
      id => this.queuedKeys.get(id)?.key,
      opts.verified,
    )
    const settle =
      <T>(f: (v: T) => void) =>
      (v: T) => {
        this.unqueueKeys(queued)
        f(v)
      }
    return new Promise<SubmitResult>((res, rej) => {
      const resolve = settle(res),
        reject = settle(rej)
      this.intake = this.intake
        .then(() => verified)
        .then(set => {
          this.waiting.push({ events, early, verified: set, now, resolve, reject })
          if (this.flushQueued) return
          this.flushQueued = true
          void this.serialize(async () => {
            this.flushQueued = false
            await this.flush(this.waiting.splice(0))
          })
        })
    })
  }

  private queueKeys(events: readonly EncodedEvent[]): string[] {
    const ids: string[] = []
    for (const e of events) {
      const key = keyBoundBy(e)
      if (key === undefined) continue
      const held = this.queuedKeys.get(e.idHex)
      if (held === undefined) this.queuedKeys.set(e.idHex, { key, holders: 1 })
      else held.holders++
      ids.push(e.idHex)
    }
    return ids
  }

  private unqueueKeys(ids: readonly string[]): void {
    for (const id of ids) {
      const held = this.queuedKeys.get(id)
      if (held !== undefined && --held.holders === 0) this.queuedKeys.delete(id)
    }
  }

  // One durable write for every submission that queued up behind the previous one (group commit).
  private async flush(batch: Submission[]): Promise<void> {
    if (this.failure !== undefined) {
      for (const s of batch) s.reject(this.failure)
      return
    }
    let now = 0
    const inputs: EncodedEvent[] = []
    for (const s of batch) {
      now = Math.max(now, s.now)
      for (const e of s.events) inputs.push(e)
    }
    const before = this.ledger.ledger.size
    if (before !== this.tree.size) {
      const err = new KinError(
        'INTERNAL',
        `the miner's ledger holds ${before} events but its tree ${this.tree.size}: something else appended to it`,
      )
      for (const s of batch) s.reject(err)
      return
    }
    let result: Awaited<ReturnType<PersistentLedger['appendMany']>>
    try {
      const verified = anyOf(batch.map(s => s.verified))
      // The miner is the fleet's timestamp authority: claimed times within skew of its clock and its last head.
      const intake = this.boundTimes ? { now, headTime: this.heads[this.heads.length - 1]?.head.time } : undefined
      result =
        inputs.length === 0
          ? { accepted: [], refused: [], pending: [] }
          : await this.ledger.appendMany(inputs, { now, verified, intake })
    } catch (err) {
      for (const s of batch) s.reject(err)
      return
    }
    for (const e of result.accepted) this.index(e, this.tree.append(e.id))
    const accepted = new Set(result.accepted.map(e => e.idHex))
    const refused = new Map<string, Refusal>()
    for (const r of result.refused) if (r.idHex !== undefined) refused.set(r.idHex, r)
    const pending = new Set(result.pending.map(e => e.idHex))
    for (const s of batch) {
      const out: SubmitResult = { accepted: [], known: [], refused: [...s.early], pending: [] }
      const seen = new Set<string>()
      for (const e of s.events) {
        if (seen.has(e.idHex)) continue
        seen.add(e.idHex)
        const r = refused.get(e.idHex)
        if (accepted.has(e.idHex)) out.accepted.push(e)
        else if (r !== undefined) out.refused.push(r)
        else if (pending.has(e.idHex)) out.pending.push(e)
        else if (this.positions.has(e.idHex)) out.known.push(e.idHex)
      }
      out.accepted.sort((a, b) => this.positions.get(a.idHex)! - this.positions.get(b.idHex)!)
      s.resolve(out)
    }
  }

  /**
   * Signs a new head when the tree grew since the last one: height + 1, the last head's id, time max(last time,
   * now), the tree size and root; appends it durably to the heads file and resolves with it. Undefined when
   * nothing is new. The broker calls this at least every 200 ms while events are unsealed. With `heartbeatAfter`
   * (seconds), a quiet log gets a head over the same tree once the last one is that old, so devices can tell a
   * fresh ledger from a stale one by head time (policy maxHeadAge); same tree, same root: consistent by definition.
   */
  seal(now: number, opts: { heartbeatAfter?: number } = {}): Promise<BlockHead | undefined> {
    return this.serialize(async () => {
      checkTime('now', now)
      if (this.failure !== undefined) throw this.failure
      const size = this.tree.size
      const last = this.heads[this.heads.length - 1]
      const beat =
        opts.heartbeatAfter !== undefined && last !== undefined && now - last.head.time >= opts.heartbeatAfter
      if (size === 0 || (last !== undefined && last.head.treeSize >= size && !beat)) return undefined
      const head = signHead(
        this.crypto,
        {
          height: last === undefined ? 0 : last.head.height + 1,
          prevHeadId: last === undefined ? genesisPrevHeadId() : last.id,
          time: Math.max(last === undefined ? 0 : last.head.time, now),
          treeSize: size,
          root: this.tree.root(size),
        },
        this.secretKey,
      )
      const bytes = encodeHead(head)
      try {
        await this.headsStore.append(concatBytes(HEADS_RECORD_PREFIX, bytes))
      } catch (err) {
        // Not durable, never returned, so never published; but what reached the disk is unknown until a reopen.
        this.failure = new KinError('STORAGE_IO', 'writing the heads file failed; reopen the miner', { cause: err })
        throw err
      }
      const id = this.crypto.sha256(bytes)
      const signed = { head, bytes, id, idHex: toHex(id) }
      this.heads.push(signed)
      this.headsById.set(signed.idHex, signed)
      return head
    })
  }

  /** Whether events are durable in the log but not yet covered by a head (the broker then seals soon). */
  get unsealed(): boolean {
    const last = this.heads[this.heads.length - 1]
    return this.tree.size > (last === undefined ? 0 : last.head.treeSize)
  }

  /** Number of durable events in the log (= leaves of the tree). */
  get treeSize(): number {
    return this.tree.size
  }

  /** The last head signed, if any. */
  latestHead(): BlockHead | undefined {
    return this.heads[this.heads.length - 1]?.head
  }

  /** Canonical bytes of the last head (what the broker publishes, retained, on the head topic). */
  latestHeadBytes(): Uint8Array | undefined {
    return this.heads[this.heads.length - 1]?.bytes
  }

  /** Hex id of the last head. */
  latestHeadId(): string | undefined {
    return this.heads[this.heads.length - 1]?.idHex
  }

  /** A head this miner signed, by its hex id (a device's last verified head, named in its sync request). */
  headById(idHex: string): BlockHead | undefined {
    return this.headsById.get(idHex)?.head
  }

  /** The head at `height`, if signed. */
  headAt(height: number): BlockHead | undefined {
    return this.heads[height]?.head
  }

  /** Encoded events of the log from index `size` on, at most `max` of them, never past `end` (default: all durable). */
  eventsAfter(size: number, max: number = Number.MAX_SAFE_INTEGER, end: number = this.tree.size): Uint8Array[] {
    if (!Number.isSafeInteger(size) || size < 0 || size > this.tree.size)
      throw new RangeError(`"size" expected an integer in [0, ${this.tree.size}], got ${size}`)
    if (!Number.isSafeInteger(max) || max < 0) throw new RangeError(`"max" expected a non-negative integer, got ${max}`)
    const stop = Math.min(end, this.tree.size, size + max)
    const out: Uint8Array[] = []
    const log = this.ledger.ledger.state.log
    for (let i = size; i < stop; i++) out.push(log[i]!.bytes)
    return out
  }

  /** The event at leaf `index`. */
  eventAt(index: number): EncodedEvent | undefined {
    return index < this.tree.size ? this.ledger.ledger.state.log[index] : undefined
  }

  /** RFC 9162 §2.1.4.1 consistency proof between tree sizes m <= n (n at most the durable size). */
  consistencyProof(m: number, n: number): Uint8Array[] {
    return this.tree.consistencyProof(m, n)
  }

  /** RFC 9162 §2.1.3.1 inclusion proof of leaf `index` in the tree of the first `size` leaves. */
  inclusionProof(index: number, size: number): Uint8Array[] {
    return this.tree.inclusionProof(index, size)
  }

  /** Root of the tree of the first `size` leaves. */
  root(size: number = this.tree.size): Uint8Array {
    return this.tree.root(size)
  }

  /** Leaf index of the event with this hex id, if it is durable in the log. */
  indexOf(idHex: string): number | undefined {
    return this.positions.get(idHex)
  }

  /** Events whose subject is `label` (10 bytes), in log order: what a proof bundle gathers per lineage member. */
  eventsAbout(label: Uint8Array): EncodedEvent[] {
    const log = this.ledger.ledger.state.log
    return (this.bySubject.get(toHex(label)) ?? []).filter(i => i < this.tree.size).map(i => log[i]!)
  }

  /** What `buildBundle` reads: the verified state, the tree, the last head and the index look-ups. HEAD_MISSING before the first seal. */
  bundleSource(): BundleSource {
    const last = this.heads[this.heads.length - 1]
    if (last === undefined) throw new KinError('HEAD_MISSING', 'the miner has not signed a head yet; seal first')
    return {
      crypto: this.crypto,
      state: this.ledger.ledger.state,
      tree: this.tree,
      head: last.head,
      headBytes: last.bytes,
      indexOf: idHex => this.indexOf(idHex),
      eventsAbout: label => this.eventsAbout(label),
    }
  }

  /** Waits for pending work, then closes the heads file and the ledger. */
  close(): Promise<void> {
    return this.serialize(async () => {
      if (this.failure === undefined) this.failure = new KinError('STORAGE_IO', 'the miner is closed')
      await this.headsStore.close()
      await this.ledger.close()
    })
  }
}

/** The id of a head (SHA-256 of its encoding), in hex. */
export function headIdHex(crypto: CryptoProvider, head: BlockHead): string {
  return toHex(headId(crypto, head))
}
