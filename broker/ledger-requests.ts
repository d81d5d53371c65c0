/** @module The miner's answers on `kin/<fid>/ledger/sync/<label>/req`: sync responses in bounded rounds, and proof bundles. */
import { KinError } from '../agent/errors.ts'
import { buildSyncResponse, encodeSyncResponse } from '../agent/ledger/sync.ts'
import { buildBundle, encodeBundle } from '../agent/ledger/bundle.ts'
import {
  MAX_BUNDLE_REPLY_BYTES,
  decodeLedgerRequest,
  encodeBundleError,
  encodeBundleReply,
  encodeSyncError,
  type LedgerRequest,
} from '../agent/gossip/ledger-wire.ts'
import { isFleetCn } from './acl.ts'
import type { ServiceContext } from './context.ts'

/** How many scheduled seals a bundle request waits through while its lineage has events no head covers yet. */
export const BUNDLE_SEAL_WAITS = 3

function codeOf(err: unknown): string {
  return err instanceof KinError ? err.code : 'INTERNAL'
}

async function answerBundle(
  ctx: ServiceContext,
  fromCn: string,
  cn: string,
  knownTreeSize: number | undefined,
): Promise<void> {
  const reply = (bytes: Uint8Array) => ctx.publish(ctx.topics.syncResp(fromCn), bytes)
  if (!isFleetCn(cn, ctx.fleet)) {
    ctx.log('warn', 'bundle.refused', { from: fromCn, cn, code: 'BAD_ARGUMENT' })
    await reply(encodeBundleError(cn, 'BAD_ARGUMENT', `${cn} is not a device name of fleet ${ctx.fleet}`))
    return
  }
  // Compact (version 2), with the consistency proof from the size asked for: BUNDLE_KNOWN_SIZE when the log does not
  // reach it, never a bundle that quietly lacks it.
  const build = () =>
    encodeBundle(
      buildBundle(ctx.miner.miner, cn, { compact: true, ...(knownTreeSize === undefined ? {} : { knownTreeSize }) }),
    )
  let bytes: Uint8Array
  try {
    for (let seals = 0; ; seals++) {
      try {
        bytes = build()
        break
      } catch (err) {
        // Events of this lineage may be durable but not sealed yet: answer after the next scheduled seal, and after
        // a few more while new ones keep coming in between. Never seal for a request: each forced head would go to
        // every device, and requests cost the asker nothing.
        const unsealed = err instanceof KinError && err.code === 'BUNDLE_INCOMPLETE' && ctx.miner.miner.unsealed
        if (!unsealed || seals >= BUNDLE_SEAL_WAITS) throw err
        await ctx.miner.nextSeal()
      }
    }
  } catch (err) {
    if (!(err instanceof KinError)) throw err
    ctx.log('warn', 'bundle.refused', { from: fromCn, cn, code: err.code, message: err.message })
    await reply(encodeBundleError(cn, err.code, err.message))
    return
  }
  if (bytes.length > MAX_BUNDLE_REPLY_BYTES) {
    ctx.log('warn', 'bundle.refused', { from: fromCn, cn, code: 'PAYLOAD_TOO_LARGE', bytes: bytes.length })
    await reply(
      encodeBundleError(
        cn,
        'PAYLOAD_TOO_LARGE',
        `the bundle of ${cn} is ${bytes.length} bytes, over what one message carries (${MAX_BUNDLE_REPLY_BYTES}); sync the ledger instead`,
      ),
    )
    return
  }
  await reply(encodeBundleReply(cn, bytes))
  ctx.log('info', 'bundle.sent', {
    from: fromCn,
    cn,
    bytes: bytes.length,
    height: ctx.miner.miner.latestHead()?.height,
  })
}

/**
 * Handles one request from device `fromCn` (the ACL lets only that device publish on its request topic; replies go
 * to its response topic only). A sync request gets buildSyncResponse: the latest head, a consistency proof from the
 * device's head when the miner knows it, and at most one bounded slice of events with `more` set when the device
 * should ask again. A bundle request gets `['bundle', cn, bundleBytes]` or `['bundle-error', cn, code, message]`,
 * against the latest head, or after the next scheduled seal when the lineage has events no head covers yet. Neither
 * request ever makes the miner seal.
 * A request that does not decode gets `['sync-error', code, message]` and a log line.
 */
export async function handleLedgerRequest(
  ctx: ServiceContext,
  fromCn: string,
  topic: string,
  payload: Uint8Array,
): Promise<void> {
  const resp = ctx.topics.syncResp(fromCn)
  let request: LedgerRequest
  try {
    request = decodeLedgerRequest(payload)
  } catch (err) {
    if (!(err instanceof KinError)) throw err
    ctx.log('warn', 'payload.dropped', {
      topic,
      from: fromCn,
      code: err.code,
      message: err.message,
      bytes: payload.length,
    })
    await ctx.publish(resp, encodeSyncError(err.code, err.message))
    return
  }
  if (request.kind === 'bundle') {
    await answerBundle(ctx, fromCn, request.cn, request.knownTreeSize)
    return
  }
  let bytes: Uint8Array
  try {
    bytes = encodeSyncResponse(buildSyncResponse(ctx.miner.miner, request.request))
  } catch (err) {
    if (!(err instanceof KinError)) throw err
    ctx.log('warn', 'sync.refused', { from: fromCn, code: codeOf(err), message: err.message })
    await ctx.publish(resp, encodeSyncError(err.code, err.message))
    return
  }
  await ctx.publish(resp, bytes)
}
