/** @module The audit record of an access decision and its one-line JSON form (DESIGN.md "Access decision" step 6). */
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
  return {
    time: decision.time,
    peer: decision.peer,
    action: decision.action,
    allow: decision.allow,
    code: decision.code,
    path: decision.path.slice(),
  }
}

/**
 * One JSON line, without the line break, keys always in the order time, peer, action, allow, code, path; an absent
 * peer is null. JSON escapes control characters, so a hostile CN or action cannot forge a second line.
 */
export function formatAuditLine(record: AuditRecord): string {
  return JSON.stringify({
    time: record.time,
    peer: record.peer ?? null,
    action: record.action,
    allow: record.allow,
    code: record.code,
    path: record.path,
  })
}

/** Default length (seconds) of one summary interval of unauthenticated refusals. */
export const DEFAULT_SUMMARY_INTERVAL_SECONDS = 60
/** Default distinct (address, code) pairs counted in one interval; the rest are counted under the address "*". */
export const DEFAULT_SUMMARY_SOURCES = 256

/** Refusals of peers that never authenticated, from one address with one code, over one interval. */
export interface AuditSummary {
  /** End of the interval (seconds since the epoch). */
  time: number
  /** Start of the interval: the first refusal counted. */
  since: number
  /** The peer's network address (no port), or "*" for sources beyond the table's size. */
  remote: string
  code: string
  /** Refusals counted. */
  count: number
}

/** True for a refusal of a peer that never authenticated: no certificate, or one that did not name a fleet identity. */
export function isUnauthenticatedRefusal(decision: Decision): boolean {
  return !decision.allow && decision.peer === undefined
}

/**
 * The summary's JSON line: the keys of a decision line (peer null, action "*", allow false, path empty) so readers of
 * audit.log need no second shape, then `summary` with the address, the interval's start and the count.
 */
export function formatAuditSummaryLine(summary: AuditSummary): string {
  return JSON.stringify({
    time: summary.time,
    peer: null,
    action: '*',
    allow: false,
    code: summary.code,
    path: [],
    summary: { remote: summary.remote, since: summary.since, count: summary.count },
  })
}

/**
 * Counts refusals of unauthenticated peers per (address, code) instead of writing a line each, so that a flood of
 * certificate-less connections costs the audit log one line per interval and address, and decisions about real peers
 * stay in it. Bounded: at most `sources` pairs per interval; the rest share the address "*".
 */
export class RefusalSummary {
  readonly intervalSeconds: number
  readonly sources: number
  #start: number | undefined
  readonly #counts = new Map<string, AuditSummary>()

  constructor(options: { intervalSeconds?: number; sources?: number } = {}) {
    this.intervalSeconds = options.intervalSeconds ?? DEFAULT_SUMMARY_INTERVAL_SECONDS
    this.sources = options.sources ?? DEFAULT_SUMMARY_SOURCES
    if (!Number.isSafeInteger(this.intervalSeconds) || this.intervalSeconds < 1)
      throw new RangeError(`"intervalSeconds" expected a positive integer, got ${this.intervalSeconds}`)
    if (!Number.isSafeInteger(this.sources) || this.sources < 1)
      throw new RangeError(`"sources" expected a positive integer, got ${this.sources}`)
  }

  /** Refusals counted and not yet summarised. */
  get pending(): number {
    let n = 0
    for (const s of this.#counts.values()) n += s.count
    return n
  }

  /** Counts one refusal from `remote` at `now`; returns the summaries of an interval that ended before it. */
  count(remote: string, code: string, now: number): AuditSummary[] {
    const due = this.due(now)
    this.#start ??= now
    let key = `${remote}\n${code}`
    if (!this.#counts.has(key) && this.#counts.size >= this.sources) {
      remote = '*'
      key = `*\n${code}`
    }
    const entry = this.#counts.get(key)
    if (entry === undefined) this.#counts.set(key, { time: now, since: now, remote, code, count: 1 })
    else {
      entry.count++
      entry.time = now
    }
    return due
  }

  /** The summaries of the current interval when it has ended by `now` (then a new one starts), else none. */
  due(now: number): AuditSummary[] {
    if (this.#start === undefined || now - this.#start < this.intervalSeconds) return []
    return this.drain(now)
  }

  /** Every summary counted so far, stamped `now`, and a fresh interval (shutdown, or a flush). */
  drain(now: number): AuditSummary[] {
    const out = [...this.#counts.values()].map(s => ({ ...s, time: now }))
    this.#counts.clear()
    this.#start = undefined
    return out
  }
}
