/** @module Coded errors: every refusal in kinship carries a stable string code. */

/** Stable machine-readable error codes, grouped by area. */
export type KinErrorCode =
  // decoding untrusted bytes
  | 'DECODE_CBOR' | 'DECODE_TRAILING' | 'DECODE_NONCANONICAL' | 'DECODE_SHAPE' | 'DECODE_FIELD'
  | 'DECODE_OVERSIZE' | 'UNKNOWN_VERSION' | 'UNKNOWN_TYPE'
  // event validation on ingest
  | 'BAD_SIGNATURE' | 'MISSING_LINK' | 'DUPLICATE_EVENT' | 'GENESIS_EXISTS' | 'NO_GENESIS' | 'GENESIS_INVALID'
  | 'ISSUER_UNKNOWN' | 'ISSUER_NOT_CURRENT' | 'ISSUER_REVOKED' | 'ISSUER_EXPIRED' | 'ROLE_CANNOT_DELEGATE'
  | 'DEPTH_EXHAUSTED' | 'ROLE_ESCALATION' | 'CN_EXISTS' | 'CN_MISMATCH' | 'NONCE_REUSED' | 'NOT_AFTER_EXCEEDS_PARENT'
  | 'NOT_AFTER_PASSED' | 'TIME_IN_FUTURE' | 'SUBJECT_UNKNOWN' | 'REVOKE_NOT_ALLOWED' | 'ALREADY_REVOKED'
  | 'REKEY_NOT_PARENT' | 'CERTIFIED_NOT_SUBJECT' | 'CERTIFIED_DUPLICATE' | 'VOID_AFTER_REVOKE'
  | 'POLICY_NOT_ANCESTOR' | 'LINK_MISMATCH' | 'CONFLICT_CN'
  /** The issuer's revocation (or an ancestor's over its subtree) is already in the log and effective: no new signature enters, whatever time it claims. */
  | 'ISSUER_REVOKED_IN_LOG'
  /** At the miner's intake: the event claims a time more than MAX_CLOCK_SKEW before the miner's clock (sign it again with a fresh time). */
  | 'TIME_TOO_OLD'
  /** At the miner's intake: the event claims a time more than MAX_CLOCK_SKEW before the miner's last sealed head. */
  | 'TIME_BEFORE_HEAD'
  // signed block heads
  | 'HEAD_SIGNATURE' | 'HEAD_INCONSISTENT' | 'HEAD_ROLLBACK' | 'HEAD_FORK'
  // miner log, sync and proof bundles
  | 'HEAD_ROOT_MISMATCH' | 'HEAD_UNPROVEN' | 'HEAD_MISSING' | 'GENESIS_MISMATCH' | 'SYNC_MISMATCH'
  | 'BUNDLE_INCLUSION' | 'BUNDLE_INCOMPLETE'
  // storage
  | 'STORAGE_DAMAGED' | 'STORAGE_IO' | 'STORAGE_EXISTS' | 'STORAGE_BUSY'
  // pki and enrollment
  | 'CERT_PARSE' | 'CERT_CHAIN' | 'CERT_EXPIRED' | 'CERT_NOT_YET_VALID' | 'CERT_KEY_USAGE' | 'CERT_NAMES'
  | 'CERT_UNBOUND' | 'CERT_NOT_CERTIFIED' | 'CSR_PARSE' | 'CSR_SIGNATURE' | 'CSR_KEY_MISMATCH' | 'CSR_NAMES'
  | 'CA_VALIDITY' | 'FLEET_DOMAIN' | 'HOME_EXISTS' | 'HOME_MISSING' | 'ENROLL_STATE'
  // pairing
  | 'PAIR_CODE_FORMAT' | 'PAIR_MAC' | 'PAIR_CODE_WRONG' | 'PAIR_CODE_USED' | 'PAIR_CODE_EXPIRED' | 'PAIR_TIMEOUT' | 'INVITE_REFUSED'
  // broker sessions (transport)
  | 'BROKER_UNREACHABLE' | 'BROKER_REFUSED' | 'BROKER_IDENTITY' | 'BROKER_CLOSED' | 'BROKER_TIMEOUT'
  // access decisions
  | 'ACCESS_REVOKED' | 'ACCESS_ANCESTOR_REVOKED' | 'ACCESS_EXPIRED' | 'ACCESS_LINEAGE_GAP' | 'ACCESS_SAN_PARENT'
  | 'ACCESS_MISSING_PROOF' | 'POLICY_HOPS' | 'POLICY_ANCHOR' | 'POLICY_ROLE' | 'POLICY_ACTION' | 'POLICY_WINDOW'
  | 'POLICY_STALE_LEDGER'
  // access endpoints (mutual TLS) and signed challenges
  | 'ACCESS_NO_CERTIFICATE' | 'ACCESS_TIMEOUT' | 'ACCESS_TRANSPORT' | 'ACCESS_WRONG_PEER'
  | 'CHALLENGE_UNKNOWN' | 'CHALLENGE_REPLAYED' | 'CHALLENGE_EXPIRED' | 'CHALLENGE_SIGNATURE' | 'CHALLENGE_MISMATCH' | 'CHALLENGE_RESULT_SIGNATURE'
  // broker (L0's services)
  | 'LOGIN_CLIENT_ID' | 'LOGIN_NO_CREDENTIALS' | 'ACL_DENIED' | 'PAYLOAD_TOO_LARGE' | 'INVITE_MISMATCH' | 'BROKER_LOCKED'
  // generic
  | 'BAD_ARGUMENT' | 'USAGE' | 'INTERNAL'

/** Base class for every kinship error: a code, a human message and an optional cause. */
export class KinError extends Error {
  readonly code: KinErrorCode
  readonly detail: Record<string, unknown> | undefined
  constructor(code: KinErrorCode, message: string, options?: { cause?: unknown; detail?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'KinError'
    this.code = code
    this.detail = options?.detail
  }
}

/** Untrusted bytes that do not parse into what they claim to be. */
export class DecodeError extends KinError {
  constructor(code: KinErrorCode, message: string, options?: { cause?: unknown; detail?: Record<string, unknown> }) {
    super(code, message, options)
    this.name = 'DecodeError'
  }
}

/** A well-formed object that fails a check (signature, lineage, binding, chain). */
export class VerificationError extends KinError {
  constructor(code: KinErrorCode, message: string, options?: { cause?: unknown; detail?: Record<string, unknown> }) {
    super(code, message, options)
    this.name = 'VerificationError'
  }
}

/** True when `e` is a KinError, optionally with the given code. */
export function isKinError(e: unknown, code?: KinErrorCode): e is KinError {
  return e instanceof KinError && (code === undefined || e.code === code)
}
