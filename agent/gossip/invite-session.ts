/** @module `kin invite` without the files: register an invite with L0, then authorize the child that pairs with its code. */
import { KinError, VerificationError } from '../errors.ts'
import { bytesEqual } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { authorizeChild, rekeyChild } from '../enroll/parent.ts'
import { checkRekeyTarget, signInvite, type Invite } from '../enroll/invite.ts'
import {
  derivePairingSecrets,
  formatPairingCode,
  loginVerifier,
  openPairMessage,
  sealPairMessage,
  CODE_BYTES,
  type PairingSecrets,
} from '../enroll/pairing.ts'
import { decodeEnrollRequest, type EnrollRequest } from '../enroll/request.ts'
import type { Ledger } from '../ledger/ledger.ts'
import type { Binding, EncodedEvent, RoleName } from '../ledger/types.ts'
import { DeviceCertificate } from '../pki/certificate.ts'
import { checkIssuedByRoot } from '../pki/chain.ts'
import type { PkiProvider } from '../ports/pki.ts'
import type { GossipClient } from './client.ts'
import {
  decodeCertReply,
  decodeInviteReply,
  decodeWithdrawReply,
  encodeAuthorizePayload,
  encodeInviteWithdraw,
  encodeWithdrawal,
  remoteRefusal,
} from './pair-wire.ts'
import { fleetTopics } from './topics.ts'

/** Seconds after a code's expiry the parent still waits for the request of a child that logged in just in time. */
export const REQUEST_GRACE_SECONDS = 5

/** The inviting device: its identity, its verified ledger and what it hands the child. */
export interface Inviter {
  cn: string
  fleet: string
  l0Cn: string
  ledgerSeed: Uint8Array
  /** This device's verified ledger; its binding decides what it may authorize. */
  ledger: Ledger
  rootPem: string
}

/** What the inviter chose for the new device. */
export interface InviteChoices {
  role: RoleName
  /** Friendly name given to the child (overrides what it asks for when not empty). */
  name: string
  /** How long the code works, in seconds. */
  ttlSeconds: number
  /** For a guest: how long its identity holds, in seconds (a guest pass). Others get the inviter's notAfter. */
  guestValidSeconds: number
  /**
   * The parent's rekey of a child (docs/PROTOCOL.md "Rekey by the parent"): the existing child CN the device that
   * enrolls with the code takes over, under new keys; `role` and `name` are then that child's.
   */
  rekeyCn?: string
}

/** An invite L0 accepted: the code to show, and what both ends derive from it. */
export interface OpenedInvite {
  code: string
  inviteId: string
  /** Seconds since the epoch after which the code no longer logs in. */
  expires: number
  invite: Invite
  secrets: PairingSecrets
  choices: InviteChoices
}

/** What came of an invite: the child's CN, its authorization proof and its certificate. */
export interface InviteResult {
  childCn: string
  name: string
  role: RoleName
  kind: string
  authorize: EncodedEvent
  certificate: DeviceCertificate
}

/** Hooks of the invite's second half. */
export interface CompleteOptions {
  /** Keeps the authorization proof (appends it to this device's ledger) before it is sent. */
  keep(event: EncodedEvent): Promise<void>
  /** Seconds since the epoch. */
  now(): number
  /** How long to wait for the child's CSR to be answered after sending the authorization. */
  stepTimeoutMs: number
  /** Told when the child's request arrived and was authorized. */
  onAuthorized?(childCn: string, request: EnrollRequest): void
}

/**
 * This device's current binding in its own ledger, valid at `now`: ENROLL_STATE when it has none, ISSUER_REVOKED
 * (naming `act`) when it is revoked or expired.
 */
function ownValidBinding(ledger: Ledger, cn: string, now: number, act: string): Binding {
  const binding = ledger.state.currentBinding(cn)
  if (binding === undefined)
    throw new KinError('ENROLL_STATE', `this device (${cn}) has no binding in its own ledger; run 'kin sync' first`)
  const invalid = ledger.state.invalidAt(binding, now)
  if (invalid !== undefined)
    throw new VerificationError(
      'ISSUER_REVOKED',
      `this device may not ${act}: its identity is ${invalid.code.toLowerCase().replace('_', ' ')}`,
    )
  return binding
}

/**
 * The same rules L0 applies to the invite (`verifyInvite`) and the ledger to the authorize event, checked
 * here first so a device that may not invite is told so without a round trip.
 */
export function checkMayInvite(ledger: Ledger, cn: string, role: RoleName, now: number): void {
  const binding = ownValidBinding(ledger, cn, now, 'invite')
  if (binding.role !== 'admin' && binding.role !== 'member') {
    throw new VerificationError(
      'ROLE_CANNOT_DELEGATE',
      `this device has role ${binding.role}, which may not invite devices; invite from a phone or computer with role admin or member`,
    )
  }
  if (binding.role === 'member' && (role === 'admin' || role === 'member')) {
    throw new VerificationError(
      'ROLE_ESCALATION',
      `a member may invite guests and devices only, not ${role}; ask an admin to invite it`,
    )
  }
  if (binding.depth < 1) {
    throw new VerificationError(
      'DEPTH_EXHAUSTED',
      'this device has delegation depth 0: it may not authorize devices; invite from a device higher in the tree',
    )
  }
}

/**
 * `checkMayInvite` for the parent's rekey of `childCn`: this device's binding is valid now (ISSUER_REVOKED) and the
 * child is a device of its ledger (SUBJECT_UNKNOWN) it authorized itself (REKEY_NOT_CHILD), as L0 will check the
 * invite. The child itself may be revoked: that is what its new keys are for. Returns the child's current binding.
 */
export function checkMayRekey(ledger: Ledger, cn: string, childCn: string, now: number): Binding {
  ownValidBinding(ledger, cn, now, 'rekey its children')
  return checkRekeyTarget(ledger.state, cn, childCn)
}

/**
 * docs/PAIRING.md step 1: draws a code, registers the invite with L0 (signed with this device's ledger key) and
 * waits for `invite-ok`; then subscribes to the invite's pairing topics. The code is shown only after this.
 */
export async function openInvite(
  crypto: CryptoProvider,
  client: GossipClient,
  inviter: Inviter,
  choices: InviteChoices,
  opts: { now: number; timeoutMs: number },
): Promise<OpenedInvite> {
  const { now } = opts
  if (choices.rekeyCn === undefined) checkMayInvite(inviter.ledger, inviter.cn, choices.role, now)
  else checkMayRekey(inviter.ledger, inviter.cn, choices.rekeyCn, now)
  const code = formatPairingCode(crypto.randomBytes(CODE_BYTES))
  const secrets = derivePairingSecrets(code)
  const invite: Invite = {
    inviteId: secrets.inviteId,
    loginVerifier: loginVerifier(secrets.loginProof),
    parentCn: inviter.cn,
    role: choices.role,
    name: choices.name,
    expires: now + choices.ttlSeconds,
    time: now,
    ...(choices.rekeyCn === undefined ? {} : { rekeyCn: choices.rekeyCn }),
  }
  const topics = fleetTopics(inviter.fleet)
  await client.subscribe([topics.inboxAll(inviter.cn)])
  await client.publish(topics.inbox(inviter.l0Cn, inviter.cn), signInvite(crypto, invite, inviter.ledgerSeed))
  // L0's answer comes in under L0's own CN.
  const reply = await client.waitFor(
    topics.inbox(inviter.cn, inviter.l0Cn),
    p => {
      const r = decodeInviteReply(p)
      return r !== undefined && r.inviteId === invite.inviteId ? r : undefined
    },
    {
      timeoutMs: opts.timeoutMs,
      code: 'PAIR_TIMEOUT',
      message: `L0 did not confirm the invite within ${Math.round(opts.timeoutMs / 1000)} s; is 'kin broker' running and up to date with this device's ledger?`,
    },
  )
  if (!reply.ok) throw remoteRefusal(reply.code, reply.message, 'INVITE_REFUSED', 'L0 refused the invite')
  await client.subscribe([topics.pairAll(invite.inviteId)])
  return { code, inviteId: invite.inviteId, expires: invite.expires, invite, secrets, choices }
}

/** docs/PAIRING.md steps 3, 4 and 6 on the parent: the child's request, its authorization, and the certificate L0 issued it. */
export async function completeInvite(
  crypto: CryptoProvider,
  pki: PkiProvider,
  client: GossipClient,
  inviter: Inviter,
  opened: OpenedInvite,
  opts: CompleteOptions,
): Promise<InviteResult> {
  const topics = fleetTopics(inviter.fleet)
  const { inviteId, secrets } = opened
  const requestTopic = topics.pair(inviteId, 'request')
  // A child that logged in just before expiry sends its request just after it.
  const untilExpiry = (opened.expires + REQUEST_GRACE_SECONDS - opts.now()) * 1000
  let requestBytes: Uint8Array | undefined
  const request = await client.waitFor(
    requestTopic,
    p => {
      const r = decodeEnrollRequest(openPairMessage(secrets, 'request', p))
      requestBytes = p
      return r
    },
    {
      timeoutMs: untilExpiry,
      code: 'PAIR_CODE_EXPIRED',
      message: `nobody enrolled with code ${opened.code} before it expired; run 'kin invite' again for a new code`,
    },
  )

  const binding = inviter.ledger.state.currentBinding(inviter.cn)!
  const now = opts.now()
  const notAfter = opened.choices.role === 'guest' ? now + opened.choices.guestValidSeconds : binding.notAfter
  const parent = { cn: inviter.cn, ledgerSeed: inviter.ledgerSeed }
  // A rekey invite answers with the parent's rekey of the child (new keys, same CN, role, name and end) instead.
  const rekeyCn = opened.choices.rekeyCn
  const authorize =
    rekeyCn !== undefined
      ? rekeyChild(crypto, inviter.ledger, parent, rekeyCn, request, now)
      : authorizeChild(
          crypto,
          inviter.ledger,
          parent,
          request,
          {
            role: opened.choices.role,
            notAfter,
            ...(opened.choices.name !== '' ? { name: opened.choices.name } : {}),
          },
          now,
        )
  const childCn = inviter.ledger.state.cnOfLabel(authorize.event.subject)
  await opts.keep(authorize)
  opts.onAuthorized?.(childCn, request)

  const authorizeMessage = sealPairMessage(
    secrets,
    'authorize',
    encodeAuthorizePayload(authorize.bytes, inviter.rootPem),
  )
  // The child repeats its request until it hears back (its first copy may have crossed an L0 restart): the same
  // request gets the same answer, so it is never authorized twice.
  const stopRepeats = client.session.onMessage((topic, payload) => {
    if (topic === requestTopic && requestBytes !== undefined && bytesEqual(payload, requestBytes))
      client.publish(topics.pair(inviteId, 'authorize'), authorizeMessage).catch(() => undefined)
  })
  try {
    await client.publish(topics.pair(inviteId, 'authorize'), authorizeMessage)
    const reply = await client.waitFor(topics.pair(inviteId, 'cert'), decodeCertReply, {
      timeoutMs: opts.stepTimeoutMs,
      code: 'PAIR_TIMEOUT',
      message: `the new device did not finish enrolling within ${Math.round(opts.stepTimeoutMs / 1000)} s of its authorization; check it, then invite it again`,
    })
    if (!reply.ok)
      throw remoteRefusal(reply.code, reply.message, 'ENROLL_STATE', "L0's CA refused the new device's certificate")
    const certificate = DeviceCertificate.from(reply.certPem, { sha256: crypto.sha256 })
    checkIssuedByRoot(certificate, DeviceCertificate.from(inviter.rootPem, { sha256: crypto.sha256 }), pki)
    if (certificate.cn !== childCn || !bytesEqual(certificate.spkiHash, crypto.sha256(request.spkiDer))) {
      throw new VerificationError(
        'CERT_NAMES',
        `L0 announced a certificate for ${certificate.cn}, not for the device this invite authorized (${childCn})`,
      )
    }
    const child = inviter.ledger.state.currentBinding(childCn)
    const name = authorize.event.type === 'authorize' ? authorize.event.body.name : (child?.name ?? request.name)
    const role = child?.role ?? opened.choices.role
    const kind = authorize.event.type === 'authorize' ? request.kind : (child?.kind ?? request.kind)
    return { childCn, name, role, kind, authorize, certificate }
  } finally {
    stopRepeats()
  }
}

/** What came of withdrawing an invite: whether L0 confirmed it, or its refusal (e.g. ENROLL_STATE: already issued). */
export type WithdrawOutcome = { confirmed: true } | { confirmed: false; error: KinError }

/**
 * Withdraws an open invite when its parent stops (docs/PAIRING.md "Withdrawal"): first a withdrawal sealed with the
 * code's keys on the `authorize` leaf, so a child already waiting there stops at once with PAIR_WITHDRAWN; then
 * `['invite-withdraw', id]` on L0's inbox, so the code never logs in again and the CA issues nothing under it.
 * Never throws: an unconfirmed withdrawal is returned with its error, for the person to be told the code stays.
 */
export async function withdrawInvite(
  client: GossipClient,
  inviter: Inviter,
  opened: OpenedInvite,
  reason: string,
  opts: { timeoutMs: number },
): Promise<WithdrawOutcome> {
  const topics = fleetTopics(inviter.fleet)
  try {
    await client.publish(
      topics.pair(opened.inviteId, 'authorize'),
      sealPairMessage(opened.secrets, 'authorize', encodeWithdrawal(reason)),
    )
    const answer = client.waitFor(
      topics.inbox(inviter.cn, inviter.l0Cn),
      p => decodeWithdrawReply(p, opened.inviteId),
      {
        timeoutMs: opts.timeoutMs,
        code: 'PAIR_TIMEOUT',
        message: `L0 did not confirm the withdrawal within ${Math.round(opts.timeoutMs / 1000)} s`,
      },
    )
    answer.catch(() => undefined)
    await client.publish(topics.inbox(inviter.l0Cn, inviter.cn), encodeInviteWithdraw(opened.inviteId))
    const reply = await answer
    if (reply.ok) return { confirmed: true }
    return {
      confirmed: false,
      error: remoteRefusal(reply.code, reply.message, 'INVITE_REFUSED', 'L0 refused the withdrawal'),
    }
  } catch (err) {
    return {
      confirmed: false,
      error: err instanceof KinError ? err : new KinError('INTERNAL', (err as Error).message, { cause: err }),
    }
  }
}
