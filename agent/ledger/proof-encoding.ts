/** @module The compact proof encoding: packed hash lists, and the offline proof a requester sends a verifier that stated its head. */
import { DecodeError } from '../errors.ts'
import { decodeCbor, encodeCbor, MAX_UINT, type CborValue } from '../codec/cbor.ts'
import { decodeHead, type BlockHead } from './head.ts'
import { MAX_EVENT_BYTES } from './event.ts'
import { HASH_BYTES, MAX_PROOF_HASHES } from './merkle.ts'

/*
 * Hashes are packed back to back in one byte string (k × 32 bytes, k ≥ 0): 3 bytes of CBOR framing for the whole
 * list instead of 2 per hash.
 *
 * OFFLINE PROOF (deterministic CBOR), the answer to a verifier that stated its head (treeSize m, root):
 *   [1, m, headBytes, [eventBytes…], [leafIndex…], proof]
 *   - headBytes: the requester's signed head, tree size n > m;
 *   - the events the verifier lacks: those of the requester's lineage (bundle.ts lineageEvents) at leaves m … n−1,
 *     in leaf order (strictly increasing indexes); never the genesis, never an event under m;
 *   - proof: ONE multi-leaf proof with boundary m (multiproof.ts), packed: it places those events under the head's
 *     root AND folds into the root of the verifier's tree of m leaves, so it is the inclusion proof and the RFC 9162
 *     §2.1.4 consistency proof at once, each hash sent once.
 * Limits: MAX_OFFLINE_PROOF_BYTES encoded, 1..MAX_OFFLINE_PROOF_EVENTS events, at most 64 hashes per event plus 64.
 */

/** The only offline proof format version. */
export const OFFLINE_PROOF_VERSION = 1
/** Largest encoded offline proof a verifier reads (a lineage 8 deep that the verifier lacks entirely is about 5 KiB). */
export const MAX_OFFLINE_PROOF_BYTES = 16 * 1024
/** Most events one offline proof carries. */
export const MAX_OFFLINE_PROOF_EVENTS = 128

/** A decoded offline proof (see the module comment). */
export interface OfflineProof {
  version: number
  /** The verifier's tree size the proof starts from. */
  fromTreeSize: number
  headBytes: Uint8Array
  head: BlockHead
  events: Uint8Array[]
  leafIndexes: number[]
  /** The multi-leaf proof with boundary `fromTreeSize`: inclusion and consistency in one. */
  proof: Uint8Array[]
}

function fail(what: string, field: string, why: string): never {
  throw new DecodeError('DECODE_FIELD', `${what} field "${field}" ${why}`, { detail: { field } })
}

/** `hashes` back to back in one byte string. */
export function packHashes(hashes: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(hashes.length * HASH_BYTES)
  hashes.forEach((h, i) => {
    if (h.length !== HASH_BYTES) throw new RangeError(`"hashes[${i}]" expected ${HASH_BYTES} bytes, got ${h.length}`)
    out.set(h, i * HASH_BYTES)
  })
  return out
}

/** The hashes of a packed byte string of at most `max` hashes; DecodeError DECODE_FIELD otherwise. */
export function readPackedHashes(v: CborValue | undefined, field: string, max: number): Uint8Array[] {
  if (!(v instanceof Uint8Array) || v.length % HASH_BYTES !== 0)
    fail('proof', field, `must be a byte string of whole ${HASH_BYTES}-byte hashes`)
  const count = v.length / HASH_BYTES
  if (count > max) fail('proof', field, `holds ${count} hashes, more than ${max}`)
  const out: Uint8Array[] = []
  for (let i = 0; i < count; i++) out.push(v.slice(i * HASH_BYTES, (i + 1) * HASH_BYTES))
  return out
}

/** Canonical bytes of an offline proof. */
export function encodeOfflineProof(p: OfflineProof): Uint8Array {
  return encodeCbor([p.version, p.fromTreeSize, p.headBytes, p.events, p.leafIndexes, packHashes(p.proof)])
}

function readUint(v: CborValue | undefined, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_UINT)
    fail('proof', field, 'must be an unsigned integer')
  return v
}

function readList(v: CborValue | undefined, field: string, min: number, max: number): CborValue[] {
  if (!Array.isArray(v)) fail('proof', field, 'must be an array')
  if (v.length < min || v.length > max)
    throw new DecodeError('DECODE_SHAPE', `proof field "${field}" must have ${min}..${max} items, got ${v.length}`, {
      detail: { field },
    })
  return v
}

/**
 * Strict decoding of an untrusted offline proof (shape and limits of the module comment; leaf indexes strictly
 * increasing). The caller refuses oversized bytes first (PROOF_OVERSIZE); DecodeError with a code otherwise. Where the
 * indexes lie (at or above m, below the head's tree size) is the verifier's to judge, with its own codes; no signature
 * or proof is checked here.
 */
export function decodeOfflineProof(bytes: Uint8Array): OfflineProof {
  const v = decodeCbor(bytes, MAX_OFFLINE_PROOF_BYTES)
  if (!Array.isArray(v) || v.length !== 6)
    throw new DecodeError('DECODE_SHAPE', 'an offline proof is an array of 6 items')
  const version = readUint(v[0], 'version')
  if (version !== OFFLINE_PROOF_VERSION)
    throw new DecodeError(
      'UNKNOWN_VERSION',
      `offline proof version ${version} is not supported (this agent reads version ${OFFLINE_PROOF_VERSION})`,
    )
  const fromTreeSize = readUint(v[1], 'fromTreeSize')
  if (!(v[2] instanceof Uint8Array)) fail('proof', 'head', 'must be a byte string')
  const headBytes = v[2]
  const head = decodeHead(headBytes)
  const events = readList(v[3], 'events', 1, MAX_OFFLINE_PROOF_EVENTS).map(e => {
    if (!(e instanceof Uint8Array) || e.length === 0 || e.length > MAX_EVENT_BYTES)
      fail('proof', 'events[]', `must be 1..${MAX_EVENT_BYTES} bytes`)
    return e
  })
  let last = -1
  const leafIndexes = readList(v[4], 'leafIndexes', events.length, events.length).map(x => {
    const i = readUint(x, 'leafIndexes[]')
    if (i <= last) fail('proof', 'leafIndexes[]', 'must increase strictly')
    last = i
    return i
  })
  const proof = readPackedHashes(v[5], 'proof', (events.length + 1) * MAX_PROOF_HASHES)
  return { version, fromTreeSize, headBytes, head, events, leafIndexes, proof }
}
