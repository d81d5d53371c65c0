/** @module Decision values: a refusal before the engine ran, and the one way an error becomes a Decision. */
import { KinError, type KinErrorCode } from '../errors.ts'
import type { Decision } from './types.ts'

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
