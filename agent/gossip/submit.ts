/** @module Submitting events to the miner: a CBOR array of event byte strings on `kin/<fid>/ledger/submit/<label>`. */
import { decodeCbor, encodeCbor } from '../codec/cbor.ts'
import { DecodeError, KinError } from '../errors.ts'
import { MAX_EVENT_BYTES } from '../ledger/event.ts'
import type { EncodedEvent } from '../ledger/types.ts'
import { MAX_CLOCK_SKEW } from '../ledger/validate.ts'
import type { GossipClient } from './client.ts'
import { MAX_SUBMISSION_EVENTS } from './submit-batches.ts'
import { MAX_PAYLOAD_BYTES, fleetTopics } from './topics.ts'

/** The submission payload: CBOR [event bytes…], in any order (the miner orders them by their links). */
export function encodeSubmission(events: EncodedEvent[]): Uint8Array {
  return encodeCbor(events.map(e => e.bytes))
}

/** Decodes a submission from untrusted bytes: a CBOR array of 1..MAX_SUBMISSION_EVENTS event byte strings. DecodeError otherwise. */
export function decodeSubmission(payload: Uint8Array): Uint8Array[] {
  const v = decodeCbor(payload, MAX_PAYLOAD_BYTES)
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_SUBMISSION_EVENTS) {
    throw new DecodeError(
      'DECODE_SHAPE',
      `a submission is a CBOR array of 1..${MAX_SUBMISSION_EVENTS} event byte strings`,
    )
  }
  for (const e of v) {
    if (!(e instanceof Uint8Array) || e.length > MAX_EVENT_BYTES)
      throw new DecodeError('DECODE_FIELD', `a submission holds event byte strings of at most ${MAX_EVENT_BYTES} bytes`)
  }
  return v as Uint8Array[]
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
  return new KinError(
    'TIME_TOO_OLD',
    `${stale.length} of this device's own events not yet in the miner's log were signed up to ${now - oldest} s ago ` +
      `(more than ${MAX_CLOCK_SKEW} s): the miner refuses them; sign them again with a fresh time (e.g. run the kin command that made them again)`,
    { detail: { ids: stale.map(e => e.idHex), types: stale.map(e => e.event.type) } },
  )
}
