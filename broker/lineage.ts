/** @module The lineage L0 hands a newly certified device: the ledger events its own ledger needs before its authorize event. */
import { toHex } from '../agent/codec/bytes.ts'
import type { LedgerState } from '../agent/ledger/state.ts'
import type { EncodedEvent } from '../agent/ledger/types.ts'

/**
 * Cap on the lineage's total bytes: below MAX_PAYLOAD_BYTES (64 KiB) with room for the certificate and framing.
 * Up to it the child gets L0's whole ledger before its authorize event, so it starts with everything L0 knew.
 */
export const MAX_LINEAGE_BYTES = 48 * 1024

/**
 * What lineageFor knows of one ledger's log, read once per appended event: every enrollment asks, and walking the
 * whole log each time made 10,000 enrollments cost 10,000 walks of a log growing to ~20,000 events.
 */
interface LogIndex {
  /** Log entries read so far. */
  read: number
  /** Event id (hex) → its position in the log. */
  position: Map<string, number>
  /** bytesBefore[i]: the bytes of log[0..i); one longer than `read`. */
  bytesBefore: number[]
  /** Subject CN → positions of the events about it, ascending (genesis not included). */
  about: Map<string, number[]>
}

// Keyed by the state object: a reopened ledger (L0's restart) is a new state and gets a new index.
const indexes = new WeakMap<LedgerState, LogIndex>()

/** The index of `state`'s log, brought up to its current length (the log only grows; a shorter one starts over). */
function indexOf(state: LedgerState): LogIndex {
  const log = state.log
  let ix = indexes.get(state)
  if (ix === undefined || ix.read > log.length) {
    ix = { read: 0, position: new Map(), bytesBefore: [0], about: new Map() }
    indexes.set(state, ix)
  }
  for (; ix.read < log.length; ix.read++) {
    const e = log[ix.read]!
    ix.position.set(e.idHex, ix.read)
    ix.bytesBefore.push(ix.bytesBefore[ix.read]! + e.bytes.length)
    if (e.event.type === 'genesis') continue
    const cn = state.cnOfLabel(e.event.subject)
    const list = ix.about.get(cn)
    if (list === undefined) ix.about.set(cn, [ix.read])
    else list.push(ix.read)
  }
  return ix
}

/**
 * The events a child's ledger needs before its own authorize event (docs/PAIRING.md step 6), in L0's ledger
 * order; the authorize event itself is not included (the child has it from its parent and appends it next).
 * The whole ledger prefix before it when that fits MAX_LINEAGE_BYTES; otherwise only genesis and the events
 * about the child's ancestors (their authorize, rekey, certified, revoke and policy events) — and, for a rekey, about
 * the child itself — keeping an event
 * only when every event it links to is kept, so the child's ledger accepts the list in order. The child syncs
 * the rest later. Cost: the events appended since the last call, plus the ancestors' events, not the whole log.
 */
export function lineageFor(state: LedgerState, authorize: EncodedEvent): EncodedEvent[] {
  const log = state.log
  const ix = indexOf(state)
  const end = ix.position.get(authorize.idHex) ?? log.length
  if (ix.bytesBefore[end]! <= MAX_LINEAGE_BYTES) return log.slice(0, end)
  const positions: number[] = []
  if (log[0]?.event.type === 'genesis') positions.push(0)
  const cns = new Set(state.lineage(state.cnOfLabel(authorize.event.issuer)))
  // A rekey's subject has bindings already (docs/PROTOCOL.md "Rekey by the parent"): the one it replaces, its revocations.
  if (authorize.event.type === 'rekey') cns.add(state.cnOfLabel(authorize.event.subject))
  for (const cn of cns) for (const p of ix.about.get(cn) ?? []) if (p < end) positions.push(p)
  positions.sort((a, b) => a - b)
  const kept = new Set<string>()
  const out: EncodedEvent[] = []
  for (const p of positions) {
    const e = log[p]!
    if (e.event.type !== 'genesis' && !e.event.links.every(l => kept.has(toHex(l)))) continue
    kept.add(e.idHex)
    out.push(e)
  }
  return out
}
