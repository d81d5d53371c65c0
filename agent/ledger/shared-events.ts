/** @module Decoded events shared by the replicas of one process (the simulator's fleet): one copy of each event, not one per replica. */
import { toHex } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { readEvent } from './event.ts'
import { VerifiedSignatureSet } from './precheck.ts'
import type { EncodedEvent } from './types.ts'

/*
 * Decoding is a pure function of the bytes, and an event's id is the SHA-256 of its bytes: two replicas that read
 * bytes with one id read the same event, so they can hold one decoded copy (readEvent copies what it keeps, so the
 * copy pins no message buffer). Nothing about trust is shared: every replica still validates, and verifies the
 * signature of, every event it takes in. A thousand replicas in one process otherwise hold a thousand copies of a
 * ~2,000-event ledger (about 1,500 of the ~1,800 heap bytes a replica spends per event).
 */

/*
 * Signatures likewise: "the event with id X verifies under key K" (and "head H verifies under the miner key") is a
 * fact about fixed bytes, so a pair one replica verified is the same pair for the next: `verified` holds the pairs
 * that succeeded, never a failure, and only an exact (id, key) match is taken. The simulator's devices share a
 * process; without this its CPU grows with N² (every device re-verifying every event), which says nothing about a
 * device, each of which verifies every signature once.
 */

/** Decoded events by id, handed to every replica of a process; grows with the distinct events read, never shrinks. */
export class SharedEvents {
  readonly #byId = new Map<string, EncodedEvent>()
  /** (event id, key) pairs whose signature verified in this process; heads as (`head/<id>`, miner key). */
  readonly verified: VerifiedSignatureSet = new VerifiedSignatureSet()

  /** Distinct events held. */
  get size(): number {
    return this.#byId.size
  }

  /** The decoded event for `bytes` (readEvent's result; DecodeError as readEvent throws it), shared by id. */
  read(crypto: CryptoProvider, bytes: Uint8Array): EncodedEvent {
    const held = this.#byId.get(toHex(crypto.sha256(bytes)))
    if (held !== undefined) return held
    const e = readEvent(crypto, bytes)
    this.#byId.set(e.idHex, e)
    return e
  }
}
