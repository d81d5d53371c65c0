/** @module Whether this device's own identity is revoked in its replica (its own revocation, or an ancestor's over it), told plainly. */
import { KinError } from '../errors.ts'
import type { LedgerState } from '../ledger/state.ts'
import type { RevokeReasonName } from '../ledger/types.ts'

/** What a device learns when its replica records its own revocation: who, why, by whom, from when. */
export interface RevocationNotice {
  /** This device's CN and name. */
  cn: string
  name: string
  /** REVOKED: its own binding; ANCESTOR_REVOKED: an ancestor's revocation covers it (`ancestorCn`). */
  why: 'REVOKED' | 'ANCESTOR_REVOKED'
  ancestorCn: string | undefined
  reason: RevokeReasonName
  /** Whether the revocation takes the revoked identity's subtree too. */
  subtree: boolean
  /** The CN (and name, when the ledger knows it) of the device that signed the revoke. */
  by: string
  byName: string | undefined
  /** Seconds since the epoch from which it counts. */
  effective: number
  /** Id (hex) of the revoke event. */
  eventId: string
}

function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace('.000Z', 'Z')
}

/**
 * The revocation that ends this device's standing at `now`, read from its own verified ledger: the current binding
 * of `cn` revoked, or covered by an ancestor's revocation (with its subtree, or one that predates it). Undefined when
 * the device stands, or when its ledger does not know it yet (a device between enrollment steps is not revoked).
 */
export function ownRevocation(state: LedgerState, cn: string, now: number): RevocationNotice | undefined {
  const binding = state.currentBinding(cn)
  if (binding === undefined) return undefined
  const invalid = state.invalidAt(binding, now)
  if (invalid === undefined || (invalid.code !== 'REVOKED' && invalid.code !== 'ANCESTOR_REVOKED')) return undefined
  const r = invalid.revocation
  return {
    cn,
    name: binding.name,
    why: invalid.code,
    ancestorCn: invalid.code === 'ANCESTOR_REVOKED' ? invalid.ancestorCn : undefined,
    reason: r.reason,
    subtree: r.subtree,
    by: r.by,
    byName: state.currentBinding(r.by)?.name,
    effective: r.effective,
    eventId: r.eventId,
  }
}

/** The one line a revoked device prints, logs and audits: what happened and what to do about it. */
export function describeRevocation(n: RevocationNotice): string {
  const self = n.name === '' ? n.cn : `${n.cn}, "${n.name}"`
  const by = n.byName === undefined || n.byName === '' ? n.by : `${n.by} ("${n.byName}")`
  const what =
    n.why === 'REVOKED'
      ? 'was revoked'
      : `falls with its ancestor ${n.ancestorCn}, revoked ${n.subtree ? 'with its subtree' : 'before this device was authorized'}`
  return `this device (${self}) ${what} (${n.reason}) by ${by}, effective ${iso(n.effective)}: it stops serving; enroll it again to bring it back`
}

/** The coded error for a revoked device (IDENTITY_REVOKED), with the notice as its detail. */
export function revokedError(n: RevocationNotice): KinError {
  return new KinError('IDENTITY_REVOKED', describeRevocation(n), { detail: { ...n } })
}
