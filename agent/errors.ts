/** @module Coded errors: every refusal in kinship carries a stable string code. */

/** Stable machine-readable error codes, grouped by area. */
export type KinErrorCode =
  // decoding untrusted bytes
  | 'DECODE_CBOR'
  | 'DECODE_TRAILING'
  | 'DECODE_NONCANONICAL'
  | 'DECODE_SHAPE'
  | 'DECODE_FIELD'
  | 'DECODE_OVERSIZE'
  | 'UNKNOWN_VERSION'
  | 'UNKNOWN_TYPE'
  // event validation on ingest
  | 'BAD_SIGNATURE'
  | 'MISSING_LINK'
  | 'DUPLICATE_EVENT'
  | 'GENESIS_EXISTS'
  | 'NO_GENESIS'
  | 'GENESIS_INVALID'
  | 'ISSUER_UNKNOWN'
  | 'ISSUER_NOT_CURRENT'
  | 'ISSUER_REVOKED'
  | 'ISSUER_EXPIRED'
  | 'ROLE_CANNOT_DELEGATE'
  | 'DEPTH_EXHAUSTED'
  | 'ROLE_ESCALATION'
  | 'CN_EXISTS'
  | 'CN_MISMATCH'
  | 'NONCE_REUSED'
  | 'NOT_AFTER_EXCEEDS_PARENT'
  | 'NOT_AFTER_PASSED'
  | 'TIME_IN_FUTURE'
  | 'SUBJECT_UNKNOWN'
  | 'REVOKE_NOT_ALLOWED'
  | 'ALREADY_REVOKED'
  | 'REKEY_NOT_PARENT'
  | 'CERTIFIED_NOT_SUBJECT'
  | 'CERTIFIED_DUPLICATE'
  | 'VOID_AFTER_REVOKE'
  | 'POLICY_NOT_ANCESTOR'
  | 'LINK_MISMATCH'
  | 'CONFLICT_CN'
  // POLICY_NOT_DELEGATOR: a policy event from an identity that may not delegate (not admin/member, or depth 0)
  | 'POLICY_NOT_DELEGATOR'
  // POLICY_INVALID: a policy document (kin policy set --file) that does not follow the schema of PROTOCOL.md §12.1
  | 'POLICY_INVALID'
  /** The issuer's revocation (or an ancestor's over its subtree) is already in the log and effective: no new signature enters, whatever time it claims. */
  | 'ISSUER_REVOKED_IN_LOG'
  /** At the miner's intake: the event claims a time more than MAX_CLOCK_SKEW before the miner's clock (sign it again with a fresh time). */
  | 'TIME_TOO_OLD'
  /** At the miner's intake: the event claims a time more than MAX_CLOCK_SKEW before the miner's last sealed head. */
  | 'TIME_BEFORE_HEAD'
  // signed block heads
  | 'HEAD_SIGNATURE'
  | 'HEAD_INCONSISTENT'
  | 'HEAD_ROLLBACK'
  | 'HEAD_FORK'
  // miner log, sync and proof bundles
  | 'HEAD_ROOT_MISMATCH'
  | 'HEAD_UNPROVEN'
  | 'HEAD_MISSING'
  | 'GENESIS_MISMATCH'
  | 'SYNC_MISMATCH'
  | 'BUNDLE_INCLUSION'
  | 'BUNDLE_INCOMPLETE'
  /** A bundle asked for with a verifier's tree size the log does not reach: no consistency proof can be built from it. */
  | 'BUNDLE_KNOWN_SIZE'
  // offline proofs negotiated in an access exchange (agent/ledger/offline-proof.ts)
  /** An offline proof larger than MAX_OFFLINE_PROOF_BYTES: refused before it is decoded. */
  | 'PROOF_OVERSIZE'
  /** An offline proof built from another tree size than the one the verifier stated: it does not start at the verifier's head. */
  | 'PROOF_BASE_MISMATCH'
  /** An offline proof that sends an event the verifier's head already covers (only what the verifier lacks is sent). */
  | 'PROOF_HELD_EVENT'
  /** A peer's proof bundle is sealed under an older head than the verifier holds: a revocation since then could be left out; present a fresh one. */
  | 'BUNDLE_STALE'
  /** A broker session that takes publishes but answers no sync round in time (it stopped delivering): the follower logs in again. */
  | 'SESSION_SILENT'
  // miner intake (agent/ledger/quota.ts, broker/miner-service.ts): a certified event for a certificate the fleet CA
  // never issued to that CN and key; a submitter over its event rate; a submitter over its byte budget
  | 'CERTIFIED_NOT_ISSUED'
  | 'QUOTA_RATE'
  | 'QUOTA_BYTES'
  // the delegated tier (PROTOCOL.md §11.6): what an Espruino device refuses of L0's MACed heads, and L0 of its requests
  /** A delegated head message longer than MAX_DELEGATED_BYTES (checked before anything else). */
  | 'DELEGATED_OVERSIZE'
  /** A delegated head message, or an entry or event in it, that is not of the format. */
  | 'DELEGATED_FORMAT'
  /** A delegated head message whose MAC does not verify under the device's ledger key. */
  | 'DELEGATED_MAC'
  /** A delegated head over fewer events than the head the device holds (a rollback). */
  | 'DELEGATED_HEAD_OLD'
  /** A delegated head over as many events as the one the device holds, with another root. */
  | 'DELEGATED_HEAD_FORK'
  /** An inclusion proof that does not lead from its event to the head's root (a proof for another event). */
  | 'DELEGATED_PROOF'
  /** An event about a device that is neither the receiving device nor an ancestor it knows. */
  | 'DELEGATED_NOT_LINEAGE'
  /** A boot request from a device L0 has not registered as delegated-tier (no ledger key). */
  | 'DELEGATED_NOT_REGISTERED'
  /** `kin delegate` of a device L0 already registered (another flashing secret is in use): --force replaces it. */
  | 'DELEGATED_REGISTERED'
  /** `kin delegate` of a device revoked in L0's ledger, itself or under an ancestor's revocation. */
  | 'DELEGATED_REVOKED'
  /** `kin delegate` of a device that does not stand for another reason (expired, or a lineage that no longer holds). */
  | 'DELEGATED_NOT_VALID'
  /** A delegated verdict ALLOWing a peer (or for a device, or from a verifier) that a revocation the device holds covers. */
  | 'VERDICT_REVOKED'
  // storage
  | 'STORAGE_DAMAGED'
  | 'STORAGE_IO'
  | 'STORAGE_EXISTS'
  | 'STORAGE_BUSY'
  // a home's files on disk (DESIGN.md "Storage")
  /** The home directory is writable by group or others, or owned by another user. */
  | 'HOME_UNSAFE'
  /** A home file is a symlink, FIFO, device, socket or directory instead of a regular file. */
  | 'FILE_NOT_REGULAR'
  /** The ledger file now holds less than, or other than, what this device already verified (a rollback). */
  | 'LEDGER_ROLLBACK'
  /** A ledger file holds no event at all. */
  | 'LEDGER_EMPTY'
  /** A device name or kind holds a control, line-breaking or bidirectional-override character. */
  | 'NAME_NOT_PRINTABLE'
  // pki and enrollment
  | 'CERT_PARSE'
  | 'CERT_CHAIN'
  | 'CERT_EXPIRED'
  | 'CERT_NOT_YET_VALID'
  | 'CERT_KEY_USAGE'
  | 'CERT_NAMES'
  | 'CERT_UNBOUND'
  | 'CERT_NOT_CERTIFIED'
  | 'CSR_PARSE'
  | 'CSR_SIGNATURE'
  | 'CSR_KEY_MISMATCH'
  | 'CSR_NAMES'
  | 'CA_VALIDITY'
  | 'FLEET_DOMAIN'
  | 'HOME_EXISTS'
  | 'HOME_MISSING'
  /** A command only L0's home can carry out (it holds L0's keys or registries) was given a device's home. */
  | 'HOME_NOT_L0'
  | 'ENROLL_STATE'
  // the retired `DNS:parent.<CN>` SAN marker, in a certificate (renew it) or a CSR (re-make it with the URI marker)
  | 'CERT_OLD_PARENT_MARKER'
  | 'CSR_OLD_PARENT_MARKER'
  /** A fleet domain longer than 45 characters: its root's and devices' CNs would exceed X.509's 64 (RFC 5280). */
  | 'FLEET_DOMAIN_TOO_LONG'
  /** An RSA key (CSR, certificate, challenge answer) whose modulus is not 2048–4096 bits, refused before any RSA arithmetic. */
  | 'RSA_KEY_SIZE'
  /** An RSA key whose public exponent is not 65537, refused before any RSA arithmetic. */
  | 'RSA_EXPONENT'
  /** An EC key (CSR, certificate, challenge answer) on a curve other than P-256, by named curve or explicit parameters. */
  | 'EC_CURVE'
  /** A TLS key that is neither RSA nor ECDSA P-256 (Ed25519, DSA, anything else) where a certificate or CSR key belongs. */
  | 'KEY_TYPE'
  /** A certificate or CSR signed with an algorithm other than sha256WithRSAEncryption or ecdsa-with-SHA256. */
  | 'SIGNATURE_ALGORITHM'
  /** A certificate or CSR signed with SHA-1 (RSA or ECDSA): collisions are practical, so kinship refuses it by name. */
  | 'SIGNATURE_SHA1'
  /** A certificate whose inner signature algorithm differs from its outer one (RFC 5280 §4.1.1.2). */
  | 'SIGNATURE_ALGORITHM_MISMATCH'
  /** A signature algorithm that does not fit its signer's key: ECDSA by an RSA key, or RSA by an EC key. */
  | 'SIGNATURE_KEY_MISMATCH'
  // pairing
  | 'PAIR_CODE_FORMAT'
  | 'PAIR_MAC'
  | 'PAIR_CODE_WRONG'
  | 'PAIR_CODE_USED'
  | 'PAIR_CODE_EXPIRED'
  | 'PAIR_TIMEOUT'
  | 'INVITE_REFUSED'
  /** The inviting device withdrew the invite (its `kin invite` was stopped): the code no longer works. */
  | 'PAIR_WITHDRAWN'
  /** `kin enroll` was stopped by SIGINT or SIGTERM; its staging directory was removed, DIR left as it was. */
  | 'ENROLL_INTERRUPTED'
  // broker sessions (transport)
  | 'BROKER_UNREACHABLE'
  | 'BROKER_REFUSED'
  | 'BROKER_IDENTITY'
  | 'BROKER_CLOSED'
  | 'BROKER_TIMEOUT'
  /** An event this device signed (a revocation, a policy) is in its own ledger, but no head of L0's miner covers it yet: pending, not delivered. */
  | 'EVENT_PENDING'
  /** This device's own identity is revoked (itself, or an ancestor with its subtree) in its verified ledger: it stops serving. */
  | 'IDENTITY_REVOKED'
  // certificate renewal (kin renew, and kin serve before expiry)
  /** The device asking for a fresh certificate is revoked (itself, or an ancestor over it) or lost a link of its lineage: no renewal. */
  | 'RENEW_REVOKED'
  /** The device's binding itself has ended (its authorization's notAfter passed): only a new authorization brings it back. */
  | 'RENEW_EXPIRED'
  /** The certificate L0 sent back is not one for this device's key and name under this fleet's root. */
  | 'RENEW_CERT_MISMATCH'
  // new TLS keys for a device (kin rekey)
  /** The device asking for new keys is revoked (itself, or an ancestor over it) or lost a link of its lineage: no rekey. */
  | 'REKEY_REVOKED'
  /** The device's binding itself has ended (its authorization's notAfter passed): only a new authorization brings it back. */
  | 'REKEY_EXPIRED'
  /** A device's rekey of itself replaces its TLS key only: a new ledger key (or a later notAfter) needs its parent. */
  | 'REKEY_SELF_LIMITS'
  /** A rekey L0's CA was asked to certify over a device's session is not that device's rekey of itself. */
  | 'REKEY_NOT_SELF'
  /** `kin rekey CN` (or its invite at L0) names a CN that is not a direct child of the device asking: only its parent rekeys it. */
  | 'REKEY_NOT_CHILD'
  // access decisions
  | 'ACCESS_REVOKED'
  | 'ACCESS_ANCESTOR_REVOKED'
  | 'ACCESS_EXPIRED'
  | 'ACCESS_LINEAGE_GAP'
  | 'ACCESS_SAN_PARENT'
  | 'ACCESS_MISSING_PROOF'
  | 'POLICY_HOPS'
  | 'POLICY_ANCHOR'
  | 'POLICY_ROLE'
  | 'POLICY_ACTION'
  | 'POLICY_WINDOW'
  | 'POLICY_STALE_LEDGER'
  // access endpoints (mutual TLS) and signed challenges
  | 'ACCESS_NO_CERTIFICATE'
  | 'ACCESS_TIMEOUT'
  | 'ACCESS_TRANSPORT'
  | 'ACCESS_WRONG_PEER'
  | 'CHALLENGE_UNKNOWN'
  | 'CHALLENGE_REPLAYED'
  | 'CHALLENGE_EXPIRED'
  | 'CHALLENGE_SIGNATURE'
  | 'CHALLENGE_MISMATCH'
  | 'CHALLENGE_RESULT_SIGNATURE'
  // broker (L0's services)
  | 'LOGIN_CLIENT_ID'
  | 'LOGIN_NO_CREDENTIALS'
  | 'ACL_DENIED'
  | 'PAYLOAD_TOO_LARGE'
  | 'INVITE_MISMATCH'
  | 'BROKER_LOCKED'
  /** A host name for L0's server certificates (`kin broker --name`) that is not a DNS name: LDH labels, at most 253 characters, no wildcard. */
  | 'SERVER_NAME'
  /** An address for L0's server certificates (`kin broker --address`) that is not an IPv4 or IPv6 address. */
  | 'SERVER_ADDRESS'
  // the operating system refused (a port, a path): the command line says what to do instead of a stack trace
  | 'PORT_IN_USE'
  | 'PORT_DENIED'
  | 'PATH_NOT_DIRECTORY'
  | 'PATH_IS_DIRECTORY'
  | 'PATH_DENIED'
  | 'PATH_MISSING'
  | 'DISK_FULL'
  | 'PATH_READ_ONLY'
  // unauthenticated connections (L0's listener and `kin serve`): closed at the deadline / closed for a newer one past the cap
  | 'CONNECTION_DEADLINE'
  | 'CONNECTION_EVICTED'
  // inbox messages: an ask that names a requester other than the session that sent it (the topic's sender level)
  | 'INBOX_SENDER_MISMATCH'
  /** An inbox message that is none of kinship's (not a CBOR access-ask/-challenge/-answer/-result): ignored, and `kin serve` says so. */
  | 'INBOX_FOREIGN'
  /** `kin show NAME`: no identity in the home's ledger has that CN, label or friendly name. */
  | 'IDENTITY_UNKNOWN'
  /** `kin show NAME`: several identities carry that friendly name; the message lists their CNs to choose from. */
  | 'NAME_AMBIGUOUS'
  // a subscribe or publish on a topic of the scheme before dotless levels (`kin/<domain with dots>/…`, CNs as levels)
  | 'TOPIC_OLD_SCHEME'
  // the device agent's control socket (cli/control-socket.ts) and `kin repair`
  /** A control-socket request that is not one JSON line of the agreed shape, is over the size limit, or came too slowly. */
  | 'AGENT_REQUEST_BAD'
  /** A control-socket request for another home than the one this agent owns, or for a command the agent does not carry out. */
  | 'AGENT_REQUEST_REFUSED'
  /** The agent (`kin serve`, `kin sync --follow`) ended while it carried out a command for this process: the outcome is unknown. */
  | 'AGENT_LOST'
  /** The home's control socket path is longer than a Unix socket address holds (107 bytes): move the home to a shorter path. */
  | 'AGENT_SOCKET_PATH'
  /** `kin repair`: the damaged ledger holds no readable genesis that matches the home's root.pem, so there is nothing to anchor a rebuild on. */
  | 'REPAIR_NO_GENESIS'
  /** A TLS key type (`--key`) kinship does not know: it knows p256 and rsa2048. */
  | 'KEY_TYPE_UNKNOWN'
  /** A key this engine's certificate builder cannot sign with (P-256 where there is no WebCrypto, an EC curve other than P-256). */
  | 'KEY_TYPE_UNSUPPORTED'
  // generic
  | 'BAD_ARGUMENT'
  | 'USAGE'
  | 'INTERNAL'

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
