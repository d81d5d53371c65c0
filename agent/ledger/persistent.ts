/** @module A ledger backed by its append-only file: replayed and verified on open, every append durable first. */
import { KinError } from '../errors.ts'
import type { AppendFile, CryptoProvider } from '../ports/platform.ts'
import { Ledger, type Refusal } from './ledger.ts'
import { LedgerStore } from './store.ts'
import { validateEvent, type ValidateOptions, type VerifiedSignatures } from './validate.ts'
import { applyEvent } from './apply.ts'
import type { SharedEvents } from './shared-events.ts'
import type { EncodedEvent } from './types.ts'

/** Options for opening a ledger file. */
export interface OpenOptions {
  /** Skip signature checks on replay (the file is this device's own and trusted); structure and rules still run. */
  trustSignatures?: boolean
  /**
   * Signatures this process verified in memory for the events it has just written to this file (precheck.ts
   * verifiedIn): a record matching one by id and key is not verified again; every other record is.
   */
  verified?: VerifiedSignatures
  /** Decoded events shared with other replicas of this process (shared-events.ts); every record is still validated. */
  events?: SharedEvents
  /** Told when a torn tail (an append cut by a crash) was dropped. */
  onTornTail?: (offset: number, dropped: number) => void
}

/**
 * Replays records into a fresh ledger. A record that does not decode or validate in order is damage in the
 * file: it is reported with its offset (STORAGE_DAMAGED), never skipped.
 */
export function replayRecords(
  crypto: CryptoProvider,
  records: Array<{ offset: number; bytes: Uint8Array }>,
  opts: ValidateOptions & { events?: SharedEvents } = {},
): Ledger {
  const ledger = new Ledger(crypto)
  for (const r of records) {
    try {
      ledger.ingest(opts.events === undefined ? r.bytes : opts.events.read(crypto, r.bytes), {
        trustSignatures: opts.trustSignatures,
        verified: opts.verified,
      })
    } catch (err) {
      if (!(err instanceof KinError)) throw err
      throw new KinError(
        'STORAGE_DAMAGED',
        `ledger record at byte offset ${r.offset} is damaged or out of place: ${err.code}: ${err.message}`,
        {
          cause: err,
          detail: { offset: r.offset, recordCode: err.code },
        },
      )
    }
  }
  return ledger
}

/** A ledger and its file. Appends are serialized: validate → durable write → apply. */
export class PersistentLedger {
  readonly ledger: Ledger
  private store: LedgerStore
  private readonly file: AppendFile
  private queue: Promise<unknown> = Promise.resolve()

  private constructor(ledger: Ledger, store: LedgerStore, file: AppendFile) {
    this.ledger = ledger
    this.store = store
    this.file = file
  }

  /** Opens (or creates) a ledger file, drops a torn tail, and replays every record with full validation. */
  static async open(crypto: CryptoProvider, file: AppendFile, opts: OpenOptions = {}): Promise<PersistentLedger> {
    try {
      const { store, records } = await LedgerStore.open(file, { onTornTail: opts.onTornTail })
      const ledger = replayRecords(crypto, records, {
        trustSignatures: opts.trustSignatures,
        verified: opts.verified,
        events: opts.events,
      })
      return new PersistentLedger(ledger, store, file)
    } catch (err) {
      // The file is ours from here on: a damaged or refused ledger lets go of its handle instead of leaking it.
      await file.close().catch(() => undefined)
      throw err
    }
  }

  private serialize<T>(job: () => Promise<T>): Promise<T> {
    const run = this.queue.then(job, job)
    this.queue = run.catch(() => undefined)
    return run
  }

  /** Validates one event, writes it durably, then applies it. Throws the coded refusal. */
  append(input: Uint8Array | EncodedEvent, opts?: ValidateOptions): Promise<EncodedEvent> {
    return this.serialize(async () => {
      const e = input instanceof Uint8Array ? this.ledger.read(input) : input
      const v = validateEvent(this.ledger.crypto, this.ledger.state, e, opts)
      await this.store.append(e.bytes)
      applyEvent(this.ledger.state, v)
      return e
    })
  }

  /**
   * Ingests a batch in any order (retrying missing links), writing all accepted events in one durable write.
   * Validation runs on a scratch copy of the order so nothing is applied before it is on disk.
   */
  appendMany(
    inputs: Array<Uint8Array | EncodedEvent>,
    opts?: ValidateOptions,
  ): Promise<{ accepted: EncodedEvent[]; refused: Refusal[]; pending: EncodedEvent[] }> {
    return this.serialize(async () => {
      const before = this.ledger.size
      const result = this.ledger.ingestMany(inputs, opts)
      try {
        if (result.accepted.length > 0) await this.store.appendMany(result.accepted.map(e => e.bytes))
      } catch (err) {
        // The write failed: memory must not claim what the disk lacks.
        this.ledger.truncateTo(before)
        throw err
      }
      return result
    })
  }

  /**
   * Replaces the whole ledger with `events` in exactly this order (a replica adopting the miner's order). `events`
   * may be a function of the current log, called once earlier appends are done, so none is lost in between. All
   * are validated into a fresh ledger first, so the first refusal (or a throw of the function) leaves everything
   * unchanged; then the file is rewritten atomically (AppendFile.replace) and the verified state is swapped in,
   * keeping this Ledger object.
   */
  rewrite(
    events: Array<Uint8Array | EncodedEvent> | ((log: readonly EncodedEvent[]) => Array<Uint8Array | EncodedEvent>),
    opts?: ValidateOptions,
  ): Promise<void> {
    return this.serialize(async () => {
      const inputs = typeof events === 'function' ? events(this.ledger.state.log) : events
      const scratch = new Ledger(this.ledger.crypto)
      for (const input of inputs) scratch.ingest(input, opts)
      const log = scratch.state.log
      let total = 0
      for (const e of log) total += e.bytes.length
      const bytes = new Uint8Array(total)
      let at = 0
      for (const e of log) {
        bytes.set(e.bytes, at)
        at += e.bytes.length
      }
      await this.file.replace(bytes)
      // A fresh store frames the new file, so its offsets start from the rewritten content.
      this.store = (await LedgerStore.open(this.file)).store
      // The scratch ledger validated exactly what was written: its state is taken over, not built a second time.
      this.ledger.adoptState(scratch)
    })
  }

  /** Closes the file. */
  close(): Promise<void> {
    return this.serialize(() => this.store.close())
  }
}
