/** @module Payloads of the pairing session and of L0's replies (docs/PAIRING.md steps 1, 4–6), strictly decoded. */
import { DecodeError, KinError, type KinErrorCode } from '../errors.ts'
import { decodeCbor, encodeCbor } from '../codec/cbor.ts'
import { MAX_EVENT_BYTES } from '../ledger/event.ts'
import { MAX_PAYLOAD_BYTES } from './topics.ts'

// Refusal codes L0 may name in 'invite-error' and 'error' replies; any other code is reported as INVITE_REFUSED
// or ENROLL_STATE with L0's code kept in `detail.remoteCode`, so a broker cannot invent codes for the CLI.
const REMOTE_CODES: ReadonlySet<string> = new Set<KinErrorCode>([
  'BAD_SIGNATURE',
  'MISSING_LINK',
  'DUPLICATE_EVENT',
  'ISSUER_UNKNOWN',
  'ISSUER_NOT_CURRENT',
  'ISSUER_REVOKED',
  'ISSUER_EXPIRED',
  'ROLE_CANNOT_DELEGATE',
  'DEPTH_EXHAUSTED',
  'ROLE_ESCALATION',
  'CN_EXISTS',
  'CN_MISMATCH',
  'NONCE_REUSED',
  'NOT_AFTER_EXCEEDS_PARENT',
  'NOT_AFTER_PASSED',
  'TIME_IN_FUTURE',
  'TIME_TOO_OLD',
  'TIME_BEFORE_HEAD',
  'ISSUER_REVOKED_IN_LOG',
  'CONFLICT_CN',
  'VOID_AFTER_REVOKE',
  'CSR_PARSE',
  'CSR_SIGNATURE',
  'CSR_KEY_MISMATCH',
  'CSR_NAMES',
  'CSR_OLD_PARENT_MARKER',
  'CA_VALIDITY',
  'ENROLL_STATE',
  'PAIR_CODE_EXPIRED',
  'PAIR_CODE_USED',
  'INVITE_REFUSED',
  'INVITE_MISMATCH',
  'DECODE_SHAPE',
  'DECODE_FIELD',
  'DECODE_CBOR',
  'PAYLOAD_TOO_LARGE',
  'STORAGE_IO',
  'PAIR_WITHDRAWN',
  'SUBJECT_UNKNOWN',
  'REKEY_NOT_CHILD',
  'REKEY_NOT_PARENT',
  'LINK_MISMATCH',
])

/** A coded error for a refusal L0 sent, keeping its code when it is one kinship knows. */
export function remoteRefusal(code: string, message: string, fallback: KinErrorCode, what: string): KinError {
  const known = REMOTE_CODES.has(code)
  return new KinError(known ? (code as KinErrorCode) : fallback, `${what}: ${message} [L0: ${code}]`, {
    detail: { remoteCode: code },
  })
}

/** docs/PAIRING.md step 4 payload (inside the MAC): CBOR [authorizeEventBytes, rootPem]. */
export function encodeAuthorizePayload(authorizeBytes: Uint8Array, rootPem: string): Uint8Array {
  return encodeCbor([authorizeBytes, rootPem])
}

/** Decodes a docs/PAIRING.md step 4 payload. */
export function decodeAuthorizePayload(bytes: Uint8Array): { authorizeBytes: Uint8Array; rootPem: string } {
  const v = decodeCbor(bytes, MAX_PAYLOAD_BYTES)
  if (!Array.isArray(v) || v.length !== 2)
    throw new DecodeError('DECODE_SHAPE', 'an authorize payload is [authorize event bytes, root PEM]')
  const [authorizeBytes, rootPem] = v
  if (!(authorizeBytes instanceof Uint8Array) || authorizeBytes.length > MAX_EVENT_BYTES)
    throw new DecodeError('DECODE_FIELD', 'authorize payload: the event must be a byte string of at most 4096 bytes')
  if (typeof rootPem !== 'string' || rootPem.length > 16384)
    throw new DecodeError('DECODE_FIELD', 'authorize payload: the root must be PEM text')
  return { authorizeBytes, rootPem }
}

/**
 * The parent's docs/PAIRING.md step 4 answer when its `kin invite` was stopped instead of authorizing: CBOR ['withdrawn', message],
 * sealed like an authorization (only the code's holder can write it), so the child stops waiting at once.
 */
export function encodeWithdrawal(message: string): Uint8Array {
  return encodeCbor(['withdrawn', message.slice(0, 512)])
}

/** The message of a docs/PAIRING.md step 4 withdrawal, or undefined for any other (authorization) payload. */
export function withdrawalOf(bytes: Uint8Array): string | undefined {
  let v
  try {
    v = decodeCbor(bytes, MAX_PAYLOAD_BYTES)
  } catch {
    return undefined
  }
  return Array.isArray(v) && v.length === 2 && v[0] === 'withdrawn' && typeof v[1] === 'string' ? v[1] : undefined
}

/** docs/PAIRING.md step 5 payload (not MACed; L0 checks it through the ledger): CBOR [authorizeEventBytes, csrPem]. */
export function encodeCsrPayload(authorizeBytes: Uint8Array, csrPem: string): Uint8Array {
  return encodeCbor([authorizeBytes, csrPem])
}

/** Decodes a docs/PAIRING.md step 5 payload from untrusted bytes: CBOR [authorizeEventBytes, csrPem]. */
export function decodeCsrPayload(bytes: Uint8Array): { authorizeBytes: Uint8Array; csrPem: string } {
  const v = decodeCbor(bytes, MAX_PAYLOAD_BYTES)
  if (!Array.isArray(v) || v.length !== 2 || !(v[0] instanceof Uint8Array) || typeof v[1] !== 'string') {
    throw new DecodeError('DECODE_SHAPE', 'a CSR message is CBOR [authorize event bytes, CSR PEM text]')
  }
  return { authorizeBytes: v[0], csrPem: v[1] }
}

/** L0's docs/PAIRING.md step 6 answer: the certificate and the lineage the child's ledger needs, or a coded refusal. */
export type CertReply =
  { ok: true; certPem: string; lineage: Uint8Array[] } | { ok: false; code: string; message: string }

/** docs/PAIRING.md step 6 payload: CBOR ['ok', certPem, [event bytes…]] or ['error', code, message]. */
export function encodeCertReply(reply: CertReply): Uint8Array {
  return encodeCbor(reply.ok ? ['ok', reply.certPem, reply.lineage] : ['error', reply.code, reply.message])
}

/** Decodes a docs/PAIRING.md step 6 payload from untrusted bytes. */
export function decodeCertReply(bytes: Uint8Array): CertReply {
  const v = decodeCbor(bytes, MAX_PAYLOAD_BYTES)
  if (!Array.isArray(v) || v.length !== 3)
    throw new DecodeError(
      'DECODE_SHAPE',
      "a certificate reply is ['ok', cert PEM, lineage] or ['error', code, message]",
    )
  const [tag, a, b] = v
  if (tag === 'ok') {
    if (typeof a !== 'string')
      throw new DecodeError('DECODE_FIELD', 'certificate reply: the certificate must be PEM text')
    if (!Array.isArray(b) || b.some(e => !(e instanceof Uint8Array)))
      throw new DecodeError('DECODE_FIELD', 'certificate reply: the lineage must be an array of event byte strings')
    return { ok: true, certPem: a, lineage: b as Uint8Array[] }
  }
  if (tag === 'error' && typeof a === 'string' && typeof b === 'string') return { ok: false, code: a, message: b }
  throw new DecodeError('DECODE_SHAPE', "a certificate reply is ['ok', cert PEM, lineage] or ['error', code, message]")
}

/** L0's answer to an invite registration on the parent's inbox. */
export type InviteReply =
  { ok: true; inviteId: string } | { ok: false; inviteId: string; code: string; message: string }

/** docs/PAIRING.md step 1 answer: CBOR ['invite-ok', inviteId] or ['invite-error', inviteId, code, message]. */
export function encodeInviteReply(reply: InviteReply): Uint8Array {
  return encodeCbor(
    reply.ok ? ['invite-ok', reply.inviteId] : ['invite-error', reply.inviteId, reply.code, reply.message],
  )
}

/** Inbox message to L0 withdrawing an invite its sender registered: CBOR ['invite-withdraw', inviteId]. */
export function encodeInviteWithdraw(inviteId: string): Uint8Array {
  return encodeCbor(['invite-withdraw', inviteId])
}

/** L0's answer to a withdrawal: CBOR ['invite-withdrawn', inviteId] (or 'invite-error' as for a registration). */
export function encodeInviteWithdrawn(inviteId: string): Uint8Array {
  return encodeCbor(['invite-withdrawn', inviteId])
}

/** Decodes an inbox message as L0's answer to withdrawing `inviteId`; undefined for any other inbox traffic. */
export function decodeWithdrawReply(bytes: Uint8Array, inviteId: string): InviteReply | undefined {
  let v
  try {
    v = decodeCbor(bytes, MAX_PAYLOAD_BYTES)
  } catch {
    return undefined
  }
  if (Array.isArray(v) && v.length === 2 && v[0] === 'invite-withdrawn' && v[1] === inviteId)
    return { ok: true, inviteId }
  const refusal = decodeInviteReply(bytes)
  return refusal !== undefined && !refusal.ok && refusal.inviteId === inviteId ? refusal : undefined
}

/**
 * An inbox message as L0's replies are shaped — a CBOR array whose second item is a request's id (text) — or
 * undefined for any other inbox traffic, which the reader leaves to others.
 */
export function decodeInboxReply(bytes: Uint8Array): [unknown, string, ...unknown[]] | undefined {
  let v
  try {
    v = decodeCbor(bytes, MAX_PAYLOAD_BYTES)
  } catch {
    return undefined
  }
  return Array.isArray(v) && typeof v[1] === 'string' ? (v as [unknown, string, ...unknown[]]) : undefined
}

/** Decodes an inbox message as an invite reply; undefined for any other inbox traffic. */
export function decodeInviteReply(bytes: Uint8Array): InviteReply | undefined {
  const v = decodeInboxReply(bytes)
  if (v === undefined) return undefined
  if (v[0] === 'invite-ok' && v.length === 2) return { ok: true, inviteId: v[1] }
  if (v[0] === 'invite-error' && v.length === 4 && typeof v[2] === 'string' && typeof v[3] === 'string') {
    return { ok: false, inviteId: v[1], code: v[2], message: v[3] }
  }
  return undefined
}
