/** @module Ledger events on the wire: canonical CBOR encoding, strict decoding, signing and ids. */
import { DecodeError } from '../errors.ts'
import { encodeCbor, decodeCbor, type CborValue } from '../codec/cbor.ts'
import { concatBytes, toHex, utf8 } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import {
  EVENT_TYPE,
  EVENT_VERSION,
  ID_BYTES,
  LABEL_BYTES,
  REVOKE_REASON,
  ROLE,
  type EncodedEvent,
  type EventTypeName,
  type LedgerEvent,
  type RevokeReasonName,
  type RoleName,
  type UnsignedEvent,
} from './types.ts'

/** Largest encoded event accepted from anywhere. */
export const MAX_EVENT_BYTES = 4096
/** Prefix of the signed message: domain separation from every other signature a ledger key makes. */
export const EVENT_SIGNING_PREFIX: Uint8Array = utf8('kinship/event/v1\0')

const LINKS_BY_TYPE: Record<EventTypeName, number> = {
  genesis: 0,
  authorize: 1,
  certified: 1,
  revoke: 2,
  rekey: 2,
  policy: 2,
}
const TYPE_NAMES = Object.keys(EVENT_TYPE) as EventTypeName[]
const ROLE_NAMES = Object.keys(ROLE) as RoleName[]
const REASON_NAMES = Object.keys(REVOKE_REASON) as RevokeReasonName[]

// ---- field readers: each names the field it rejects --------------------------------------------------------

function fail(field: string, why: string): never {
  throw new DecodeError('DECODE_FIELD', `event field "${field}" ${why}`, { detail: { field } })
}
function arr(v: CborValue, field: string, min: number, max = min): CborValue[] {
  if (!Array.isArray(v)) fail(field, 'must be an array')
  if (v.length < min || v.length > max) {
    throw new DecodeError(
      'DECODE_SHAPE',
      `event field "${field}" must have ${min === max ? min : `${min}..${max}`} items, got ${v.length}`,
      { detail: { field } },
    )
  }
  return v
}
function bstr(v: CborValue, field: string, min: number, max = min): Uint8Array {
  if (!(v instanceof Uint8Array)) fail(field, 'must be a byte string')
  if (v.length < min || v.length > max)
    fail(field, `must be ${min === max ? min : `${min}..${max}`} bytes, got ${v.length}`)
  return v
}
function uint(v: CborValue, field: string, max = 0xffffffff): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max)
    fail(field, `must be an unsigned integer <= ${max}`)
  return v
}
function text(v: CborValue, field: string, maxBytes: number): string {
  if (typeof v !== 'string') fail(field, 'must be a text string')
  if (utf8(v).length > maxBytes) fail(field, `must be at most ${maxBytes} bytes of UTF-8`)
  return v
}
function bool(v: CborValue, field: string): boolean {
  if (typeof v !== 'boolean') fail(field, 'must be true or false')
  return v
}
function enumOf<T extends string>(v: CborValue, field: string, names: readonly T[]): T {
  const n = uint(v, field, names.length - 1)
  return names[n]!
}

// ---- bodies ------------------------------------------------------------------------------------------------

function decodeBody(type: EventTypeName, v: CborValue): LedgerEvent['body'] {
  switch (type) {
    case 'genesis': {
      const b = arr(v, 'body', 8)
      return {
        domain: text(b[0]!, 'domain', 200),
        rootCertHash: bstr(b[1]!, 'rootCertHash', 32),
        spkiHash: bstr(b[2]!, 'spkiHash', 32),
        ledgerKey: bstr(b[3]!, 'ledgerKey', 32),
        minerKey: bstr(b[4]!, 'minerKey', 32),
        nonce: bstr(b[5]!, 'nonce', 12, 32),
        notAfter: uint(b[6]!, 'notAfter'),
        name: text(b[7]!, 'name', 64),
      }
    }
    case 'authorize': {
      const b = arr(v, 'body', 8)
      return {
        spkiHash: bstr(b[0]!, 'spkiHash', 32),
        ledgerKey: bstr(b[1]!, 'ledgerKey', 32),
        nonce: bstr(b[2]!, 'nonce', 12, 32),
        notAfter: uint(b[3]!, 'notAfter'),
        role: enumOf(b[4]!, 'role', ROLE_NAMES),
        depth: uint(b[5]!, 'depth', 15),
        kind: text(b[6]!, 'kind', 16),
        name: text(b[7]!, 'name', 64),
      }
    }
    case 'certified': {
      const b = arr(v, 'body', 1)
      return { certHash: bstr(b[0]!, 'certHash', 32) }
    }
    case 'revoke': {
      const b = arr(v, 'body', 3)
      return {
        reason: enumOf(b[0]!, 'reason', REASON_NAMES),
        effective: uint(b[1]!, 'effective'),
        subtree: bool(b[2]!, 'subtree'),
      }
    }
    case 'rekey': {
      const b = arr(v, 'body', 4)
      return {
        spkiHash: bstr(b[0]!, 'spkiHash', 32),
        ledgerKey: bstr(b[1]!, 'ledgerKey', 32),
        nonce: bstr(b[2]!, 'nonce', 12, 32),
        notAfter: uint(b[3]!, 'notAfter'),
      }
    }
    case 'policy': {
      const b = arr(v, 'body', 5)
      const anchors = arr(b[3]!, 'anchors', 0, 16).map(a => bstr(a, 'anchors[]', LABEL_BYTES))
      const rules = arr(b[4]!, 'rules', 0, 32).map(r => {
        const rule = arr(r, 'rules[]', 4)
        return {
          action: text(rule[0]!, 'rules[].action', 32),
          roles: arr(rule[1]!, 'rules[].roles', 0, 4).map(x => enumOf(x, 'rules[].roles[]', ROLE_NAMES)),
          from: uint(rule[2]!, 'rules[].from', 86400),
          to: uint(rule[3]!, 'rules[].to', 86400),
        }
      })
      return {
        subtree: bool(b[0]!, 'subtree'),
        maxHops: uint(b[1]!, 'maxHops', 64),
        maxHeadAge: uint(b[2]!, 'maxHeadAge'),
        anchors,
        rules,
      }
    }
  }
}

function encodeBody(e: UnsignedEvent): CborValue {
  switch (e.type) {
    case 'genesis': {
      const b = e.body
      return [b.domain, b.rootCertHash, b.spkiHash, b.ledgerKey, b.minerKey, b.nonce, b.notAfter, b.name]
    }
    case 'authorize': {
      const b = e.body
      return [b.spkiHash, b.ledgerKey, b.nonce, b.notAfter, ROLE[b.role], b.depth, b.kind, b.name]
    }
    case 'certified':
      return [e.body.certHash]
    case 'revoke':
      return [REVOKE_REASON[e.body.reason], e.body.effective, e.body.subtree]
    case 'rekey': {
      const b = e.body
      return [b.spkiHash, b.ledgerKey, b.nonce, b.notAfter]
    }
    case 'policy': {
      const b = e.body
      return [
        b.subtree,
        b.maxHops,
        b.maxHeadAge,
        b.anchors,
        b.rules.map(r => [r.action, r.roles.map(x => ROLE[x]), r.from, r.to]),
      ]
    }
  }
}

// ---- whole events ------------------------------------------------------------------------------------------

function unsignedArray(e: UnsignedEvent): CborValue[] {
  return [e.version, EVENT_TYPE[e.type], e.subject, e.issuer, e.links, e.time, encodeBody(e)]
}

/** The exact bytes an issuer signs: prefix ‖ CBOR([version, type, subject, issuer, links, time, body]). */
export function signingInput(e: UnsignedEvent): Uint8Array {
  return concatBytes(EVENT_SIGNING_PREFIX, encodeCbor(unsignedArray(e)))
}

/** Canonical bytes of a signed event. Validates the shape first, so nothing malformed is ever written. */
export function encodeEvent(e: LedgerEvent): Uint8Array {
  const bytes = encodeCbor([...unsignedArray(e), e.signature])
  decodeEvent(bytes)
  return bytes
}

/** Signs an unsigned event with the issuer's 32-byte ledger secret key and returns it encoded with its id. */
export function signEvent(crypto: CryptoProvider, unsigned: UnsignedEvent, ledgerSecretKey: Uint8Array): EncodedEvent {
  const signature = crypto.ed25519Sign(signingInput(unsigned), ledgerSecretKey)
  const event = { ...unsigned, signature } as LedgerEvent
  // Read back from its own bytes, so a signed event is laid out as a received one (readEvent: one buffer).
  return readEvent(crypto, encodeEvent(event))
}

/**
 * Decodes one event from untrusted bytes: canonical CBOR, known version and type, every field of the right
 * kind and size, no trailing bytes. Throws DecodeError with a code; never anything else. No signature check.
 */
export function decodeEvent(bytes: Uint8Array, opts: { views?: boolean } = {}): LedgerEvent {
  const top = decodeCbor(bytes, MAX_EVENT_BYTES, opts)
  if (!Array.isArray(top)) throw new DecodeError('DECODE_SHAPE', 'an event must be a CBOR array')
  if (top.length !== 8) throw new DecodeError('DECODE_SHAPE', `an event must have 8 fields, got ${top.length}`)
  const version = uint(top[0]!, 'version')
  if (version !== EVENT_VERSION)
    throw new DecodeError(
      'UNKNOWN_VERSION',
      `event version ${version} is not supported (this agent reads version ${EVENT_VERSION})`,
    )
  const typeNum = uint(top[1]!, 'type')
  const type = TYPE_NAMES[typeNum]
  if (type === undefined) throw new DecodeError('UNKNOWN_TYPE', `event type ${typeNum} is not known to this agent`)
  const links = arr(top[4]!, 'links', LINKS_BY_TYPE[type]).map(l => bstr(l, 'links[]', ID_BYTES))
  return {
    version,
    type,
    subject: bstr(top[2]!, 'subject', LABEL_BYTES),
    issuer: bstr(top[3]!, 'issuer', LABEL_BYTES),
    links,
    time: uint(top[5]!, 'time'),
    body: decodeBody(type, top[6]!),
    signature: bstr(top[7]!, 'signature', 64),
  } as LedgerEvent
}

/**
 * Decodes untrusted bytes and computes the id (SHA-256 of the bytes); no signature check. The event is one buffer:
 * a copy of the bytes followed by the id, with every decoded byte field a view into the bytes (canonical CBOR
 * carries each byte string verbatim). A replica keeps every event it accepts, so this is most of its heap.
 */
export function readEvent(crypto: CryptoProvider, bytes: Uint8Array): EncodedEvent {
  const n = bytes.length
  const store = new Uint8Array(n + ID_BYTES)
  store.set(bytes)
  const own = store.subarray(0, n)
  // Decoded from a second view of the same bytes: cbor-x caches a DataView on the array it reads, which the kept
  // `bytes` need not carry (80 B per event).
  const event = decodeEvent(store.subarray(0, n), { views: true })
  const id = store.subarray(n)
  id.set(crypto.sha256(own))
  return { event, bytes: own, id, idHex: toHex(id) }
}

/**
 * The signing input cut out of an event's own canonical bytes, without re-encoding: the 8-item array header
 * (0x88) becomes the 7-item header (0x87) and the trailing signature (0x58 0x40 + 64 bytes) is dropped.
 * Equal to `signingInput(decodeEvent(bytes))` for every canonical event.
 */
export function signingInputOfBytes(bytes: Uint8Array): Uint8Array {
  const body = bytes.subarray(1, bytes.length - 66)
  const out = new Uint8Array(EVENT_SIGNING_PREFIX.length + 1 + body.length)
  out.set(EVENT_SIGNING_PREFIX, 0)
  out[EVENT_SIGNING_PREFIX.length] = 0x87
  out.set(body, EVENT_SIGNING_PREFIX.length + 1)
  return out
}

/** Ed25519 check of an event's signature against a ledger public key; pass the canonical bytes when at hand. */
export function verifyEventSignature(
  crypto: CryptoProvider,
  event: LedgerEvent,
  ledgerKey: Uint8Array,
  bytes?: Uint8Array,
): boolean {
  return crypto.ed25519Verify(
    event.signature,
    bytes === undefined ? signingInput(event) : signingInputOfBytes(bytes),
    ledgerKey,
  )
}
