/** @module Catching up with the miner: sync requests and responses (strict codecs) and how the miner answers them. */
import { DecodeError, KinError } from '../errors.ts'
import { decodeCbor, encodeCbor, MAX_UINT, type CborValue } from '../codec/cbor.ts'
import { abytes, toHex } from '../codec/bytes.ts'
import { MAX_EVENT_BYTES } from './event.ts'
import { decodeHead, headId, type BlockHead } from './head.ts'
import { HASH_BYTES, MAX_PROOF_HASHES } from './merkle.ts'
import type { Miner } from './miner.ts'
import type { CryptoProvider } from '../ports/platform.ts'

/*
 * Wire formats (deterministic CBOR, RFC 8949 §4.2.1):
 *   request  = [fromTreeSize, fromHeadId / null]
 *     fromTreeSize: the first log index the device wants (it holds the miner's log up to there);
 *     fromHeadId:   the id of the last head the device verified (null when it has none), so the miner can prove
 *                   its current head consistent with it.
 *   response = [headBytes, proofFrom, consistencyProof, from, events, more]
 *     headBytes:        the miner's latest signed head (head.ts encoding);
 *     proofFrom, consistencyProof: RFC 9162 §2.1.4 proof from tree size proofFrom to head.treeSize; proofFrom is
 *                       the tree size of the device's head when the miner knows it, else 0 (with an empty proof);
 *     from, events:     encoded events at log indexes from, from+1, … in the miner's order, never past head.treeSize;
 *     more:             true when events stop before head.treeSize (capped by count or bytes): ask again from
 *                       from + events.length.
 * The same response built from the previous head (`buildHeadAnnouncement`) is what the miner publishes on the
 * events topic after each seal, so a device that holds that previous head advances without asking.
 */

/** Largest encoded sync request: two items, 3 + 34 bytes. */
export const MAX_SYNC_REQUEST_BYTES = 64
/** Largest encoded sync response accepted or built: under the 64 KiB MQTT payload limit with room to spare. */
export const MAX_SYNC_RESPONSE_BYTES = 60 * 1024
/** Most events one response carries. */
export const MAX_SYNC_EVENTS = 1024
/** Default count cap per response. */
export const DEFAULT_SYNC_EVENTS = 256

/** A device asking the miner for what it lacks. */
export interface SyncRequest {
  /** First log index wanted. */
  fromTreeSize: number
  /** Id of the device's last verified head, if it has one. */
  fromHeadId: Uint8Array | undefined
}

/** The miner's answer: its latest head, a consistency proof, and a slice of its log. */
export interface SyncResponse {
  headBytes: Uint8Array
  head: BlockHead
  proofFrom: number
  consistencyProof: Uint8Array[]
  from: number
  events: Uint8Array[]
  more: boolean
}

function fail(what: string, field: string, why: string): never {
  throw new DecodeError('DECODE_FIELD', `${what} field "${field}" ${why}`, { detail: { field } })
}

function readUint(what: string, v: CborValue | undefined, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_UINT)
    fail(what, field, 'must be an unsigned integer')
  return v
}

function readArray(what: string, v: CborValue | undefined, field: string, max: number): CborValue[] {
  if (!Array.isArray(v)) fail(what, field, 'must be an array')
  if (v.length > max) fail(what, field, `must have at most ${max} items, got ${v.length}`)
  return v
}

/** Canonical bytes of a sync request. */
export function encodeSyncRequest(request: SyncRequest): Uint8Array {
  const { fromTreeSize, fromHeadId } = request
  if (!Number.isInteger(fromTreeSize) || fromTreeSize < 0 || fromTreeSize > MAX_UINT)
    throw new RangeError(`"fromTreeSize" expected an integer in [0, ${MAX_UINT}], got ${fromTreeSize}`)
  if (fromHeadId !== undefined) abytes('fromHeadId', fromHeadId, HASH_BYTES)
  return encodeCbor([fromTreeSize, fromHeadId ?? null])
}

/** Strict decoding of an untrusted sync request; DecodeError with a code otherwise. */
export function decodeSyncRequest(bytes: Uint8Array): SyncRequest {
  const v = decodeCbor(bytes, MAX_SYNC_REQUEST_BYTES)
  if (!Array.isArray(v) || v.length !== 2)
    throw new DecodeError('DECODE_SHAPE', 'a sync request is an array of 2 items')
  const fromTreeSize = readUint('sync request', v[0], 'fromTreeSize')
  const h = v[1]
  if (h !== null && !(h instanceof Uint8Array && h.length === HASH_BYTES))
    fail('sync request', 'fromHeadId', `must be null or ${HASH_BYTES} bytes`)
  return { fromTreeSize, fromHeadId: h === null ? undefined : h }
}

/** Canonical bytes of a sync response. */
export function encodeSyncResponse(response: SyncResponse): Uint8Array {
  const r = response
  return encodeCbor([r.headBytes, r.proofFrom, r.consistencyProof, r.from, r.events, r.more])
}

/**
 * Strict decoding of an untrusted sync response: the head decodes, proofFrom and the event range lie within its
 * tree, `more` says exactly whether the range stops short of it, hashes are 32 bytes, events 1..MAX_EVENT_BYTES.
 * DecodeError (DECODE_CBOR, _TRAILING, _NONCANONICAL, _OVERSIZE, _SHAPE, _FIELD) otherwise. No signature check.
 */
export function decodeSyncResponse(bytes: Uint8Array, maxBytes: number = MAX_SYNC_RESPONSE_BYTES): SyncResponse {
  const v = decodeCbor(bytes, maxBytes)
  const what = 'sync response'
  if (!Array.isArray(v) || v.length !== 6)
    throw new DecodeError('DECODE_SHAPE', 'a sync response is an array of 6 items')
  if (!(v[0] instanceof Uint8Array)) fail(what, 'head', 'must be a byte string')
  const headBytes = v[0]
  const head = decodeHead(headBytes)
  const proofFrom = readUint(what, v[1], 'proofFrom')
  if (proofFrom > head.treeSize) fail(what, 'proofFrom', `must be at most the head's tree size ${head.treeSize}`)
  const consistencyProof = readArray(what, v[2], 'consistencyProof', MAX_PROOF_HASHES).map(h => {
    if (!(h instanceof Uint8Array) || h.length !== HASH_BYTES)
      fail(what, 'consistencyProof[]', `must be ${HASH_BYTES} bytes`)
    return h
  })
  const from = readUint(what, v[3], 'from')
  const events = readArray(what, v[4], 'events', MAX_SYNC_EVENTS).map(e => {
    if (!(e instanceof Uint8Array) || e.length === 0 || e.length > MAX_EVENT_BYTES)
      fail(what, 'events[]', `must be byte strings of 1..${MAX_EVENT_BYTES} bytes`)
    return e
  })
  if (from + events.length > head.treeSize) fail(what, 'events', `run past the head's tree size ${head.treeSize}`)
  if (typeof v[5] !== 'boolean') fail(what, 'more', 'must be true or false')
  const more = v[5]
  if (more !== from + events.length < head.treeSize)
    fail(what, 'more', "must be true exactly when the events stop before the head's tree size")
  return { headBytes, head, proofFrom, consistencyProof, from, events, more }
}

/**
 * The miner's answer to `request`: its latest head, a consistency proof from the device's head (by id; from 0
 * with an empty proof when the miner does not know it, which the device then refuses as unproven), and the events
 * from `fromTreeSize` on, at most `maxEvents` and about `maxBytes` (always at least one event when any is due).
 * HEAD_MISSING before the miner's first seal.
 */
export function buildSyncResponse(
  miner: Miner,
  request: SyncRequest,
  maxEvents: number = DEFAULT_SYNC_EVENTS,
  maxBytes: number = MAX_SYNC_RESPONSE_BYTES,
): SyncResponse {
  const head = miner.latestHead()
  const headBytes = miner.latestHeadBytes()
  if (head === undefined || headBytes === undefined)
    throw new KinError('HEAD_MISSING', 'the miner has not signed a head yet')
  if (!Number.isInteger(maxEvents) || maxEvents < 1 || maxEvents > MAX_SYNC_EVENTS)
    throw new RangeError(`"maxEvents" expected an integer in [1, ${MAX_SYNC_EVENTS}], got ${maxEvents}`)
  const n = head.treeSize
  const known = request.fromHeadId === undefined ? undefined : miner.headById(toHex(request.fromHeadId))
  const proofFrom = known !== undefined && known.treeSize <= n ? known.treeSize : 0
  const consistencyProof = miner.consistencyProof(proofFrom, n)
  // A device ahead of the miner (a miner that lost events) gets the head, which it then refuses as a rollback.
  const from = Math.min(request.fromTreeSize, n)
  // Room for the head, the proof and the framing (array and string heads: at most 5 bytes each).
  let budget = maxBytes - headBytes.length - consistencyProof.length * (HASH_BYTES + 2) - 40
  const events: Uint8Array[] = []
  for (const e of miner.eventsAfter(from, maxEvents, n)) {
    budget -= e.length + 3
    if (budget < 0 && events.length > 0) break
    events.push(e)
  }
  return { headBytes, head, proofFrom, consistencyProof, from, events, more: from + events.length < n }
}

/**
 * What the miner publishes on the events topic after sealing: the response a device holding `previous` (the head
 * before the new one; undefined for the first) would get, so such devices advance without a request.
 */
export function buildHeadAnnouncement(
  crypto: CryptoProvider,
  miner: Miner,
  previous: BlockHead | undefined,
  maxEvents: number = DEFAULT_SYNC_EVENTS,
  maxBytes: number = MAX_SYNC_RESPONSE_BYTES,
): SyncResponse {
  const request: SyncRequest =
    previous === undefined
      ? { fromTreeSize: 0, fromHeadId: undefined }
      : { fromTreeSize: previous.treeSize, fromHeadId: headId(crypto, previous) }
  return buildSyncResponse(miner, request, maxEvents, maxBytes)
}
