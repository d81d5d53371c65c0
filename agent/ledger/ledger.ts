/** @module The in-memory ledger: decode, validate once, apply; then answer look-ups from verified state. */
import { KinError } from '../errors.ts'
import type { CryptoProvider } from '../../firmware-shims/types.ts'
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
    const v = validateEvent(this.crypto, this.state, e, opts)
    compactEvent(e)
    applyEvent(this.state, v)
    return e
  }

  /**
   * Ingests a batch that may arrive in any order: retries events whose links are missing until no progress,
   * skips duplicates. Returns what was accepted, what was refused (with codes) and what still lacks a link.
   */
  ingestMany(inputs: Array<Uint8Array | EncodedEvent>, opts?: ValidateOptions): { accepted: EncodedEvent[]; refused: Refusal[]; pending: EncodedEvent[] } {
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

/** Where `needle` occurs in `hay` at or after `from`, or -1. */
function indexOfBytes(hay: Uint8Array, needle: Uint8Array, from: number): number {
  const n = needle.length
  outer: for (let i = from; i + n <= hay.length; i++) {
    for (let j = 0; j < n; j++) if (hay[i + j] !== needle[j]) continue outer
    return i
  }
  return -1
}

/*
 * A replica keeps every event it accepted for as long as it lives, and a simulated fleet keeps N of them. Decoded,
 * an event is its bytes, its id and a small array for each byte field (labels, links, keys, hashes, signature), each
 * with its own array buffer. Once the event is accepted, compactEvent copies bytes and id into one buffer and points
 * every decoded byte field at the same bytes inside it (canonical CBOR carries each byte string verbatim): the same
 * values, about half the heap. (Hex ids, labels and nonce keys are flat strings from the start: toHex and base32
 * join once.) The event was verified
 * before; nothing here changes what it says.
 */
function compactEvent(e: EncodedEvent): void {
  const n = e.bytes.length
  if (e.id.buffer === e.bytes.buffer && e.id.byteOffset === e.bytes.byteOffset + n) return
  const store = new Uint8Array(n + e.id.length)
  store.set(e.bytes, 0)
  store.set(e.id, n)
  const bytes = store.subarray(0, n)
  let cursor = 0
  const view = (v: Uint8Array): Uint8Array => {
    let at = indexOfBytes(bytes, v, cursor)
    if (at < 0) at = indexOfBytes(bytes, v, 0)
    if (at < 0) return v
    cursor = at + v.length
    return bytes.subarray(at, at + v.length)
  }
  const rebase = (o: Record<string, unknown>): void => {
    for (const k of Object.keys(o)) {
      const v = o[k]
      if (v instanceof Uint8Array) o[k] = view(v)
      else if (Array.isArray(v)) for (let i = 0; i < v.length; i++) if (v[i] instanceof Uint8Array) v[i] = view(v[i] as Uint8Array)
    }
  }
  rebase(e.event as unknown as Record<string, unknown>)
  rebase(e.event.body as unknown as Record<string, unknown>)
  e.bytes = bytes
  e.id = store.subarray(n)
}

function refusalOf(idHex: string | undefined, err: unknown): Refusal {
  if (err instanceof KinError) return { idHex, code: err.code, message: err.message }
  throw err
}
