/** @module The miner's intake: event submissions on `kin/<fid>/ledger/submit/<label>`, validated and appended durably by the miner. */
import { KinError } from '../agent/errors.ts'
import { decodeSubmission } from '../agent/gossip/submit.ts'
import type { ServiceContext } from './context.ts'

/**
 * Handles one submission from device `fromCn` (the ACL lets only that device publish on its topic). Events come
 * in any order; the miner validates each once and writes the accepted ones with one fsync (shared with submissions
 * that arrive meanwhile) before they count; a head covering them follows within the seal interval. One log line per
 * accepted or refused event (resubmitted known events are silent); a payload that does not decode is dropped and logged.
 * A submission over the submitter's quota (QUOTA_RATE, QUOTA_BYTES) is refused whole, with one log line.
 */
export async function handleSubmission(
  ctx: ServiceContext,
  fromCn: string,
  topic: string,
  payload: Uint8Array,
): Promise<void> {
  let events: Uint8Array[]
  try {
    events = decodeSubmission(payload)
  } catch (err) {
    if (!(err instanceof KinError)) throw err
    ctx.log('warn', 'payload.dropped', {
      topic,
      from: fromCn,
      code: err.code,
      message: err.message,
      bytes: payload.length,
    })
    return
  }
  let result
  try {
    // L0's own CN is the miner's: its events are the fleet root's, charged to no budget.
    result = await ctx.miner.submit(events, ctx.now(), fromCn === ctx.cn ? undefined : fromCn)
  } catch (err) {
    const code = err instanceof KinError ? err.code : 'INTERNAL'
    ctx.log('error', 'ledger.error', { from: fromCn, code, message: (err as Error).message, events: events.length })
    return
  }
  if (result.overQuota !== undefined) {
    // One line per refused submission, not per event: a submitter over its budget must not also flood the log.
    ctx.log('warn', 'ledger.refused', {
      from: fromCn,
      code: result.overQuota.code,
      message: result.overQuota.message,
      events: events.length,
    })
    return
  }
  const state = ctx.ledger.ledger.state
  for (const e of result.accepted) {
    ctx.log('info', 'ledger.accepted', {
      from: fromCn,
      id: e.idHex,
      type: e.event.type,
      subject: state.cnOfLabel(e.event.subject),
      issuer: state.cnOfLabel(e.event.issuer),
    })
  }
  for (const r of result.refused)
    ctx.log('warn', 'ledger.refused', { from: fromCn, id: r.idHex, code: r.code, message: r.message })
  for (const e of result.pending) {
    ctx.log('warn', 'ledger.refused', {
      from: fromCn,
      id: e.idHex,
      code: 'MISSING_LINK',
      message: "an event it links to is in neither L0's ledger nor this submission",
    })
  }
  if (result.accepted.length > 0) await ctx.ledgerChanged(result.accepted)
}
