/** @module The miner's signed block heads: encoding, strict decoding, signatures, ids and succession checks. */
import { DecodeError, type KinErrorCode } from '../errors.ts'
import { encodeCbor, decodeCbor, MAX_UINT, type CborValue } from '../codec/cbor.ts'
import { abytes, bytesEqual, concatBytes, utf8 } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { HASH_BYTES, verifyConsistency } from './merkle.ts'

/** Prefix of the signed message: domain separation from every other signature the miner key makes. */
export const HEAD_SIGNING_PREFIX: Uint8Array = utf8('kinship/head/v1\0')
/** Bytes in an Ed25519 signature. */
export const HEAD_SIGNATURE_BYTES = 64
/** Largest encoded head accepted; a real one is about 150 bytes. */
export const MAX_HEAD_BYTES = 256

/** What the miner signs: `[height, prevHeadId, time, treeSize, root]` (DESIGN.md "Blocks"). */
export interface HeadFields {
  /** 0 for the first head, then +1 per head the miner signs. */
  height: number
  /** Id of the head at height - 1; 32 zero bytes at height 0. */
  prevHeadId: Uint8Array
  /** Seconds since the Unix epoch; never earlier than the previous head's. */
  time: number
  /** Number of event ids in the miner's log that `root` covers. */
  treeSize: number
  /** RFC 9162 §2.1.1 MTH over the first `treeSize` event ids. */
  root: Uint8Array
}

/** A signed block head: the fields and the miner's Ed25519 signature over them. */
export interface BlockHead extends HeadFields {
  /** Ed25519 by the miner's ledger key over HEAD_SIGNING_PREFIX ‖ encodeCbor(fields). */
  signature: Uint8Array
}

/** The outcome of a succession check: ok, or the code a device raises its alarm with. */
export type HeadSuccession =
  | { ok: true }
  | {
      ok: false
      code: Extract<KinErrorCode, 'HEAD_SIGNATURE' | 'HEAD_INCONSISTENT' | 'HEAD_ROLLBACK' | 'HEAD_FORK'>
      reason: string
    }

/** The prevHeadId of the head at height 0: 32 zero bytes (a fresh copy). */
export function genesisPrevHeadId(): Uint8Array {
  return new Uint8Array(HASH_BYTES)
}

function isZero(bytes: Uint8Array): boolean {
  let acc = 0
  for (let i = 0; i < bytes.length; i++) acc |= bytes[i]!
  return acc === 0
}

function checkUint(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_UINT) {
    throw new RangeError(`"${name}" expected an integer in [0, ${MAX_UINT}], got ${String(value)}`)
  }
  return value
}

// Height 0 and only height 0 links to the all-zero id, so "first head" cannot be claimed later in a chain.
function checkFields(fields: HeadFields): void {
  checkUint('height', fields.height)
  abytes('prevHeadId', fields.prevHeadId, HASH_BYTES)
  checkUint('time', fields.time)
  checkUint('treeSize', fields.treeSize)
  abytes('root', fields.root, HASH_BYTES)
  if ((fields.height === 0) !== isZero(fields.prevHeadId)) {
    throw new RangeError('"prevHeadId" must be 32 zero bytes exactly when "height" is 0')
  }
}

function fieldArray(f: HeadFields): CborValue[] {
  return [f.height, f.prevHeadId, f.time, f.treeSize, f.root]
}

/** The bytes the miner signs: HEAD_SIGNING_PREFIX ‖ encodeCbor([height, prevHeadId, time, treeSize, root]). */
export function headSigningBytes(fields: HeadFields): Uint8Array {
  checkFields(fields)
  return concatBytes(HEAD_SIGNING_PREFIX, encodeCbor(fieldArray(fields)))
}

/** Signs `fields` with the miner's 32-byte Ed25519 seed; throws TypeError/RangeError on bad fields. */
export function signHead(crypto: CryptoProvider, fields: HeadFields, minerSecretKey: Uint8Array): BlockHead {
  const signature = crypto.ed25519Sign(headSigningBytes(fields), minerSecretKey)
  return {
    height: fields.height,
    prevHeadId: Uint8Array.from(fields.prevHeadId),
    time: fields.time,
    treeSize: fields.treeSize,
    root: Uint8Array.from(fields.root),
    signature,
  }
}

/** Canonical CBOR of a head: `[height, prevHeadId, time, treeSize, root, signature]`. */
export function encodeHead(head: BlockHead): Uint8Array {
  checkFields(head)
  abytes('signature', head.signature, HEAD_SIGNATURE_BYTES)
  return encodeCbor([...fieldArray(head), head.signature])
}

function fail(field: string, why: string): never {
  throw new DecodeError('DECODE_FIELD', `head field "${field}" ${why}`, { detail: { field } })
}

function readUint(v: CborValue, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_UINT) fail(field, 'must be an unsigned integer')
  return v
}

function readBytes(v: CborValue, field: string, length: number): Uint8Array {
  if (!(v instanceof Uint8Array)) fail(field, 'must be a byte string')
  if (v.length !== length) fail(field, `must be ${length} bytes, got ${v.length}`)
  return v
}

/** Strict decoding of an untrusted head; DecodeError (DECODE_CBOR, _TRAILING, _NONCANONICAL, _OVERSIZE, _SHAPE, _FIELD) otherwise. */
export function decodeHead(bytes: Uint8Array): BlockHead {
  const v = decodeCbor(bytes, MAX_HEAD_BYTES)
  if (!Array.isArray(v) || v.length !== 6) {
    throw new DecodeError(
      'DECODE_SHAPE',
      `a head is an array of 6 items, got ${Array.isArray(v) ? `${v.length} items` : typeof v}`,
    )
  }
  const head: BlockHead = {
    height: readUint(v[0]!, 'height'),
    prevHeadId: readBytes(v[1]!, 'prevHeadId', HASH_BYTES),
    time: readUint(v[2]!, 'time'),
    treeSize: readUint(v[3]!, 'treeSize'),
    root: readBytes(v[4]!, 'root', HASH_BYTES),
    signature: readBytes(v[5]!, 'signature', HEAD_SIGNATURE_BYTES),
  }
  if ((head.height === 0) !== isZero(head.prevHeadId))
    fail('prevHeadId', 'must be 32 zero bytes exactly when height is 0')
  return head
}

/** Whether the miner key `minerPublicKey` signed `head`; false, never a throw, on malformed input. */
export function verifyHeadSignature(crypto: CryptoProvider, head: BlockHead, minerPublicKey: Uint8Array): boolean {
  try {
    return crypto.ed25519Verify(head.signature, headSigningBytes(head), minerPublicKey)
  } catch {
    return false
  }
}

/** Head id: SHA-256 of the whole encoded head (what the next head's prevHeadId names). */
export function headId(crypto: CryptoProvider, head: BlockHead): Uint8Array {
  return crypto.sha256(encodeHead(head))
}

function refuse(code: Exclude<HeadSuccession, { ok: true }>['code'], reason: string): HeadSuccession {
  return { ok: false, code, reason }
}

/**
 * Whether `newer` may follow `older`, a head the device already holds (DESIGN.md "Blocks"): signatures (when
 * `minerPublicKey` is given), height, time and tree size never go back, one height holds one head, a direct
 * successor names `older`'s id, and `consistencyProof` (RFC 9162 §2.1.4) shows `older`'s tree is a prefix of
 * `newer`'s. A refusal other than HEAD_SIGNATURE means a forking or rolled-back miner.
 */
export function checkHeadSuccession(
  crypto: CryptoProvider,
  older: BlockHead,
  newer: BlockHead,
  consistencyProof: readonly Uint8Array[],
  minerPublicKey?: Uint8Array,
): HeadSuccession {
  if (minerPublicKey !== undefined) {
    if (!verifyHeadSignature(crypto, older, minerPublicKey))
      return refuse('HEAD_SIGNATURE', 'the older head is not signed by the miner')
    if (!verifyHeadSignature(crypto, newer, minerPublicKey))
      return refuse('HEAD_SIGNATURE', 'the newer head is not signed by the miner')
  }
  let olderId: Uint8Array, newerId: Uint8Array
  try {
    olderId = headId(crypto, older)
    newerId = headId(crypto, newer)
  } catch {
    return refuse('HEAD_SIGNATURE', 'a head is malformed')
  }
  if (newer.height < older.height)
    return refuse('HEAD_ROLLBACK', `height went back from ${older.height} to ${newer.height}`)
  if (newer.height === older.height) {
    return bytesEqual(olderId, newerId)
      ? { ok: true }
      : refuse('HEAD_FORK', `two different heads at height ${newer.height}`)
  }
  if (newer.treeSize < older.treeSize)
    return refuse('HEAD_ROLLBACK', `tree shrank from ${older.treeSize} to ${newer.treeSize}`)
  if (newer.time < older.time) return refuse('HEAD_ROLLBACK', `time went back from ${older.time} to ${newer.time}`)
  if (newer.height === older.height + 1 && !bytesEqual(newer.prevHeadId, olderId)) {
    return refuse('HEAD_FORK', `head ${newer.height} does not name head ${older.height} as its predecessor`)
  }
  if (!verifyConsistency(crypto, older.treeSize, newer.treeSize, older.root, newer.root, consistencyProof)) {
    return refuse(
      'HEAD_INCONSISTENT',
      `tree of size ${older.treeSize} is not proven a prefix of tree of size ${newer.treeSize}`,
    )
  }
  return { ok: true }
}
