/** @module The ledger's data model: event types, bodies, roles, and the verified state derived from them. */

/** The only event format version this code reads and writes. */
export const EVENT_VERSION = 1

/** Wire numbers of event types (the second field of an event). */
export const EVENT_TYPE = { genesis: 0, authorize: 1, certified: 2, revoke: 3, rekey: 4, policy: 5 } as const
/** Name of an event type. */
export type EventTypeName = keyof typeof EVENT_TYPE

/** Wire numbers of roles. */
export const ROLE = { admin: 0, member: 1, device: 2, guest: 3 } as const
/** What an identity is: admin and member may delegate, device and guest may not. */
export type RoleName = keyof typeof ROLE

/** Wire numbers of revocation reasons. */
export const REVOKE_REASON = { compromised: 0, lost: 1, retired: 2 } as const
/** Why an identity was revoked. */
export type RevokeReasonName = keyof typeof REVOKE_REASON

/** Bytes in a device label; its base32 form (16 characters) is the first DNS label of the CN. */
export const LABEL_BYTES = 10
/** Bytes in an event id, a SHA-256 digest. */
export const ID_BYTES = 32

/** Genesis: L0 founds the fleet. Subject = issuer = L0's label; no links; signed by `ledgerKey`. */
export interface GenesisBody {
  domain: string
  rootCertHash: Uint8Array
  spkiHash: Uint8Array
  ledgerKey: Uint8Array
  minerKey: Uint8Array
  nonce: Uint8Array
  notAfter: number
  name: string
}

/** The authorization proof: a parent binds a child's CN to its keys. links = [issuer's binding id]. */
export interface AuthorizeBody {
  spkiHash: Uint8Array
  ledgerKey: Uint8Array
  nonce: Uint8Array
  notAfter: number
  role: RoleName
  depth: number
  kind: string
  name: string
}

/** The child records the certificate it got. Subject = issuer = child; links = [child's binding id]. */
export interface CertifiedBody {
  certHash: Uint8Array
}

/** Revocation of a binding by its subject or an ancestor. links = [issuer's binding id, revoked binding id]. */
export interface RevokeBody {
  reason: RevokeReasonName
  effective: number
  subtree: boolean
}

/** New keys for an existing CN, by its parent. links = [issuer's binding id, subject's previous binding id]. */
export interface RekeyBody {
  spkiHash: Uint8Array
  ledgerKey: Uint8Array
  nonce: Uint8Array
  notAfter: number
}

/** One rule of a policy: who (roles) may do `action` ('*' for any), within a daily UTC window in seconds. */
export interface PolicyRule {
  action: string
  roles: RoleName[]
  from: number
  to: number
}

/** Trust criteria for a device or its subtree, set by an ancestor. links = [issuer's binding id, subject's binding id]. */
export interface PolicyBody {
  subtree: boolean
  maxHops: number
  maxHeadAge: number
  /** Labels (10 bytes each) of subtree roots whose members are trusted. */
  anchors: Uint8Array[]
  rules: PolicyRule[]
}

interface EventCommon {
  version: number
  /** Subject's 10-byte label. */
  subject: Uint8Array
  /** Issuer's 10-byte label (the signer). */
  issuer: Uint8Array
  /** Ids of earlier events this one builds on. */
  links: Uint8Array[]
  /** Seconds since the Unix epoch, as claimed by the issuer. */
  time: number
  /** Ed25519 signature by the issuer's ledger key (64 bytes). */
  signature: Uint8Array
}

/** A decoded ledger event. */
export type LedgerEvent =
  | (EventCommon & { type: 'genesis'; body: GenesisBody })
  | (EventCommon & { type: 'authorize'; body: AuthorizeBody })
  | (EventCommon & { type: 'certified'; body: CertifiedBody })
  | (EventCommon & { type: 'revoke'; body: RevokeBody })
  | (EventCommon & { type: 'rekey'; body: RekeyBody })
  | (EventCommon & { type: 'policy'; body: PolicyBody })

/** An event without its signature, ready to be signed. */
export type UnsignedEvent = LedgerEvent extends infer E ? (E extends LedgerEvent ? Omit<E, 'signature'> : never) : never

/** A decoded event together with its canonical bytes and id. */
export interface EncodedEvent {
  event: LedgerEvent
  bytes: Uint8Array
  id: Uint8Array
  idHex: string
}

/** A revocation as applied to a binding. */
export interface Revocation {
  eventId: string
  /** The binding that signed the revoke (void if that binding was itself void at `time`). */
  issuerBindingId: string
  reason: RevokeReasonName
  effective: number
  subtree: boolean
  by: string
  time: number
}

/**
 * A binding: one CN bound to one key pair by a genesis, authorize or rekey event.
 * A CN has a list of bindings; the newest is its current one.
 */
export interface Binding {
  /** Id (hex) of the genesis/authorize/rekey event that created this binding. */
  id: string
  cn: string
  label: string
  /** The parent's CN (undefined for L0). */
  parentCn: string | undefined
  /** Id of the parent's binding this one was authorized under (undefined for L0). */
  parentBindingId: string | undefined
  spkiHash: Uint8Array
  ledgerKey: Uint8Array
  role: RoleName
  depth: number
  notAfter: number
  time: number
  kind: string
  name: string
  /** 0 for the authorize (or genesis), 1.. for each rekey. */
  generation: number
  /** Hex SHA-256 hashes of certificates recorded by `certified` events for this binding. */
  certHashes: string[]
  /** Every revocation recorded against this binding; the earliest one not void applies. */
  revocations: Revocation[]
  /** Id of the rekey event that replaced this binding, if any. */
  supersededBy: string | undefined
}
