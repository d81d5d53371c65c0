/** @module Broker login: a device by its fleet certificate and the ledger, a pairing session by its one-time code. */
import { KinError, VerificationError, type KinErrorCode } from '../agent/errors.ts'
import type { CryptoProvider } from '../agent/ports/platform.ts'
import { toHex } from '../agent/codec/bytes.ts'
import { checkLogin } from '../agent/enroll/pairing.ts'
import type { LedgerState } from '../agent/ledger/state.ts'
import { DeviceCertificate } from '../agent/pki/certificate.ts'
import { verifyChain } from '../agent/pki/chain.ts'
import { verifyBinding } from '../agent/pki/binding.ts'
import type { PkiProvider } from '../agent/ports/pki.ts'
import { PAIR_USERNAME_PREFIX, pairingClientId, type DeviceIdentity, type PairIdentity } from './identity.ts'
import type { InviteBook } from './invites.ts'

/** CONNACK return codes of MQTT 3.1.1 §3.2.2.3 that a refused login can carry. */
export type ConnackRefusal = 2 | 3 | 4 | 5

/** What a login check reads. */
export interface LoginContext {
  readonly root: DeviceCertificate
  readonly state: LedgerState
  readonly pki: PkiProvider
  readonly crypto: CryptoProvider
  readonly invites: InviteBook
  readonly now: number
}

const INVALID_CODES: Record<string, KinErrorCode> = {
  REVOKED: 'ACCESS_REVOKED',
  ANCESTOR_REVOKED: 'ACCESS_ANCESTOR_REVOKED',
  EXPIRED: 'ACCESS_EXPIRED',
  LINEAGE_GAP: 'ACCESS_LINEAGE_GAP',
  PARENT_SUPERSEDED: 'ACCESS_ANCESTOR_REVOKED',
}

/**
 * The CONNACK code for a refusal. docs/PAIRING.md step 2: wrong code 4, used code 2, expired code 5; a client id
 * that is not the certificate's CN is "identifier rejected" (2); L0 unable to record a login: "server unavailable" (3).
 */
export function connackFor(code: string): ConnackRefusal {
  switch (code) {
    case 'PAIR_CODE_WRONG':
      return 4
    case 'PAIR_CODE_USED':
    case 'LOGIN_CLIENT_ID':
      return 2
    case 'STORAGE_IO':
      return 3
    default:
      return 5
  }
}

/** Whether L0's ledger records a certified event for exactly this certificate under the CN's current binding. */
export function isCertified(identity: DeviceIdentity, state: LedgerState): boolean {
  return state.currentBinding(identity.cn)?.certHashes.includes(toHex(identity.certHash)) === true
}

/**
 * Whether a device identity still stands in the ledger at `now`: the current binding of its CN names this
 * certificate's key and records the certificate (verifyBinding), and neither it nor an ancestor is revoked or
 * expired. Returns the coded reason when it does not.
 *
 * One exception to "records the certificate": a fresh binding with no certified event at all. That is a device
 * between docs/PAIRING.md steps 6 and 7: its certificate chains to the fleet root and carries the
 * key its parent authorized, and its first session is how its certified event reaches L0. The ACL lets such a
 * session only submit until the certified event is in (acl.ts); a binding that already has a certificate admits
 * no other one.
 */
export function deviceStanding(identity: DeviceIdentity, state: LedgerState, now: number): KinError | undefined {
  if (now > identity.notAfter)
    return new VerificationError('CERT_EXPIRED', `certificate of ${identity.cn} expired at ${identity.notAfter}`)
  let binding
  try {
    binding = verifyBinding(identity, state)
  } catch (err) {
    if (!(err instanceof KinError)) throw err
    const fresh = err.code === 'CERT_NOT_CERTIFIED' ? state.currentBinding(identity.cn) : undefined
    if (fresh === undefined || fresh.certHashes.length > 0) return err
    binding = fresh
  }
  const invalid = state.invalidAt(binding, now)
  if (invalid === undefined) return undefined
  const why =
    invalid.code === 'ANCESTOR_REVOKED'
      ? `its ancestor ${invalid.ancestorCn} is revoked`
      : invalid.code.toLowerCase().replace('_', ' ')
  return new VerificationError(INVALID_CODES[invalid.code]!, `${identity.cn} may not log in: ${why}`)
}

/**
 * Device login: the TLS peer certificate (its key proven by the handshake) chains to the fleet root, the ledger
 * binds it to its CN (verifyBinding), the identity stands (deviceStanding), and the client id is the CN.
 */
export function deviceLogin(certDer: Uint8Array, clientId: string, ctx: LoginContext): DeviceIdentity {
  const cert = new DeviceCertificate(certDer, { sha256: ctx.crypto.sha256 })
  const info = verifyChain(cert, ctx.root, ctx.now, ctx.pki)
  const identity: DeviceIdentity = {
    kind: 'device',
    cn: info.cn,
    spkiHash: info.spkiHash,
    certHash: info.certHash,
    notAfter: info.notAfter,
  }
  const refusal = deviceStanding(identity, ctx.state, ctx.now)
  if (refusal !== undefined) throw refusal
  // [MQTT-3.1.3-2] the client id names the session; one CN, one session, so nobody can take over another's.
  if (clientId !== info.cn)
    throw new VerificationError('LOGIN_CLIENT_ID', `client id "${clientId}" is not the certificate's CN ${info.cn}`)
  return identity
}

/** Why a pairing session's invite no longer admits it (invite purged, parent no longer valid); undefined when it does. */
export function pairingStanding(
  identity: PairIdentity,
  state: LedgerState,
  invites: InviteBook,
  now: number,
): KinError | undefined {
  const invite = invites.get(identity.inviteId)
  if (invite === undefined)
    return new VerificationError('PAIR_CODE_EXPIRED', `invite ${identity.inviteId} is no longer on record`)
  if (invite.state === 'withdrawn')
    return new VerificationError('PAIR_WITHDRAWN', `invite ${identity.inviteId} was withdrawn by ${invite.parentCn}`)
  const parent = state.currentBinding(invite.parentCn)
  const invalid = parent === undefined ? { code: 'UNKNOWN' } : state.invalidAt(parent, now)
  if (invalid !== undefined)
    return new VerificationError(
      'ISSUER_REVOKED',
      `the inviting device ${invite.parentCn} is no longer valid (${invalid.code.toLowerCase()})`,
    )
  return undefined
}

/**
 * Pairing login (docs/PAIRING.md step 2): user name `pair:<inviteId>`, password the login proof. Checked in this
 * order so that only someone holding the code learns the invite's state: unknown id or wrong proof
 * PAIR_CODE_WRONG, then used PAIR_CODE_USED, then expired PAIR_CODE_EXPIRED. The client id must be
 * `pair-<inviteId>`. Success uses the code up, durably (a group commit shared with the logins at once), before the
 * session is admitted.
 */
export async function pairingLogin(
  username: string,
  password: Uint8Array | undefined,
  clientId: string,
  ctx: LoginContext,
): Promise<PairIdentity> {
  const inviteId = username.slice(PAIR_USERNAME_PREFIX.length)
  const invite = ctx.invites.get(inviteId)
  const proof = password === undefined ? '' : new TextDecoder('utf-8', { fatal: false }).decode(password)
  if (invite === undefined || !checkLogin(proof, invite.loginVerifier))
    throw new VerificationError('PAIR_CODE_WRONG', `no invite ${inviteId} with this code`)
  // CONNACK 5 like an expired code: MQTT 3.1.1 has no closer return code, and both mean "ask for a new code".
  if (invite.state === 'withdrawn')
    throw new VerificationError('PAIR_WITHDRAWN', `invite ${inviteId} was withdrawn by ${invite.parentCn}`)
  if (invite.state !== 'pending')
    throw new VerificationError('PAIR_CODE_USED', `the code of invite ${inviteId} was already used`)
  if (ctx.now >= invite.expires)
    throw new VerificationError('PAIR_CODE_EXPIRED', `invite ${inviteId} expired at ${invite.expires}`)
  if (clientId !== pairingClientId(inviteId))
    throw new VerificationError(
      'LOGIN_CLIENT_ID',
      `a pairing session's client id must be ${pairingClientId(inviteId)}, not "${clientId}"`,
    )
  const identity: PairIdentity = { kind: 'pair', inviteId }
  const refusal = pairingStanding(identity, ctx.state, ctx.invites, ctx.now)
  if (refusal !== undefined) throw refusal
  await ctx.invites.markUsedGrouped(inviteId, ctx.now)
  return identity
}
