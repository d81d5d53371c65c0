/** @module Several verified proof bundles of one fleet as one ledger state: the deciding device's own and its peer's. */
import { KinError, VerificationError } from '../errors.ts'
import { toHex } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import type { VerifiedBundle } from './bundle.ts'
import { Ledger } from './ledger.ts'
import type { LedgerState } from './state.ts'

/**
 * One verified state from several verified bundles — typically the deciding device's own bundle and the one its
 * peer presented — so the lineage stage sees both sides. Events are taken in the miner's order and their
 * signatures are not checked again (verifyBundle did); any event the rules refuse, or that still lacks a link,
 * fails the whole combination with that event's code (fail closed).
 */
export function combineBundles(crypto: CryptoProvider, bundles: readonly VerifiedBundle[]): LedgerState {
  const ledger = new Ledger(crypto)
  const byId = new Map<string, { index: number; bytes: Uint8Array }>()
  for (const b of bundles) {
    for (const entry of b.bundle.entries) {
      const id = toHex(crypto.sha256(entry.eventBytes))
      if (!byId.has(id)) byId.set(id, { index: entry.leafIndex, bytes: entry.eventBytes })
    }
  }
  const ordered = [...byId.values()].sort((a, b) => a.index - b.index).map(e => e.bytes)
  const { refused, pending } = ledger.ingestMany(ordered, { trustSignatures: true })
  if (refused.length > 0) {
    throw new VerificationError(
      refused[0]!.code as KinError['code'],
      `bundles do not combine: ${refused[0]!.message}`,
      { detail: { refused } },
    )
  }
  if (pending.length > 0) {
    throw new VerificationError(
      'BUNDLE_INCOMPLETE',
      `bundles do not combine: ${pending.length} events link to events none of them holds`,
    )
  }
  return ledger.state
}
