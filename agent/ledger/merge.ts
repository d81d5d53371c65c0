/** @module Merging ledgers: union by id, validated in a canonical order, so any merge order gives one result. */
import { compareBytes } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { Ledger, type Refusal } from './ledger.ts'
import type { EncodedEvent } from './types.ts'
import type { ValidateOptions } from './validate.ts'

/** The outcome of a merge: the merged ledger, what each input contributed, and every refusal with its code. */
export interface MergeResult {
  ledger: Ledger
  refused: Refusal[]
  pending: EncodedEvent[]
  /**
   * Every distinct event offered, accepted or not, in canonical order. Feed this (not `ledger.state.log`) to a later
   * merge: acceptance is not monotone (a later event can void a conflict's winner), so only unions merge associatively.
   */
  union: EncodedEvent[]
}

/**
 * Canonical order of a set of events: first those in the miner's log, in log order (the miner's order decides
 * conflicts: "first in the miner's log wins"); then the rest by (time, id). Dependencies are honoured by the
 * retry loop in `ingestMany`, so the order only decides conflicts.
 */
export function canonicalOrder(events: EncodedEvent[], minerOrder: readonly string[] = []): EncodedEvent[] {
  const rank = new Map<string, number>()
  minerOrder.forEach((id, i) => {
    if (!rank.has(id)) rank.set(id, i)
  })
  return [...events].sort((a, b) => {
    const ra = rank.get(a.idHex),
      rb = rank.get(b.idHex)
    if (ra !== undefined || rb !== undefined) {
      if (ra === undefined) return 1
      if (rb === undefined) return -1
      return ra - rb
    }
    if (a.event.type === 'genesis' && b.event.type !== 'genesis') return -1
    if (b.event.type === 'genesis' && a.event.type !== 'genesis') return 1
    return a.event.time - b.event.time || compareBytes(a.id, b.id)
  })
}

/**
 * Merges replicas into a fresh ledger: the union of their events by id, validated in canonical order.
 * Deterministic, commutative and idempotent in its accepted set; conflicting authorize events are resolved by
 * the miner's log when given, otherwise by (time, id), and the loser is reported with CN_EXISTS.
 */
export function mergeLedgers(
  crypto: CryptoProvider,
  replicas: Array<Iterable<EncodedEvent>>,
  opts: ValidateOptions & { minerOrder?: readonly string[] } = {},
): MergeResult {
  const union = new Map<string, EncodedEvent>()
  for (const r of replicas) for (const e of r) if (!union.has(e.idHex)) union.set(e.idHex, e)
  const ledger = new Ledger(crypto)
  const ordered = canonicalOrder([...union.values()], opts.minerOrder)
  const { refused, pending } = ledger.ingestMany(ordered, opts)
  return { ledger, refused, pending, union: ordered }
}
