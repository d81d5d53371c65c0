/** @module L0's miner as a service: every write to L0's ledger goes through it, and it seals and publishes signed heads. */
import { KinError } from '../agent/errors.ts'
import type { CryptoProvider } from '../agent/ports/platform.ts'
import { nodeStorage } from '../runtime/node/storage.ts'
import { Miner, type SubmitResult } from '../agent/ledger/miner.ts'
import type { BlockHead } from '../agent/ledger/head.ts'
import type { PersistentLedger } from '../agent/ledger/persistent.ts'
import { buildHeadAnnouncement, encodeSyncResponse } from '../agent/ledger/sync.ts'
import type { EncodedEvent } from '../agent/ledger/types.ts'
import type { VerifiedSignatureSet } from '../agent/ledger/precheck.ts'
import type { FleetTopics } from '../agent/gossip/topics.ts'
import type { IntakeQuota } from '../agent/ledger/quota.ts'
import type { L0Logger } from './log.ts'
import { admitCertified, type IssuedLookup } from './admission.ts'

/** The heads file in L0's home: the miner's signed heads, one record each (agent/ledger/miner.ts). */
export const HEADS_FILE = 'heads.cbor'
/** Longest time (ms) an accepted event waits for a head that covers it. */
export const SEAL_INTERVAL_MS = 200

/** What the miner service needs from L0. */
export interface MinerServiceOptions {
  crypto: CryptoProvider
  /** L0's home directory (holds the heads file). */
  homeDir: string
  /** L0's ledger; the miner becomes its only writer and closes it. */
  ledger: PersistentLedger
  /** L0's Ed25519 ledger seed: the miner key of the fleet's genesis. */
  minerSeed: Uint8Array
  topics: FleetTopics
  /** Seconds since the epoch: event times are bounded by it and heads carry it. */
  now: () => number
  log: L0Logger
  /** Publishes as L0's services (QoS 1). */
  publish: (topic: string, payload: Uint8Array, opts?: { retain?: boolean }) => Promise<void>
  /** Longest wait (ms) before accepted events are sealed (default SEAL_INTERVAL_MS). */
  sealIntervalMs?: number
  /** Certificates the fleet CA issued: when given, a `certified` event for any other is refused (admission.ts). */
  issued?: IssuedLookup
  /** Per-submitter budgets: when given, `submit` with a submitter CN charges it (quota.ts). */
  quota?: IntakeQuota
}

/** What `MinerService.submit` did: the miner's result, or a submission refused whole by its submitter's quota. */
export interface IntakeResult extends SubmitResult {
  /** QUOTA_RATE or QUOTA_BYTES: nothing of the submission was looked at or appended. */
  overQuota?: KinError
}

function startupError(err: unknown, headsPath: string): unknown {
  if (!(err instanceof KinError)) return err
  const advice =
    err.code === 'HEAD_INCONSISTENT' || err.code === 'HEAD_SIGNATURE'
      ? 'L0 refuses to start rather than sign a head that contradicts one it already published (devices would see a forking miner). ' +
        `Restore ledger.cbor from a backup holding every event the heads cover; only if no device ever saw these heads, move ${headsPath} away`
      : `check ${headsPath} and ledger.cbor`
  return new KinError(err.code, `the miner's heads file does not fit L0's ledger: ${err.message}. ${advice}`, {
    cause: err,
    detail: { ...err.detail, headsFile: headsPath },
  })
}

/**
 * The miner on L0: `submit` and `appendOne` are the only way into L0's ledger; while events are unsealed a head is
 * signed at least every `sealIntervalMs`, and each new head is published — first the events it adds on
 * `ledger/events` (a sync response for devices holding the previous head), then the head itself, retained, on
 * `ledger/head`, so a device that sees the head already has what it covers.
 */
export class MinerService {
  readonly miner: Miner
  private readonly opts: MinerServiceOptions
  private readonly interval: number
  private timer: ReturnType<typeof setTimeout> | undefined = undefined
  private sealing: Promise<unknown> = Promise.resolve()
  private closing = false
  private sealWaiters: Array<() => void> = []

  private constructor(miner: Miner, opts: MinerServiceOptions) {
    this.miner = miner
    this.opts = opts
    this.interval = opts.sealIntervalMs ?? SEAL_INTERVAL_MS
  }

  /**
   * Opens the heads file and checks it against the ledger (Miner.open). A heads file that does not fit the ledger
   * (HEAD_INCONSISTENT, HEAD_SIGNATURE), a damaged one (STORAGE_DAMAGED) or another miner key (GENESIS_MISMATCH)
   * is a startup error saying what to do; the ledger is left open for the caller to close.
   */
  static async open(opts: MinerServiceOptions): Promise<MinerService> {
    const headsPath = `${opts.homeDir}/${HEADS_FILE}`
    const file = await nodeStorage(opts.homeDir).openAppendFile(HEADS_FILE)
    let miner: Miner
    try {
      const issued = opts.issued
      miner = await Miner.open(opts.crypto, opts.ledger, file, opts.minerSeed, {
        admit: issued === undefined ? undefined : e => admitCertified(issued, opts.ledger.ledger.state, e),
        onTornHead: (offset, dropped) =>
          opts.log('warn', 'ledger.error', {
            code: 'STORAGE_DAMAGED',
            message: `dropped a torn head of ${dropped} bytes at offset ${offset} in ${headsPath} (an interrupted write)`,
          }),
      })
    } catch (err) {
      await file.close().catch(() => undefined)
      throw startupError(err, headsPath)
    }
    return new MinerService(miner, opts)
  }

  /** Seals what the ledger holds beyond the last head and publishes the latest head, retained (a fresh broker has none). */
  async start(): Promise<void> {
    if ((await this.sealNow()) === undefined) await this.republishHead()
  }

  /** Publishes the latest head again, retained: after L0 (re)connects to a broker that may have lost it. */
  async republishHead(): Promise<void> {
    const bytes = this.miner.latestHeadBytes()
    if (bytes === undefined) return
    await this.opts
      .publish(this.opts.topics.head, bytes, { retain: true })
      .catch(err => this.publishFailed(this.opts.topics.head, err))
  }

  /**
   * Validates and durably appends submitted events (Miner.submit); accepted ones are sealed within the interval.
   * With `from` (the submitting device's CN) and a quota, the submission is first charged to `from`'s buckets, as
   * the role of its current binding allows (an unknown CN as a guest): over budget, it is refused whole before any
   * of its events is decoded (`overQuota`). Afterwards the rate bucket gets back the events that were already in the log, the byte
   * bucket every byte the ledger did not keep.
   */
  async submit(eventBytes: Uint8Array[], now: number, from?: string): Promise<IntakeResult> {
    const quota = this.opts.quota
    if (from === undefined || quota === undefined) return this.submitNow(eventBytes, now)
    let bytes = 0
    for (const b of eventBytes) bytes += b.length
    const role = this.opts.ledger.ledger.state.currentBinding(from)?.role ?? 'guest'
    const charge = quota.take(from, role, eventBytes.length, bytes)
    if (charge instanceof KinError) {
      return {
        accepted: [],
        known: [],
        pending: [],
        refused: [{ idHex: undefined, code: charge.code, message: charge.message }],
        overQuota: charge,
      }
    }
    let result: SubmitResult
    try {
      result = await this.submitNow(eventBytes, now)
    } catch (err) {
      quota.refund(charge, charge.events, charge.bytes)
      throw err
    }
    let kept = 0
    for (const e of result.accepted) kept += e.bytes.length
    quota.refund(charge, result.known.length, bytes - kept)
    return result
  }

  private async submitNow(
    eventBytes: Uint8Array[],
    now: number,
    verified?: VerifiedSignatureSet,
  ): Promise<SubmitResult> {
    const result = await this.miner.submit(eventBytes, now, verified === undefined ? {} : { verified })
    if (result.accepted.length > 0) this.schedule()
    return result
  }

  /**
   * Resolves once the next seal has run (the scheduled one, within the interval), or at once when nothing is
   * unsealed. A bundle request waits on it rather than forcing a head of its own (DESIGN.md, Quotas).
   */
  nextSeal(): Promise<void> {
    if (!this.miner.unsealed || this.closing) return Promise.resolve()
    this.schedule()
    return new Promise(resolve => this.sealWaiters.push(resolve))
  }

  /**
   * One event into the ledger through the miner, or its coded refusal (FleetCa's CaLedger.append); `verified`: its
   * signature as the CA already verified it (validated in full, not verified again).
   */
  async appendOne(e: EncodedEvent, now: number, verified?: VerifiedSignatureSet): Promise<EncodedEvent> {
    const result = await this.submitNow([e.bytes], now, verified)
    if (result.accepted.length === 1) return result.accepted[0]!
    const refusal = result.refused[0]
    if (refusal !== undefined) throw new KinError(refusal.code as KinError['code'], refusal.message)
    if (result.known.length > 0)
      throw new KinError('DUPLICATE_EVENT', `event ${e.idHex.slice(0, 16)}… is already in L0's ledger`)
    throw new KinError('MISSING_LINK', `event ${e.idHex.slice(0, 16)}… links to an event L0's ledger lacks`)
  }

  /** Signs a head over everything durable now (if anything is new) and publishes it; resolves with it. */
  sealNow(): Promise<BlockHead | undefined> {
    if (this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    const run = this.sealing.then(async () => {
      // Only waiters already queued: an event made durable during this seal waits for the next one.
      const waiting = this.sealWaiters.splice(0)
      try {
        return await this.sealAndPublish()
      } finally {
        for (const wake of waiting) wake()
      }
    })
    this.sealing = run.catch(() => undefined)
    return run
  }

  private schedule(): void {
    if (this.timer !== undefined || this.closing) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.sealNow().catch(err =>
        this.opts.log('error', 'ledger.error', {
          code: err instanceof KinError ? err.code : 'INTERNAL',
          message: (err as Error).message,
          stage: 'seal',
        }),
      )
    }, this.interval)
  }

  private async sealAndPublish(): Promise<BlockHead | undefined> {
    const { miner, opts } = this
    const previous = miner.latestHead()
    const head = await miner.seal(opts.now())
    if (head === undefined) return undefined
    // Built before anything else can seal: the announcement's head must be this one.
    const announcement = encodeSyncResponse(buildHeadAnnouncement(opts.crypto, miner, previous))
    const headBytes = miner.latestHeadBytes()!
    opts.log('info', 'ledger.sealed', {
      height: head.height,
      treeSize: head.treeSize,
      added: head.treeSize - (previous?.treeSize ?? 0),
      id: miner.latestHeadId(),
    })
    if (miner.unsealed) this.schedule()
    await opts.publish(opts.topics.events, announcement).catch(err => this.publishFailed(opts.topics.events, err))
    await opts
      .publish(opts.topics.head, headBytes, { retain: true })
      .catch(err => this.publishFailed(opts.topics.head, err))
    return head
  }

  // The head is durable whatever happens to its publication: the next head, a reconnect or a sync request carries it.
  private publishFailed(topic: string, err: unknown): void {
    this.opts.log('warn', 'broker.error', {
      topic,
      code: err instanceof KinError ? err.code : 'BROKER_CLOSED',
      message: (err as Error)?.message ?? String(err),
    })
  }

  /** Stops sealing on the clock, seals what is durable (not published: the broker is going away), closes the heads file and the ledger. */
  async close(): Promise<void> {
    this.closing = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    await this.sealing
    for (const wake of this.sealWaiters.splice(0)) wake()
    try {
      await this.miner.seal(this.opts.now())
    } catch (err) {
      this.opts.log('error', 'ledger.error', {
        code: err instanceof KinError ? err.code : 'INTERNAL',
        message: (err as Error).message,
        stage: 'final seal',
      })
    }
    await this.miner.close()
  }
}
