/** @module Splitting a device's events into submissions the broker and the miner take: bounded in count and bytes. */
import type { EncodedEvent } from '../ledger/types.ts'
import { MAX_PAYLOAD_BYTES } from './topics.ts'

/** Most events in one submission: the miner's limit, decodeSubmission's. */
export const MAX_SUBMISSION_EVENTS = 256
/** Most event bytes in one submission, leaving room for the CBOR framing (≤ 3 bytes per event, 3 for the array). */
export const MAX_SUBMISSION_BYTES = MAX_PAYLOAD_BYTES - 2048

/**
 * Consecutive runs of `events` that each fit one submission, in the order given (the miner orders a batch by its
 * links, so an event and what it links to may also travel in different batches, earlier ones first).
 */
export function submissionBatches(events: readonly EncodedEvent[]): EncodedEvent[][] {
  const batches: EncodedEvent[][] = []
  let batch: EncodedEvent[] = []
  let bytes = 0
  for (const e of events) {
    const size = e.bytes.length + 3
    if (batch.length > 0 && (batch.length >= MAX_SUBMISSION_EVENTS || bytes + size > MAX_SUBMISSION_BYTES)) {
      batches.push(batch)
      batch = []
      bytes = 0
    }
    batch.push(e)
    bytes += size
  }
  if (batch.length > 0) batches.push(batch)
  return batches
}
