/** @module Ledger topics on the wire: the miner's announcements on `ledger/events`, and requests and answers on `ledger/sync/<CN>/{req,resp}`. */
import { DecodeError } from '../errors.ts'
import { decodeCbor, encodeCbor, MAX_UINT, type CborValue } from '../codec/cbor.ts'
import {
  decodeSyncRequest,
  decodeSyncResponse,
  encodeSyncRequest,
  type SyncRequest,
  type SyncResponse,
} from '../ledger/sync.ts'
import { MAX_PAYLOAD_BYTES } from './topics.ts'

/*
 * Every payload is deterministic CBOR (RFC 8949 §4.2.1). docs/BROKERS.md, "Ledger topics", is the prose version.
 *
 *   kin/<fid>/ledger/head (retained)      headBytes                         the miner's latest signed head (head.ts)
 *   kin/<fid>/ledger/events               a sync response (sync.ts)         built for a device holding the previous head:
 *                                         [headBytes, proofFrom, consistencyProof, from, events, more]
 *   kin/<fid>/ledger/sync/<label>/req     [fromTreeSize, fromHeadId|null]   a sync request (sync.ts)
 *                                         ['bundle', cn, knownTreeSize|null] a proof-bundle request for any CN
 *   kin/<fid>/ledger/sync/<label>/resp    [headBytes, …]  (6 items)         the sync response
 *                                         ['sync-error', code, message]
 *                                         ['bundle', cn, bundleBytes]       bundle.ts encoding
 *                                         ['bundle-error', cn, code, message]
 *
 * The two request forms differ in their first item (an unsigned integer or the text 'bundle'), the response forms
 * likewise (a byte string, or a text tag), so one topic pair carries both without a version bump of sync.ts.
 */

/** Largest encoded bundle request: the tag, a CN of at most 253 characters, a tree size. */
export const MAX_BUNDLE_REQUEST_BYTES = 300
/** Longest DNS name (RFC 1035 §2.3.4): the longest CN a bundle request can name. */
export const MAX_CN_CHARS = 253
/** Longest refusal message carried in an error reply. */
export const MAX_ERROR_MESSAGE_CHARS = 1024
/** Largest bundle a reply carries: the MQTT payload limit less room for the tag, the CN and the framing. */
export const MAX_BUNDLE_REPLY_BYTES = MAX_PAYLOAD_BYTES - 512

/** What a device asks the miner on its sync request topic. */
export type LedgerRequest =
  { kind: 'sync'; request: SyncRequest } | { kind: 'bundle'; cn: string; knownTreeSize: number | undefined }

/** What the miner answers on the device's sync response topic. */
export type LedgerResponse =
  | { kind: 'sync'; response: SyncResponse }
  | { kind: 'bundle'; cn: string; bundleBytes: Uint8Array }
  | { kind: 'error'; request: 'sync' | 'bundle'; cn: string | undefined; code: string; message: string }

function fail(what: string, why: string): never {
  throw new DecodeError('DECODE_FIELD', `${what} ${why}`)
}

function readCn(what: string, v: CborValue | undefined): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_CN_CHARS)
    fail(what, `must name a CN of 1..${MAX_CN_CHARS} characters`)
  return v
}

function readCode(what: string, v: CborValue | undefined): string {
  if (typeof v !== 'string' || !/^[A-Z][A-Z0-9_]{0,47}$/.test(v)) fail(what, 'must carry an error code in capitals')
  return v
}

function readMessage(what: string, v: CborValue | undefined): string {
  if (typeof v !== 'string' || v.length > MAX_ERROR_MESSAGE_CHARS)
    fail(what, `must carry a message of at most ${MAX_ERROR_MESSAGE_CHARS} characters`)
  return v
}

/** A sync request (sync.ts encoding), for symmetry with encodeBundleRequest. */
export function encodeLedgerSyncRequest(request: SyncRequest): Uint8Array {
  return encodeSyncRequest(request)
}

/** `['bundle', cn, knownTreeSize|null]`: asks the miner for `cn`'s proof bundle, with a consistency proof from `knownTreeSize` when given. */
export function encodeBundleRequest(cn: string, knownTreeSize?: number): Uint8Array {
  if (typeof cn !== 'string' || cn.length === 0 || cn.length > MAX_CN_CHARS)
    throw new RangeError(`"cn" expected 1..${MAX_CN_CHARS} characters`)
  if (
    knownTreeSize !== undefined &&
    (!Number.isInteger(knownTreeSize) || knownTreeSize < 0 || knownTreeSize > MAX_UINT)
  ) {
    throw new RangeError(`"knownTreeSize" expected an integer in [0, ${MAX_UINT}], got ${knownTreeSize}`)
  }
  return encodeCbor(['bundle', cn, knownTreeSize ?? null])
}

/** Strict decoding of an untrusted request on a sync request topic; DecodeError with a code otherwise. */
export function decodeLedgerRequest(bytes: Uint8Array): LedgerRequest {
  const v = decodeCbor(bytes, MAX_BUNDLE_REQUEST_BYTES)
  if (!Array.isArray(v) || v.length === 0)
    throw new DecodeError(
      'DECODE_SHAPE',
      "a ledger request is a sync request [fromTreeSize, fromHeadId] or ['bundle', cn, knownTreeSize]",
    )
  if (typeof v[0] === 'number') return { kind: 'sync', request: decodeSyncRequest(bytes) }
  if (v[0] !== 'bundle' || v.length !== 3)
    throw new DecodeError('DECODE_SHAPE', "a bundle request is ['bundle', cn, knownTreeSize|null]")
  const cn = readCn('bundle request', v[1])
  const k = v[2]
  if (k !== null && (typeof k !== 'number' || !Number.isInteger(k) || k < 0 || k > MAX_UINT))
    fail('bundle request', 'knownTreeSize must be null or an unsigned integer')
  return { kind: 'bundle', cn, knownTreeSize: k === null ? undefined : k }
}

/** `['bundle', cn, bundleBytes]`: the miner's bundle for `cn`. */
export function encodeBundleReply(cn: string, bundleBytes: Uint8Array): Uint8Array {
  return encodeCbor(['bundle', cn, bundleBytes])
}

function clip(message: string): string {
  return message.length > MAX_ERROR_MESSAGE_CHARS ? message.slice(0, MAX_ERROR_MESSAGE_CHARS - 1) + '…' : message
}

/** `['bundle-error', cn, code, message]`: the miner has no bundle for `cn` (BUNDLE_INCOMPLETE for an unknown CN, PAYLOAD_TOO_LARGE…). */
export function encodeBundleError(cn: string, code: string, message: string): Uint8Array {
  return encodeCbor(['bundle-error', cn, code, clip(message)])
}

/** `['sync-error', code, message]`: a request the miner could not read or answer. */
export function encodeSyncError(code: string, message: string): Uint8Array {
  return encodeCbor(['sync-error', code, clip(message)])
}

/**
 * Strict decoding of an untrusted reply on a sync response topic. A sync response is checked by decodeSyncResponse
 * (shape only: no signature or proof is checked here); a bundle's bytes are left to decodeBundle/verifyBundle.
 */
export function decodeLedgerResponse(bytes: Uint8Array, maxBytes: number = MAX_PAYLOAD_BYTES): LedgerResponse {
  const v = decodeCbor(bytes, maxBytes)
  if (!Array.isArray(v) || v.length === 0)
    throw new DecodeError(
      'DECODE_SHAPE',
      "a ledger reply is a sync response, ['bundle', …], ['bundle-error', …] or ['sync-error', …]",
    )
  const tag = v[0]
  if (tag instanceof Uint8Array) return { kind: 'sync', response: decodeSyncResponse(bytes, maxBytes) }
  if (tag === 'bundle' && v.length === 3) {
    const bundleBytes = v[2]
    if (!(bundleBytes instanceof Uint8Array) || bundleBytes.length === 0)
      fail('bundle reply', 'must carry the bundle as a byte string')
    return { kind: 'bundle', cn: readCn('bundle reply', v[1]), bundleBytes }
  }
  if (tag === 'bundle-error' && v.length === 4) {
    return {
      kind: 'error',
      request: 'bundle',
      cn: readCn('bundle error', v[1]),
      code: readCode('bundle error', v[2]),
      message: readMessage('bundle error', v[3]),
    }
  }
  if (tag === 'sync-error' && v.length === 3) {
    return {
      kind: 'error',
      request: 'sync',
      cn: undefined,
      code: readCode('sync error', v[1]),
      message: readMessage('sync error', v[2]),
    }
  }
  throw new DecodeError(
    'DECODE_SHAPE',
    `unknown ledger reply ${typeof tag === 'string' ? `'${tag.slice(0, 32)}'` : typeof tag} of ${v.length} items`,
  )
}

/**
 * Decodes a message on `kin/<fid>/ledger/events`: a sync response the miner built for a device holding the head before
 * the new one (sync.ts buildHeadAnnouncement). `from` says where its events start in the miner's log, so a device
 * covering fewer events sees the gap and sends a sync request; `Replica.applySyncResponse` takes the bytes as they are.
 */
export function decodeEventsAnnouncement(bytes: Uint8Array): SyncResponse {
  return decodeSyncResponse(bytes, MAX_PAYLOAD_BYTES)
}
