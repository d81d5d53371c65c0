/** @module The attack suite's vocabulary: a case (attack or control), what it expects, what came of it. */
import type { Decision } from '../../agent/access/types.ts'

/** Where an attack aims: identities and TLS, challenges, proof bundles, a device's ledger file, the miner, the fleet's life. */
export type AttackFamily = 'identity' | 'challenge' | 'bundle' | 'ledger' | 'miner' | 'lifecycle'

/** An attack must be refused; a control (a legitimate request) must go through. */
export type CaseKind = 'attack' | 'control'

/** What an access decision that let the peer in is called. */
export const ALLOW = 'ALLOW'
/** What a control that is not an access decision (a ledger reopened, a head adopted, a bundle verified) reports when it held. */
export const ACCEPTED = 'ACCEPTED'
/** A requester whose TLS handshake the device aborted: no session came about, so nothing was decided. */
export const TLS_HANDSHAKE = 'TLS_HANDSHAKE'

/** True when `code` let the request or the data in. */
export function isAccepted(code: string): boolean {
  return code === ALLOW || code === ACCEPTED
}

/** One case of the suite, before it runs. */
export interface AttackSpec {
  /** Short stable id, e.g. 'rogue-ca'. */
  id: string
  family: AttackFamily
  kind: CaseKind
  /** What is tried, in one line. */
  attack: string
  /** Codes that count as the expected outcome: refusal codes for an attack, ALLOW or ACCEPTED for a control. */
  expected: readonly string[]
}

/** An access decision a case produced, for the report's decision cards. */
export interface CaseDecision {
  /** Labels (or 'Eve') of the requester and the device asked. */
  peer: string
  target: string
  action: string
  decision: Decision
}

/** What a case saw. */
export interface AttackOutcome {
  /** The code seen: a decision's code, a thrown KinError's code, TLS_HANDSHAKE, ACCEPTED. */
  actual: string
  /** Why, in a sentence: the refusal's reason or the evidence gathered. */
  detail: string
  decision?: CaseDecision
}

/** One row of the table. */
export interface AttackRow extends AttackSpec {
  actual: string
  detail: string
  /** The request or the data was turned away. */
  refused: boolean
  /** The outcome is in `expected`. */
  ok: boolean
  ms: number
}

/** The suite's verdict over its rows. */
export interface AttackTally {
  attacks: number
  controls: number
  /** Attacks that were let in. */
  falseAccepts: number
  /** Controls that were turned away. */
  falseRejects: number
  /** Attacks refused, but with a code outside the expected set. */
  wrongCodes: number
  /** Cases that failed to run (the harness, not the fleet, stopped them): never counted as refusals. */
  errors: number
  ok: boolean
}

/** True for the row of a case that threw instead of showing its outcome. */
export function isError(row: Pick<AttackRow, 'actual'>): boolean {
  return row.actual.startsWith('ERROR ')
}

/** Counts false accepts, false rejects and unexpected codes. */
export function tally(rows: readonly AttackRow[]): AttackTally {
  const attacks = rows.filter(r => r.kind === 'attack'),
    controls = rows.filter(r => r.kind === 'control')
  const errors = rows.filter(isError).length
  const falseAccepts = attacks.filter(r => !r.refused && !isError(r)).length
  const falseRejects = controls.filter(r => r.refused && !isError(r)).length
  const wrongCodes = rows.filter(r => !r.ok && !isError(r)).length - falseAccepts - falseRejects
  return {
    attacks: attacks.length,
    controls: controls.length,
    falseAccepts,
    falseRejects,
    wrongCodes,
    errors,
    ok: rows.length > 0 && rows.every(r => r.ok),
  }
}
