/** @module A bounded cache of event signatures a bundle-tier device verified once, keyed by event id and key. */
import { bytesEqual } from '../codec/bytes.ts'
import type { VerifiedSignatures } from './validate.ts'

/*
 * DESIGN.md "Small devices: three tiers", the bundle tier: events it verified once are cached. An event id is the
 * SHA-256 of the event's bytes, signature included, so "id X verified under key K" stays true for good; the cache
 * only decides how much of that a small heap remembers. Two parts: the device's own lineage (pinned at boot from
 * its own bundle: every peer's lineage meets it at the common ancestor) and the most recently used entries from
 * earlier decisions, evicted oldest first. Both are bounded, so a stream of strangers cannot grow the heap.
 */

/** Entries the recent part keeps unless told otherwise. */
export const DEFAULT_SIGNATURE_CACHE_CAPACITY = 64

/** Signatures verified once (event id, key), for the bundle tier's later bundles; implements VerifiedSignatures. */
export class SignatureCache implements VerifiedSignatures {
  /** Most entries of the recent part (the pinned part holds as many at most). */
  readonly capacity: number
  readonly #pinned = new Map<string, Uint8Array>()
  // A Map iterates in insertion order: re-inserting on use keeps the least recently used first.
  readonly #recent = new Map<string, Uint8Array>()

  /** A cache keeping up to `capacity` recent entries and as many pinned ones. */
  constructor(capacity: number = DEFAULT_SIGNATURE_CACHE_CAPACITY) {
    if (!Number.isSafeInteger(capacity) || capacity < 1)
      throw new RangeError(`"capacity" expected a positive integer, got ${String(capacity)}`)
    this.capacity = capacity
  }

  /** Entries held, pinned and recent. */
  get size(): number {
    return this.#pinned.size + this.#recent.size
  }

  /** Records that event `idHex` verified under `ledgerKey`; `pinned` (the device's own lineage) is never evicted by later entries. */
  add(idHex: string, ledgerKey: Uint8Array, pinned = false): void {
    const id = idHex.toLowerCase(),
      key = ledgerKey.slice()
    if (pinned && (this.#pinned.has(id) || this.#pinned.size < this.capacity)) {
      this.#recent.delete(id)
      this.#pinned.set(id, key)
      return
    }
    if (this.#pinned.has(id)) return
    this.#recent.delete(id)
    this.#recent.set(id, key)
    while (this.#recent.size > this.capacity) this.#recent.delete(this.#recent.keys().next().value!)
  }

  /** True only when `idHex` verified under exactly `ledgerKey`; a hit counts as a use. */
  holds(idHex: string, ledgerKey: Uint8Array): boolean {
    const id = idHex.toLowerCase()
    const pinned = this.#pinned.get(id)
    if (pinned !== undefined) return bytesEqual(pinned, ledgerKey)
    const key = this.#recent.get(id)
    if (key === undefined || !bytesEqual(key, ledgerKey)) return false
    this.#recent.delete(id)
    this.#recent.set(id, key)
    return true
  }
}
