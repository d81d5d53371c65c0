/** @module Ingest validation: the recipe of stage functions an event passes once, before it enters a ledger. */
import { VerificationError, type KinErrorCode } from '../errors.ts'
import { bytesEqual, toHex } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { verifyEventSignature } from './event.ts'
import { base32, deriveLabel, isPrintableName, validateFleetDomain } from './names.ts'
import { nonceKey, type LedgerState } from './state.ts'
import type { Binding, EncodedEvent, LedgerEvent } from './types.ts'

/** How far an event's claimed time may lie from a clock that judges it, in seconds, before it is refused. */
export const MAX_CLOCK_SKEW = 300

/**
 * The miner's clock where an event enters the log (the miner's flush, and the CA ahead of it): the fleet's timestamp
 * authority. Never given when a device applies, replays or syncs logged events: those follow the log's order only.
 */
export interface IntakeClock {
  /** The miner's time, seconds since the epoch. */
  now: number
  /** The time of the miner's last sealed head, when it has one. */
  headTime?: number
}

/** Options of a validation run. */
export interface ValidateOptions {
  /** Seconds since the epoch; when given, events claiming a later time (beyond skew) are refused. */
  now?: number
  /** Only where an event enters the log: its time must lie within MAX_CLOCK_SKEW of the miner's clock and head. */
  intake?: IntakeClock
  /** Skip the Ed25519 check (only for replaying a file this device wrote and already verified). */
  trustSignatures?: boolean
  /**
   * Signatures already checked ahead of validation (presign.ts: on a thread pool, while the previous batch was
   * written). Only an exact match counts: the same event id and the same key the issuer's binding holds.
   */
  verified?: VerifiedSignatures
}

/** Event signatures checked beforehand, each with the key it verified under. */
export interface VerifiedSignatures {
  /** True only when the event `idHex` was verified under exactly `ledgerKey`. */
  holds(idHex: string, ledgerKey: Uint8Array): boolean
}

/** What validation found out about the event's context, handed to `applyEvent`. */
export interface ValidatedEvent {
  encoded: EncodedEvent
  /** The issuer's binding (for genesis: undefined, the event creates it). */
  issuerBinding: Binding | undefined
  /** The subject's binding the event refers to (certified, revoke, rekey, policy). */
  targetBinding: Binding | undefined
}

function refuse(code: KinErrorCode, message: string, e: EncodedEvent): never {
  throw new VerificationError(code, message, { detail: { id: e.idHex, type: e.event.type } })
}

// ---- stages ------------------------------------------------------------------------------------------------

function checkNotDuplicate(state: LedgerState, e: EncodedEvent): void {
  if (state.has(e.idHex)) refuse('DUPLICATE_EVENT', `event ${e.idHex.slice(0, 16)}… is already in the ledger`, e)
}

function checkTime(e: EncodedEvent, opts: ValidateOptions): void {
  const t = e.event.time
  for (const now of [opts.now, opts.intake?.now]) {
    if (now !== undefined && t > now + MAX_CLOCK_SKEW) {
      refuse('TIME_IN_FUTURE', `event time ${t} is ahead of this clock (${now}) by more than ${MAX_CLOCK_SKEW} s`, e)
    }
  }
  const intake = opts.intake
  if (intake === undefined) return
  // The miner timestamps the log: nothing it logs after a revocation can claim to predate it by more than the skew.
  if (t < intake.now - MAX_CLOCK_SKEW) {
    refuse(
      'TIME_TOO_OLD',
      `event time ${t} is behind the miner's clock (${intake.now}) by more than ${MAX_CLOCK_SKEW} s; sign it again with a fresh time`,
      e,
    )
  }
  if (intake.headTime !== undefined && t < intake.headTime - MAX_CLOCK_SKEW) {
    refuse(
      'TIME_BEFORE_HEAD',
      `event time ${t} is before the miner's last head (${intake.headTime}) by more than ${MAX_CLOCK_SKEW} s`,
      e,
    )
  }
}

function checkGenesis(crypto: CryptoProvider, state: LedgerState, e: EncodedEvent, opts: ValidateOptions): void {
  const ev = e.event
  if (ev.type !== 'genesis') return
  if (state.genesis !== undefined)
    refuse('GENESIS_EXISTS', 'the ledger already has a genesis event; a fleet has exactly one', e)
  try {
    validateFleetDomain(ev.body.domain)
  } catch (err) {
    refuse('GENESIS_INVALID', `genesis names an invalid fleet domain: ${(err as Error).message}`, e)
  }
  if (!bytesEqual(ev.subject, ev.issuer)) refuse('GENESIS_INVALID', 'genesis must be issued by its own subject (L0)', e)
  const label = deriveLabel(crypto, ev.body.nonce, ev.body.spkiHash, ev.body.ledgerKey)
  if (!bytesEqual(label, ev.subject))
    refuse('CN_MISMATCH', 'genesis subject label is not derived from its nonce and keys', e)
  if (
    !opts.trustSignatures &&
    opts.verified?.holds(e.idHex, ev.body.ledgerKey) !== true &&
    !verifyEventSignature(crypto, ev, ev.body.ledgerKey, e.bytes)
  ) {
    refuse('BAD_SIGNATURE', 'genesis signature does not verify with its own ledger key', e)
  }
}

function resolveLinks(state: LedgerState, e: EncodedEvent): void {
  if (state.genesis === undefined) refuse('NO_GENESIS', 'the ledger has no genesis event yet; it must come first', e)
  for (const link of e.event.links) {
    const hex = toHex(link)
    if (!state.has(hex))
      refuse('MISSING_LINK', `event links to ${hex.slice(0, 16)}…, which this ledger does not hold (yet)`, e)
  }
}

function issuerBindingOf(state: LedgerState, e: EncodedEvent): Binding {
  const ev = e.event
  const b = state.bindingById(toHex(ev.links[0]!))
  if (b === undefined || b.label !== base32(ev.issuer)) {
    refuse(
      'LINK_MISMATCH',
      "the event's first link must be the issuer's binding (its genesis, authorize or rekey event)",
      e,
    )
  }
  return b
}

function checkIssuer(state: LedgerState, issuer: Binding, e: EncodedEvent): void {
  const t = e.event.time
  if (t < issuer.time) refuse('ISSUER_NOT_CURRENT', `the event claims a time before ${issuer.cn} was itself bound`, e)
  const inForce = state.bindingAt(issuer.cn, t)
  if (inForce !== issuer) refuse('ISSUER_NOT_CURRENT', `${issuer.cn} had other keys (a rekey) at the event's time`, e)
  const invalid = state.invalidAt(issuer, t)
  if (invalid === undefined) return
  if (invalid.code === 'EXPIRED')
    refuse('ISSUER_EXPIRED', `issuer ${issuer.cn} expired at ${invalid.notAfter}, before the event's time ${t}`, e)
  if (
    invalid.code === 'REVOKED' &&
    e.event.time >= invalid.revocation.effective &&
    invalid.revocation.reason === 'compromised'
  ) {
    refuse(
      'VOID_AFTER_REVOKE',
      `issuer ${issuer.cn} was revoked as compromised from ${invalid.revocation.effective}; its later signatures are void`,
      e,
    )
  }
  refuse(
    'ISSUER_REVOKED',
    `issuer ${issuer.cn} is not valid at the event's time (${invalid.code.toLowerCase().replace('_', ' ')})`,
    e,
  )
}

/*
 * Standing by log position: the events before this one are what the fleet knows. A revocation among them that is
 * effective by the log's time (the latest time it holds; at intake, the miner's clock if later) ends the key's
 * standing whatever time this event claims, so a stolen key gains nothing by writing an old date. Devices reach the
 * same verdict in log order: their log time is never later than the miner's clock when it took the event (plus skew).
 */
function checkStandingInLog(state: LedgerState, issuer: Binding, e: EncodedEvent, opts: ValidateOptions): void {
  const logTime = Math.max(state.logTime, opts.intake?.now ?? 0)
  const ended = state.standingEndedBy(issuer, logTime)
  if (ended === undefined) return
  const r = ended.revocation
  const whose = ended.code === 'REVOKED' ? issuer.cn : `its ancestor ${ended.ancestorCn} (with its subtree)`
  refuse(
    'ISSUER_REVOKED_IN_LOG',
    `the log already revokes ${whose} (event ${r.eventId.slice(0, 16)}…, ${r.reason}, effective ${r.effective}; log time ${logTime}): ${issuer.cn}'s key signs nothing new, whatever time it claims (${e.event.time})`,
    e,
  )
}

function checkSignature(crypto: CryptoProvider, issuer: Binding, e: EncodedEvent, opts: ValidateOptions): void {
  if (opts.trustSignatures) return
  if (opts.verified?.holds(e.idHex, issuer.ledgerKey) === true) return
  if (!verifyEventSignature(crypto, e.event, issuer.ledgerKey, e.bytes)) {
    refuse('BAD_SIGNATURE', `signature does not verify with the ledger key of ${issuer.cn}`, e)
  }
}

function checkNonceFresh(state: LedgerState, nonce: Uint8Array, e: EncodedEvent): void {
  if (state.usedNonces.has(nonceKey(nonce)))
    refuse('NONCE_REUSED', 'this authorization nonce was used before; a pairing is single-use', e)
}

// ---- per type ----------------------------------------------------------------------------------------------

function checkAuthorize(crypto: CryptoProvider, state: LedgerState, issuer: Binding, e: EncodedEvent): void {
  const ev = e.event as Extract<LedgerEvent, { type: 'authorize' }>
  const b = ev.body
  // Names and kinds are shown on terminals and pages by every device: a control character in one could forge a line.
  if (!isPrintableName(b.name) || !isPrintableName(b.kind))
    refuse(
      'NAME_NOT_PRINTABLE',
      'the name and kind of an authorized device must hold no control, line-breaking or bidirectional-override character',
      e,
    )
  if (issuer.role !== 'admin' && issuer.role !== 'member')
    refuse('ROLE_CANNOT_DELEGATE', `${issuer.cn} has role ${issuer.role}, which may not authorize devices`, e)
  if (issuer.role === 'member' && (b.role === 'admin' || b.role === 'member')) {
    refuse('ROLE_ESCALATION', `a member may authorize guests and devices only, not ${b.role}`, e)
  }
  if (issuer.depth < 1 || b.depth > issuer.depth - 1) {
    refuse(
      'DEPTH_EXHAUSTED',
      `${issuer.cn} has delegation depth ${issuer.depth}; a child may have at most ${Math.max(0, issuer.depth - 1)}`,
      e,
    )
  }
  if ((b.role === 'device' || b.role === 'guest') && b.depth !== 0)
    refuse('DEPTH_EXHAUSTED', `role ${b.role} cannot delegate, so its depth must be 0`, e)
  if (b.notAfter > issuer.notAfter)
    refuse('NOT_AFTER_EXCEEDS_PARENT', `notAfter ${b.notAfter} is later than the parent's ${issuer.notAfter}`, e)
  if (ev.time > b.notAfter)
    refuse('NOT_AFTER_PASSED', `the authorization expired (${b.notAfter}) before it was issued (${ev.time})`, e)
  if (!bytesEqual(deriveLabel(crypto, b.nonce, b.spkiHash, b.ledgerKey), ev.subject)) {
    refuse('CN_MISMATCH', 'the subject label is not derived from the nonce and the authorized keys', e)
  }
  const cn = state.cnOfLabel(ev.subject)
  if (state.currentBinding(cn) !== undefined)
    refuse('CN_EXISTS', `${cn} is already authorized; new keys for it need a rekey by its parent`, e)
  checkNonceFresh(state, b.nonce, e)
}

function targetBindingOf(state: LedgerState, e: EncodedEvent, index: number): Binding {
  const ev = e.event
  const b = state.bindingById(toHex(ev.links[index]!))
  if (b === undefined || b.cn !== state.cnOfLabel(ev.subject))
    refuse('LINK_MISMATCH', 'the event must link to a binding of its subject', e)
  return b
}

function checkCertified(issuer: Binding, e: EncodedEvent): void {
  const ev = e.event as Extract<LedgerEvent, { type: 'certified' }>
  if (issuer.certHashes.includes(toHex(ev.body.certHash)))
    refuse('CERTIFIED_DUPLICATE', 'this certificate is already recorded for this binding', e)
}

// Runs before the link stages: a certified event naming another issuer would otherwise always fail them first (LINK_MISMATCH).
function checkCertifiedBySubject(e: EncodedEvent): void {
  if (e.event.type === 'certified' && !bytesEqual(e.event.subject, e.event.issuer)) {
    refuse('CERTIFIED_NOT_SUBJECT', 'a certified event is signed by its subject, with its own ledger key', e)
  }
}

function checkRevoke(state: LedgerState, issuer: Binding, target: Binding, e: EncodedEvent): void {
  if (!state.isAncestorOrSelf(issuer.cn, target))
    refuse('REVOKE_NOT_ALLOWED', `${issuer.cn} is neither ${target.cn} nor one of its ancestors`, e)
}

function checkRekey(state: LedgerState, issuer: Binding, target: Binding, e: EncodedEvent): void {
  const ev = e.event as Extract<LedgerEvent, { type: 'rekey' }>
  // A device may replace its own TLS key (kin rekey, docs/PROTOCOL.md "Rekey"): its current binding signs for the
  // new key, so the chain of ledger keys stays parent-signed (no new ledger key) and its authorization cannot grow.
  // L0 has no parent and rekeys nothing of its own.
  const self = issuer === target && target.parentCn !== undefined
  if (target.parentCn !== issuer.cn && !self)
    refuse(
      'REKEY_NOT_PARENT',
      `only the parent of ${target.cn} (or the device itself, for its TLS key) may rekey it`,
      e,
    )
  if (self && (!bytesEqual(ev.body.ledgerKey, target.ledgerKey) || ev.body.notAfter > target.notAfter))
    refuse(
      'REKEY_SELF_LIMITS',
      `${target.cn} may replace its own TLS key only: the same ledger key, notAfter no later than ${target.notAfter}; anything more needs its parent`,
      e,
    )
  if (state.currentBinding(target.cn) !== target)
    refuse('LINK_MISMATCH', "a rekey must link to the subject's current binding", e)
  if (ev.time < target.time) refuse('LINK_MISMATCH', 'a rekey cannot predate the binding it replaces', e)
  if (ev.body.notAfter > issuer.notAfter)
    refuse('NOT_AFTER_EXCEEDS_PARENT', `notAfter ${ev.body.notAfter} is later than the parent's ${issuer.notAfter}`, e)
  if (ev.time > ev.body.notAfter) refuse('NOT_AFTER_PASSED', 'the rekey expired before it was issued', e)
  checkNonceFresh(state, ev.body.nonce, e)
}

// An identity that may not delegate has no descendants, so past the ancestor rule its only target is itself:
// a guest or device writing policy on itself would put bytes in every device's ledger that no role needs.
function checkPolicy(state: LedgerState, issuer: Binding, target: Binding, e: EncodedEvent): void {
  if (!state.isAncestorOrSelf(issuer.cn, target))
    refuse('POLICY_NOT_ANCESTOR', `${issuer.cn} is not an ancestor of ${target.cn}`, e)
  if ((issuer.role !== 'admin' && issuer.role !== 'member') || issuer.depth < 1) {
    refuse(
      'POLICY_NOT_DELEGATOR',
      `${issuer.cn} has role ${issuer.role} and delegation depth ${issuer.depth}; only identities that may delegate (admin or member, depth 1 or more) set policy`,
      e,
    )
  }
}

/**
 * The whole recipe: duplicate → time (at intake: within the miner's skew) → genesis | (links → issuer binding →
 * issuer valid at the event's time → issuer's standing not ended by a revocation already in the log → signature →
 * type rules). Throws VerificationError with a specific code; returns what `applyEvent` needs.
 */
export function validateEvent(
  crypto: CryptoProvider,
  state: LedgerState,
  e: EncodedEvent,
  opts: ValidateOptions = {},
): ValidatedEvent {
  checkNotDuplicate(state, e)
  checkTime(e, opts)
  if (e.event.type === 'genesis') {
    checkGenesis(crypto, state, e, opts)
    return { encoded: e, issuerBinding: undefined, targetBinding: undefined }
  }
  resolveLinks(state, e)
  checkCertifiedBySubject(e)
  const issuer = issuerBindingOf(state, e)
  let target: Binding | undefined
  if (e.event.type === 'certified') target = targetBindingOf(state, e, 0)
  if (e.event.type === 'revoke' || e.event.type === 'rekey' || e.event.type === 'policy')
    target = targetBindingOf(state, e, 1)
  // A rekey may replace a revoked binding (that is what it is for); only its issuer must be valid.
  checkIssuer(state, issuer, e)
  checkStandingInLog(state, issuer, e, opts)
  checkSignature(crypto, issuer, e, opts)
  switch (e.event.type) {
    case 'authorize':
      checkAuthorize(crypto, state, issuer, e)
      break
    case 'certified':
      checkCertified(issuer, e)
      break
    case 'revoke':
      checkRevoke(state, issuer, target!, e)
      break
    case 'rekey':
      checkRekey(state, issuer, target!, e)
      break
    case 'policy':
      checkPolicy(state, issuer, target!, e)
      break
  }
  return { encoded: e, issuerBinding: issuer, targetBinding: target }
}
