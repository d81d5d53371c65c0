/**
 * @module The delegated tier's ledger message (PROTOCOL.md §11.6): L0 → one Espruino device, a head MACed under the key
 * L0 shares with that device, with the events about the device and its ancestors and their RFC 9162 inclusion proofs.
 * firmware-shims/espruino/ledger.js is the other end; this file is the format's one encoder, and a decoder the tests
 * and tools share.
 *
 *   message = version(1) = 1 ‖ treeSize(u32) ‖ root(32) ‖ headTime(u32) ‖ count(1) ‖ entry × count ‖ mac(32)
 *   entry   = leafIndex(u32) ‖ eventLength(u16) ‖ event bytes ‖ pathLength(1) ‖ path hash(32) × pathLength
 *   mac     = HMAC-SHA256(ledger key, every byte before it)
 *
 * Integers are big-endian. A device checks the size first, then the MAC, then the head against the one it holds,
 * then every entry; it needs SHA-256 only.
 */
import { hmac } from '@noble/hashes/hmac.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesEqual, concatBytes, utf8 } from '../agent/codec/bytes.ts'
import { KinError } from '../agent/errors.ts'
import { HASH_BYTES, MAX_PROOF_HASHES } from '../agent/ledger/merkle.ts'

/** The format's version byte. */
export const DELEGATED_VERSION = 1
/** Longest message either end accepts (bytes): an Espruino board holds it whole as a string while checking it. */
export const MAX_DELEGATED_BYTES = 2048
/** Most entries in one message. */
export const MAX_DELEGATED_ENTRIES = 8
/** Bytes before the first entry: version, tree size, root, head time, count. */
export const DELEGATED_HEADER_BYTES = 1 + 4 + HASH_BYTES + 4 + 1
/** Bytes of the MAC that ends every message. */
export const DELEGATED_MAC_BYTES = 32
/** Longest boot request a device may send (its payload is otherwise unread). */
export const MAX_DELEGATED_REQUEST_BYTES = 64

// Labels of the two keys derived from the secret written at flashing (HMAC-SHA256(secret, label)).
const VERDICT_KEY_LABEL = 'kinship/delegated/verdict/v1'
const LEDGER_KEY_LABEL = 'kinship/delegated/ledger/v1'

/** One event of a message with its place in the tree. */
export interface DelegatedEntry {
  leafIndex: number
  eventBytes: Uint8Array
  proof: Uint8Array[]
}

/** A message's content: the head it names and its entries. */
export interface DelegatedHead {
  treeSize: number
  root: Uint8Array
  time: number
  entries: DelegatedEntry[]
}

/**
 * The two keys a delegated device derives from the 32-byte secret it is flashed with: the verdict key its verifier
 * holds (verdict.js) and the ledger key L0 holds. Each party gets only its own, so neither can speak for the other.
 */
export function delegatedKeys(secret: Uint8Array): { verdictKey: Uint8Array; ledgerKey: Uint8Array } {
  if (!(secret instanceof Uint8Array) || secret.length < 32)
    throw new RangeError(`"secret" expected at least 32 bytes, got ${secret?.length}`)
  return {
    verdictKey: hmac(sha256, secret, utf8(VERDICT_KEY_LABEL)),
    ledgerKey: hmac(sha256, secret, utf8(LEDGER_KEY_LABEL)),
  }
}

/** Bytes one entry takes in a message. */
export function entryBytes(e: DelegatedEntry): number {
  return 4 + 2 + e.eventBytes.length + 1 + e.proof.length * HASH_BYTES
}

function u32(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
    throw new RangeError(`expected an unsigned 32-bit integer, got ${n}`)
  return Uint8Array.of(n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255)
}

/** The message for `head`, MACed under `ledgerKey`; RangeError when it would exceed MAX_DELEGATED_BYTES or MAX_DELEGATED_ENTRIES. */
export function encodeDelegatedHead(ledgerKey: Uint8Array, head: DelegatedHead): Uint8Array {
  if (head.root.length !== HASH_BYTES)
    throw new RangeError(`"root" expected ${HASH_BYTES} bytes, got ${head.root.length}`)
  if (head.entries.length > MAX_DELEGATED_ENTRIES)
    throw new RangeError(`at most ${MAX_DELEGATED_ENTRIES} entries, got ${head.entries.length}`)
  const parts: Uint8Array[] = [
    Uint8Array.of(DELEGATED_VERSION),
    u32(head.treeSize),
    head.root,
    u32(head.time),
    Uint8Array.of(head.entries.length),
  ]
  for (const e of head.entries) {
    if (e.eventBytes.length === 0 || e.eventBytes.length > 0xffff)
      throw new RangeError(`event of ${e.eventBytes.length} bytes`)
    if (e.proof.length > MAX_PROOF_HASHES) throw new RangeError(`proof of ${e.proof.length} hashes`)
    parts.push(
      u32(e.leafIndex),
      Uint8Array.of(e.eventBytes.length >>> 8, e.eventBytes.length & 255),
      e.eventBytes,
      Uint8Array.of(e.proof.length),
      ...e.proof,
    )
  }
  const body = concatBytes(...parts)
  if (body.length + DELEGATED_MAC_BYTES > MAX_DELEGATED_BYTES)
    throw new RangeError(`a message of ${body.length + DELEGATED_MAC_BYTES} bytes exceeds ${MAX_DELEGATED_BYTES}`)
  return concatBytes(body, hmac(sha256, ledgerKey, body))
}

function refuse(code: 'DELEGATED_OVERSIZE' | 'DELEGATED_FORMAT' | 'DELEGATED_MAC', message: string): never {
  throw new KinError(code, message)
}

/**
 * Reads a message as ledger.js does, for tests and tools: DELEGATED_OVERSIZE, DELEGATED_FORMAT, DELEGATED_MAC, in
 * that order. It checks neither the head's age nor the proofs: those need what the device holds.
 */
export function decodeDelegatedHead(ledgerKey: Uint8Array, bytes: Uint8Array): DelegatedHead {
  if (bytes.length > MAX_DELEGATED_BYTES)
    refuse('DELEGATED_OVERSIZE', `a message of ${bytes.length} bytes exceeds ${MAX_DELEGATED_BYTES}`)
  if (bytes.length < DELEGATED_HEADER_BYTES + DELEGATED_MAC_BYTES || bytes[0] !== DELEGATED_VERSION)
    refuse('DELEGATED_FORMAT', 'not a version 1 delegated head message')
  const body = bytes.subarray(0, bytes.length - DELEGATED_MAC_BYTES)
  if (!bytesEqual(hmac(sha256, ledgerKey, body), bytes.subarray(body.length)))
    refuse('DELEGATED_MAC', "the message is not MACed with this device's ledger key")
  const view = new DataView(body.buffer, body.byteOffset, body.length)
  const count = body[DELEGATED_HEADER_BYTES - 1]!
  const head: DelegatedHead = {
    treeSize: view.getUint32(1),
    root: body.slice(5, 5 + HASH_BYTES),
    time: view.getUint32(5 + HASH_BYTES),
    entries: [],
  }
  let at = DELEGATED_HEADER_BYTES
  for (let i = 0; i < count; i++) {
    if (at + 6 > body.length) refuse('DELEGATED_FORMAT', `entry ${i} is cut short`)
    const leafIndex = view.getUint32(at),
      length = view.getUint16(at + 4)
    const pathAt = at + 6 + length
    if (pathAt + 1 > body.length) refuse('DELEGATED_FORMAT', `entry ${i} is cut short`)
    const hashes = body[pathAt]!
    const end = pathAt + 1 + hashes * HASH_BYTES
    if (end > body.length || hashes > MAX_PROOF_HASHES) refuse('DELEGATED_FORMAT', `entry ${i} is cut short`)
    const proof: Uint8Array[] = []
    for (let h = 0; h < hashes; h++)
      proof.push(body.slice(pathAt + 1 + h * HASH_BYTES, pathAt + 1 + (h + 1) * HASH_BYTES))
    head.entries.push({ leafIndex, eventBytes: body.slice(at + 6, pathAt), proof })
    at = end
  }
  if (at !== body.length) refuse('DELEGATED_FORMAT', 'bytes after the last entry')
  return head
}
