/** @module The lineage L0 hands a newly certified device: the ledger events its own ledger needs before its authorize event. */
import { toHex } from '../agent/codec/bytes.ts'
import type { LedgerState } from '../agent/ledger/state.ts'
import type { EncodedEvent } from '../agent/ledger/types.ts'

/**
 * Cap on the lineage's total bytes: below MAX_PAYLOAD_BYTES (64 KiB) with room for the certificate and framing.
 * Up to it the child gets L0's whole ledger before its authorize event, so it starts with everything L0 knew.
 */
export const MAX_LINEAGE_BYTES = 48 * 1024

function totalBytes(events: EncodedEvent[]): number {
  let n = 0
  for (const e of events) n += e.bytes.length
  return n
}

/**
 * The events a child's ledger needs before its own authorize event (docs/PAIRING.md step 6), in L0's ledger
 * order; the authorize event itself is not included (the child has it from its parent and appends it next).
 * The whole ledger prefix before it when that fits MAX_LINEAGE_BYTES; otherwise only genesis and the events
 * about the child's ancestors (their authorize, rekey, certified, revoke and policy events), keeping an event
 * only when every event it links to is kept, so the child's ledger accepts the list in order. The child syncs
 * the rest later.
 */
export function lineageFor(state: LedgerState, authorize: EncodedEvent): EncodedEvent[] {
  const end = state.log.findIndex(e => e.idHex === authorize.idHex)
  const prefix = state.log.slice(0, end < 0 ? state.log.length : end)
  if (totalBytes(prefix) <= MAX_LINEAGE_BYTES) return prefix
  const ancestors = new Set(state.lineage(state.cnOfLabel(authorize.event.issuer)))
  const kept = new Set<string>()
  const out: EncodedEvent[] = []
  for (const e of prefix) {
    const ok =
      e.event.type === 'genesis' ||
      (ancestors.has(state.cnOfLabel(e.event.subject)) && e.event.links.every(l => kept.has(toHex(l))))
    if (!ok) continue
    kept.add(e.idHex)
    out.push(e)
  }
  return out
}
