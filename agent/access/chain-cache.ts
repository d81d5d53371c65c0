/** @module A small bounded cache of verified chains by certificate hash, so warm decisions verify no signature. */
import { KinError } from '../errors.ts'
// ChainInfo is what access/types.ts calls VerifiedChain; named from its source so the two files do not import each other.
import type { ChainInfo as VerifiedChain } from '../pki/chain.ts'

/** Default number of certificates remembered. */
export const DEFAULT_CHAIN_CACHE_SIZE = 64

/**
 * Least-recently-used map from certificate hash (hex) to the chain result verified for it. Entries hold no
 * time-dependent verdict: the chain stage re-checks the certificate's validity period on every hit.
 */
export class ChainCache {
  readonly capacity: number
  readonly #entries: Map<string, VerifiedChain> = new Map()

  constructor(capacity: number = DEFAULT_CHAIN_CACHE_SIZE) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new KinError('BAD_ARGUMENT', `"capacity" expected a positive integer, got ${capacity}`)
    this.capacity = capacity
  }

  /** Number of certificates remembered. */
  get size(): number {
    return this.#entries.size
  }

  /** The chain verified for this certificate hash, marking it recently used. */
  get(certHashHex: string): VerifiedChain | undefined {
    const hit = this.#entries.get(certHashHex)
    if (hit === undefined) return undefined
    this.#entries.delete(certHashHex)
    this.#entries.set(certHashHex, hit)
    return hit
  }

  /** Remembers a verified chain, dropping the least recently used entry beyond capacity. */
  set(certHashHex: string, chain: VerifiedChain): void {
    this.#entries.delete(certHashHex)
    this.#entries.set(certHashHex, chain)
    if (this.#entries.size > this.capacity) this.#entries.delete(this.#entries.keys().next().value!)
  }

  /** Forgets every entry (e.g. after the fleet root changed). */
  clear(): void {
    this.#entries.clear()
  }
}
