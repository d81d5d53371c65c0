/** @module The audit record of an access decision and its one-line JSON form (design "Access decision" step 6). */
import type { Decision } from './types.ts'

/** What a device keeps of each decision it made. */
export interface AuditRecord {
  /** Seconds since the epoch. */
  time: number
  /** The peer's CN, or undefined when the chain check failed before naming it. */
  peer: string | undefined
  action: string
  allow: boolean
  /** 'ALLOW' or the deny code. */
  code: string
  path: string[]
}

/** The audit record of a decision. */
export function auditRecordOf(decision: Decision): AuditRecord {
  return { time: decision.time, peer: decision.peer, action: decision.action, allow: decision.allow, code: decision.code, path: decision.path.slice() }
}

/**
 * One JSON line, without the line break, keys always in the order time, peer, action, allow, code, path; an absent
 * peer is null. JSON escapes control characters, so a hostile CN or action cannot forge a second line.
 */
export function formatAuditLine(record: AuditRecord): string {
  return JSON.stringify({
    time: record.time, peer: record.peer ?? null, action: record.action, allow: record.allow, code: record.code, path: record.path,
  })
}
