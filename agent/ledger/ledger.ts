/** @module The in-memory ledger: decode, validate once, apply; then answer look-ups from verified state. */
import { KinError } from '../errors.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { readEvent } from './event.ts'
import { applyEvent } from './apply.ts'
import { LedgerState } from './state.ts'
import { validateEvent, type ValidateOptions } from './validate.ts'
import type { EncodedEvent } from './types.ts'

/** A refused event: its id (when it decoded), the code and the reason. */
export interface Refusal {
  idHex: string | undefined
  code: string
  message: string
}

/** One ledger replica. Every event is validated exactly once, when it enters; reads never re-verify. */
export class Ledger {
  readonly crypto: CryptoProvider
  private current: LedgerState = new LedgerState()

  constructor(crypto: CryptoProvider) {
    this.crypto = crypto
  }

  /** The verified state: what every look-up reads. */
  get state(): LedgerState {
    return this.current
  }

  /** Replaces the state with the first `count` accepted events (used when a durable write failed). */
  truncateTo(count: number): void {
    const kept = this.current.log.slice(0, count)
    this.current = new LedgerState()
    for (const e of kept) this.ingest(e, { trustSignatures: true })
  }

  /** Takes over the state of `other` (a scratch ledger that validated a rewrite): no event is validated again. */
  adoptState(other: Ledger): void {
    this.current = other.current
  }

  /** Number of accepted events. */
  get size(): number {
    return this.state.log.length
  }

  /** Decodes untrusted bytes into an event with its id; throws DecodeError. */
  read(bytes: Uint8Array): EncodedEvent {
    return readEvent(this.crypto, bytes)
  }

  /** Validates without applying: throws the VerificationError the event would be refused with. */
  check(e: EncodedEvent, opts?: ValidateOptions): void {
    validateEvent(this.crypto, this.state, e, opts)
  }

  /** Validates and applies one event (bytes or already decoded); throws a coded error when refused. */
  ingest(input: Uint8Array | EncodedEvent, opts?: ValidateOptions): EncodedEvent {
    const e = input instanceof Uint8Array ? this.read(input) : input
    applyEvent(this.state, validateEvent(this.crypto, this.state, e, opts))
    return e
  }

  /**
   * Ingests a batch that may arrive in any order: retries events whose links are missing until no progress,
   * skips duplicates. Returns what was accepted, what was refused (with codes) and what still lacks a link.
   */
  ingestMany(
    inputs: Array<Uint8Array | EncodedEvent>,
    opts?: ValidateOptions,
  ): { accepted: EncodedEvent[]; refused: Refusal[]; pending: EncodedEvent[] } {
    const accepted: EncodedEvent[] = []
    const refused: Refusal[] = []
    let queue: EncodedEvent[] = []
    for (const input of inputs) {
      if (input instanceof Uint8Array) {
        try {
          queue.push(this.read(input))
        } catch (err) {
          refused.push(refusalOf(undefined, err))
        }
      } else {
        queue.push(input)
      }
    }
    for (let progress = true; progress && queue.length > 0;) {
      progress = false
      const next: EncodedEvent[] = []
      for (const e of queue) {
        if (this.state.has(e.idHex)) continue
        try {
          this.ingest(e, opts)
          accepted.push(e)
          progress = true
        } catch (err) {
          if (err instanceof KinError && (err.code === 'MISSING_LINK' || err.code === 'NO_GENESIS')) next.push(e)
          else refused.push(refusalOf(e.idHex, err))
        }
      }
      queue = next
    }
    return { accepted, refused, pending: queue }
  }
}

function refusalOf(idHex: string | undefined, err: unknown): Refusal {
  if (err instanceof KinError) return { idHex, code: err.code, message: err.message }
  throw err
}
