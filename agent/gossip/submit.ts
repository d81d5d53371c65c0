/** @module Submitting events to the miner: a CBOR array of event byte strings on `kin/<fid>/ledger/submit/<label>`. */
import { encodeCbor } from '../codec/cbor.ts'
import { KinError } from '../errors.ts'
import type { EncodedEvent } from '../ledger/types.ts'
import { MAX_CLOCK_SKEW } from '../ledger/validate.ts'
import type { GossipClient } from './client.ts'
import { fleetTopics } from './topics.ts'

/** The submission payload: CBOR [event bytes…], in any order (the miner orders them by their links). */
export function encodeSubmission(events: EncodedEvent[]): Uint8Array {
  return encodeCbor(events.map(e => e.bytes))
}

/**
 * Publishes this device's events to the miner and resolves when the broker acknowledged them (PUBACK). The
 * miner validates them on its own; a refusal shows in its log, and the events reach other devices by sync.
 */
export function submitEvents(client: GossipClient, fleet: string, cn: string, events: EncodedEvent[]): Promise<void> {
  return client.publish(fleetTopics(fleet).submit(cn), encodeSubmission(events))
}

/**
 * This device's own uncovered events the miner will refuse TIME_TOO_OLD by the device's clock `now`: signed more
 * than MAX_CLOCK_SKEW ago, while it could not reach the miner. Undefined when there are none; otherwise the coded
 * error that says so, naming them: each must be signed again with a fresh time (the miner timestamps the log).
 */
export function staleOwnEvents(events: readonly EncodedEvent[], now: number): KinError | undefined {
  const stale = events.filter(e => e.event.time < now - MAX_CLOCK_SKEW)
  if (stale.length === 0) return undefined
  const oldest = Math.min(...stale.map(e => e.event.time))
  return new KinError('TIME_TOO_OLD', `${stale.length} of this device's own events not yet in the miner's log were signed up to ${now - oldest} s ago `
    + `(more than ${MAX_CLOCK_SKEW} s): the miner refuses them; sign them again with a fresh time (e.g. run the kin command that made them again)`,
  { detail: { ids: stale.map(e => e.idHex), types: stale.map(e => e.event.type) } })
}
