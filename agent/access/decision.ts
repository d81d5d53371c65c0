/** @module Decision values: a refusal before the engine ran, and the one way an error becomes a Decision. */
import { KinError, type KinErrorCode } from '../errors.ts'
import type { AccessAnswer, Decision } from './types.ts'

/** A deny decided before the engine ran (no certificate, a malformed request, a failed challenge): no path, no peer. */
export function refusalDecision(
  code: KinErrorCode,
  reason: string,
  action: string,
  time: number,
  peer?: string,
): Decision {
  return {
    allow: false,
    code,
    reason,
    path: [],
    commonAncestor: undefined,
    hops: undefined,
    peer,
    action,
    time,
    retry: false,
    missing: undefined,
  }
}

/**
 * The one way an error becomes a Decision: a deny with the error's code (INTERNAL for anything uncoded), and its
 * `retry` and `missing` hints when the error carries them.
 */
export function decisionOfError(e: unknown, action: string, time: number, peer?: string): Decision {
  const base =
    e instanceof KinError
      ? refusalDecision(e.code, e.message, action, time, peer)
      : refusalDecision('INTERNAL', `decision failed: ${(e as Error)?.message ?? String(e)}`, action, time, peer)
  if (e instanceof KinError) {
    const missing = e.detail?.['missing']
    base.retry = e.detail?.['retry'] === true
    base.missing = typeof missing === 'string' ? missing : undefined
  }
  return base
}

/**
 * The answer a requester read (the TLS answer line or an inbox verdict) as a Decision, for a report that shows it
 * beside the decisions made here: nothing to retry, no proof named missing (the answer carries neither).
 */
export function decisionOfAnswer(a: AccessAnswer): Decision {
  return {
    allow: a.allow,
    code: a.code as Decision['code'],
    reason: a.reason,
    path: a.path,
    commonAncestor: a.commonAncestor ?? undefined,
    hops: a.hops ?? undefined,
    peer: a.peer ?? undefined,
    action: a.action,
    time: a.time,
    retry: false,
    missing: undefined,
  }
}
