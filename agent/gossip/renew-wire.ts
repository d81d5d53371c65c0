/** @module Payloads of certificate renewal on L0's inbox and the device's (docs/PROTOCOL.md "Renewal"), strictly decoded. */
import { DecodeError, KinError, VerificationError, type KinErrorCode } from '../errors.ts'
import { encodeCbor } from '../codec/cbor.ts'
import { decodeInboxReply } from './pair-wire.ts'

// The codes L0 may name in 'renew-error'; any other is reported as ENROLL_STATE with L0's code kept in
// detail.remoteCode, so a broker cannot invent codes for the CLI.
const RENEW_CODES: ReadonlySet<string> = new Set<KinErrorCode>([
  'SUBJECT_UNKNOWN',
  'RENEW_REVOKED',
  'RENEW_EXPIRED',
  'CSR_PARSE',
  'CSR_SIGNATURE',
  'CSR_KEY_MISMATCH',
  'CSR_NAMES',
  'CSR_OLD_PARENT_MARKER',
  'CA_VALIDITY',
  'DECODE_SHAPE',
  'DECODE_FIELD',
  'DECODE_CBOR',
  'PAYLOAD_TOO_LARGE',
  'INBOX_SENDER_MISMATCH',
  // a rekey (docs/PROTOCOL.md "Rekey"): the CA's own refusals, then the ledger's verdict on the rekey event
  'REKEY_NOT_SELF',
  'REKEY_REVOKED',
  'REKEY_EXPIRED',
  'REKEY_SELF_LIMITS',
  'NONCE_REUSED',
  'BAD_SIGNATURE',
  'LINK_MISMATCH',
  'ISSUER_NOT_CURRENT',
  'ISSUER_REVOKED',
  'ISSUER_REVOKED_IN_LOG',
  'VOID_AFTER_REVOKE',
  'TIME_TOO_OLD',
  'TIME_IN_FUTURE',
  'KEY_TYPE_UNSUPPORTED',
])

const REQUEST_ID = /^[0-9a-f]{16}$/

/** A renewal request: a fresh CSR for the key the sender's certificate already carries. */
export interface RenewRequest {
  /** 16 hex characters the reply repeats. */
  requestId: string
  csrPem: string
}

/** L0's answer on the device's inbox. */
export type RenewReply =
  { ok: true; requestId: string; certPem: string } | { ok: false; requestId: string; code: string; message: string }

/** CBOR ['renew', requestId, csrPem], sent to L0's inbox. */
export function encodeRenewRequest(r: RenewRequest): Uint8Array {
  return encodeCbor(['renew', r.requestId, r.csrPem])
}

/** A rekey request: the device's rekey event of itself and a CSR for the new key it names (answered like a renewal). */
export interface RekeyRequest extends RenewRequest {
  /** The signed rekey event, as the device will submit it. */
  rekeyBytes: Uint8Array
}

/** CBOR ['rekey', requestId, csrPem, rekey event bytes], sent to L0's inbox; answered with renew-ok / renew-error. */
export function encodeRekeyRequest(r: RekeyRequest): Uint8Array {
  return encodeCbor(['rekey', r.requestId, r.csrPem, r.rekeyBytes])
}

/** Decodes an already-decoded inbox message tagged 'rekey' (DECODE_SHAPE / DECODE_FIELD). */
export function rekeyRequestOf(message: unknown[]): RekeyRequest {
  if (message.length !== 4)
    throw new DecodeError('DECODE_SHAPE', "a rekey request is ['rekey', request id, CSR PEM, rekey event]")
  const rekeyBytes = message[3]
  if (!(rekeyBytes instanceof Uint8Array)) throw new DecodeError('DECODE_FIELD', 'rekey request: the event is bytes')
  return { ...renewRequestOf(['renew', message[1], message[2]]), rekeyBytes }
}

/** Decodes an already-decoded inbox message tagged 'renew' (DECODE_SHAPE / DECODE_FIELD). */
export function renewRequestOf(message: unknown[]): RenewRequest {
  const [, requestId, csrPem] = message
  if (message.length !== 3) throw new DecodeError('DECODE_SHAPE', "a renewal request is ['renew', request id, CSR PEM]")
  if (typeof requestId !== 'string' || !REQUEST_ID.test(requestId))
    throw new DecodeError('DECODE_FIELD', 'renewal request: the request id is 16 hex characters')
  if (typeof csrPem !== 'string' || !csrPem.startsWith('-----BEGIN CERTIFICATE REQUEST-----'))
    throw new DecodeError('DECODE_FIELD', 'renewal request: the CSR must be PEM text')
  return { requestId, csrPem }
}

/** CBOR ['renew-ok', requestId, certPem] or ['renew-error', requestId, code, message]. */
export function encodeRenewReply(r: RenewReply): Uint8Array {
  return encodeCbor(r.ok ? ['renew-ok', r.requestId, r.certPem] : ['renew-error', r.requestId, r.code, r.message])
}

/** Decodes an inbox message as a renewal reply; undefined for any other inbox traffic. */
export function decodeRenewReply(bytes: Uint8Array): RenewReply | undefined {
  const v = decodeInboxReply(bytes)
  if (v === undefined) return undefined
  if (v[0] === 'renew-ok' && v.length === 3 && typeof v[2] === 'string')
    return { ok: true, requestId: v[1], certPem: v[2] }
  if (v[0] === 'renew-error' && v.length === 4 && typeof v[2] === 'string' && typeof v[3] === 'string')
    return { ok: false, requestId: v[1], code: v[2], message: v[3] }
  return undefined
}

/** The coded error for L0's refusal, keeping its code when it is one renewal may name. */
export function renewRefusal(code: string, message: string, what: 'renewal' | 'rekey' = 'renewal'): KinError {
  if (RENEW_CODES.has(code)) return new VerificationError(code as KinErrorCode, `L0 refused the ${what}: ${message}`)
  return new KinError('ENROLL_STATE', `L0 refused the ${what} (${code}): ${message}`, { detail: { remoteCode: code } })
}
