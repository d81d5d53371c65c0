/** @module Submitting events to the miner: a CBOR array of event byte strings on `kin/F/ledger/submit/<CN>`. */
import { encodeCbor } from '../codec/cbor.ts'
import type { EncodedEvent } from '../ledger/types.ts'
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
