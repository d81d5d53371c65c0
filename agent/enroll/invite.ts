/** @module Invite registration: a parent tells L0, signed with its ledger key, which pairing login to admit and for what. */
import { DecodeError, VerificationError } from '../errors.ts'
import { concatBytes, utf8 } from '../codec/bytes.ts'
import { decodeCbor, encodeCbor, type CborValue } from '../codec/cbor.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import type { LedgerState } from '../ledger/state.ts'
import { ROLE, type Binding, type RoleName } from '../ledger/types.ts'
import { isPrintableName } from '../ledger/names.ts'

const INVITE_PREFIX = utf8('kinship/invite/v1\0')
const ROLE_NAMES = Object.keys(ROLE) as RoleName[]

/** An invite as L0 stores it. */
export interface Invite {
  inviteId: string
  /** SHA-256 (hex) of the pairing login proof; see pairing.ts. */
  loginVerifier: string
  parentCn: string
  role: RoleName
  name: string
  /** Seconds since the epoch after which the code no longer works. */
  expires: number
  time: number
  /**
   * For the parent's rekey of a child (docs/PROTOCOL.md "Rekey by the parent"): the existing CN the code gives new
   * keys to, instead of a new device. `role` and `name` are then that child's.
   */
  rekeyCn?: string
}

function fields(i: Invite): CborValue[] {
  const base: CborValue[] = [i.inviteId, i.loginVerifier, i.parentCn, ROLE[i.role], i.name, i.expires, i.time]
  return i.rekeyCn === undefined ? base : [...base, i.rekeyCn]
}

/**
 * Inbox message `['invite', ...fields, signature]`, signed by the parent's ledger key; a rekey invite carries an
 * eighth field, the child's CN (the signed array's length keeps the two kinds apart).
 */
export function signInvite(crypto: CryptoProvider, invite: Invite, ledgerSeed: Uint8Array): Uint8Array {
  const signature = crypto.ed25519Sign(concatBytes(INVITE_PREFIX, encodeCbor(fields(invite))), ledgerSeed)
  return encodeCbor(['invite', ...fields(invite), signature])
}

/** Decodes an invite registration from untrusted bytes (no signature check). */
export function decodeInvite(bytes: Uint8Array): { invite: Invite; signature: Uint8Array } {
  const v = decodeCbor(bytes, 4096)
  if (!Array.isArray(v) || (v.length !== 9 && v.length !== 10) || v[0] !== 'invite')
    throw new DecodeError(
      'DECODE_SHAPE',
      "an invite registration is ['invite', 7 fields, signature], or ['invite', 7 fields, child CN, signature] for a rekey",
    )
  const [, inviteId, loginVerifier, parentCn, role, name, expires, time] = v
  const rekeyCn = v.length === 10 ? v[8] : undefined
  const signature = v[v.length - 1]
  if (typeof inviteId !== 'string' || !/^[0-9a-f]{16}$/.test(inviteId))
    throw new DecodeError('DECODE_FIELD', 'invite: inviteId must be 16 hex characters')
  if (typeof loginVerifier !== 'string' || !/^[0-9a-f]{64}$/.test(loginVerifier))
    throw new DecodeError('DECODE_FIELD', 'invite: loginVerifier must be 64 hex characters')
  if (typeof parentCn !== 'string' || parentCn.length > 253)
    throw new DecodeError('DECODE_FIELD', 'invite: parentCn must be a DNS name')
  if (typeof role !== 'number' || ROLE_NAMES[role] === undefined)
    throw new DecodeError('DECODE_FIELD', 'invite: unknown role')
  if (typeof name !== 'string' || name.length > 64)
    throw new DecodeError('DECODE_FIELD', 'invite: name must be at most 64 characters')
  if (!isPrintableName(name))
    throw new DecodeError(
      'NAME_NOT_PRINTABLE',
      'invite: name must hold no control, line-breaking or bidirectional-override character',
    )
  if (typeof expires !== 'number' || typeof time !== 'number')
    throw new DecodeError('DECODE_FIELD', 'invite: expires and time must be integers')
  if (!(signature instanceof Uint8Array) || signature.length !== 64)
    throw new DecodeError('DECODE_FIELD', 'invite: signature must be 64 bytes')
  if (rekeyCn !== undefined && (typeof rekeyCn !== 'string' || rekeyCn.length === 0 || rekeyCn.length > 253))
    throw new DecodeError('DECODE_FIELD', "invite: the rekeyed child's CN must be a DNS name")
  const invite: Invite = { inviteId, loginVerifier, parentCn, role: ROLE_NAMES[role]!, name, expires, time }
  if (rekeyCn !== undefined) invite.rekeyCn = rekeyCn as string
  return { invite, signature }
}

/**
 * L0's check of an invite registration: signed by the parent's current ledger key, the parent valid now and
 * allowed to authorize the role (same rules the ledger applies to the authorize event that will follow).
 */
export function verifyInvite(crypto: CryptoProvider, state: LedgerState, bytes: Uint8Array, now: number): Invite {
  const { invite, signature } = decodeInvite(bytes)
  const parent = state.currentBinding(invite.parentCn)
  if (parent === undefined)
    throw new VerificationError('INVITE_REFUSED', `L0's ledger does not know ${invite.parentCn}; sync it first`)
  if (!crypto.ed25519Verify(signature, concatBytes(INVITE_PREFIX, encodeCbor(fields(invite))), parent.ledgerKey)) {
    throw new VerificationError('BAD_SIGNATURE', `invite not signed by the current ledger key of ${invite.parentCn}`)
  }
  const invalid = state.invalidAt(parent, now)
  if (invalid !== undefined)
    throw new VerificationError('ISSUER_REVOKED', `${invite.parentCn} may not invite: ${invalid.code.toLowerCase()}`)
  if (parent.role !== 'admin' && parent.role !== 'member')
    throw new VerificationError(
      'ROLE_CANNOT_DELEGATE',
      `${invite.parentCn} has role ${parent.role}, which may not invite devices`,
    )
  if (parent.role === 'member' && (invite.role === 'admin' || invite.role === 'member'))
    throw new VerificationError('ROLE_ESCALATION', `a member may invite guests and devices only, not ${invite.role}`)
  if (invite.expires <= now) throw new VerificationError('PAIR_CODE_EXPIRED', 'the invite has already expired')
  if (invite.rekeyCn !== undefined) checkRekeyTarget(state, invite.parentCn, invite.rekeyCn)
  return invite
}

/**
 * The parent's rekey of a child (docs/PROTOCOL.md "Rekey by the parent"): `childCn` must be a device the ledger knows
 * (SUBJECT_UNKNOWN) whose current binding was authorized by `parentCn` (REKEY_NOT_CHILD). The child may be revoked:
 * new keys after a compromise are what a rekey is for. Returns the child's current binding.
 */
export function checkRekeyTarget(state: LedgerState, parentCn: string, childCn: string): Binding {
  const child = state.currentBinding(childCn)
  if (child === undefined || child.parentCn === undefined)
    throw new VerificationError('SUBJECT_UNKNOWN', `the ledger holds no device ${childCn} to rekey`)
  if (child.parentCn !== parentCn)
    throw new VerificationError(
      'REKEY_NOT_CHILD',
      `${childCn} is not a child of ${parentCn} (its parent is ${child.parentCn}): only its parent gives it new keys`,
    )
  return child
}
