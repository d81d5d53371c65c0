/** @module Per-identity intake quotas at the miner: token buckets of events and bytes per submitting CN, tighter for guests and devices. */
import { KinError } from '../errors.ts'
import type { RoleName } from './types.ts'

/** One role's allowance: a bucket of events and one of bytes, each with its size (burst) and refill per second. */
export interface QuotaBudget {
  /** Most events a submitter may send at once (bucket size). */
  events: number
  /** Events the bucket regains per second. */
  eventsPerSecond: number
  /** Most event bytes a submitter may have kept at once (bucket size). */
  bytes: number
  /** Bytes the bucket regains per second. */
  bytesPerSecond: number
}

/** Allowances by role of the submitter's current binding. */
export type QuotaBudgets = Record<RoleName, QuotaBudget>

/**
 * Default allowances. An admin or member authorizes, revokes and sets policy for a household, and catches up on
 * what it did offline: a few full submissions (256 events) at once, then tens a second. A device or guest needs its
 * certified event, a self-revoke, a rekey's certified event: a handful, and a few a minute after that. About 250 B
 * per event sizes the byte buckets.
 */
export const DEFAULT_QUOTAS: Readonly<QuotaBudgets> = Object.freeze({
  admin: Object.freeze({ events: 1024, eventsPerSecond: 128, bytes: 512 * 1024, bytesPerSecond: 128 * 1024 }),
  member: Object.freeze({ events: 512, eventsPerSecond: 64, bytes: 256 * 1024, bytesPerSecond: 64 * 1024 }),
  device: Object.freeze({ events: 8, eventsPerSecond: 0.1, bytes: 4 * 1024, bytesPerSecond: 32 }),
  guest: Object.freeze({ events: 4, eventsPerSecond: 0.05, bytes: 2 * 1024, bytesPerSecond: 16 }),
})

/** Options of an IntakeQuota. */
export interface QuotaOptions {
  /** Per-role overrides of DEFAULT_QUOTAS (a missing field keeps the default). */
  budgets?: Partial<Record<RoleName, Partial<QuotaBudget>>>
  /** Milliseconds on any monotonic scale: when buckets refill. */
  clock: () => number
}

/** What one submission took from a submitter's buckets, to be given back in part (`IntakeQuota.refund`). */
export interface QuotaCharge {
  cn: string
  events: number
  bytes: number
}

interface Bucket {
  role: RoleName
  events: number
  bytes: number
  /** Clock (ms) of the last refill. */
  at: number
}

function checkBudget(role: string, b: QuotaBudget): QuotaBudget {
  for (const [k, v] of Object.entries(b)) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
      throw new RangeError(`quota "${role}.${k}" expected a finite number >= 0, got ${String(v)}`)
  }
  return b
}

/**
 * Token buckets per submitting CN. `take` reserves a whole submission's events and bytes before the miner does any
 * work on it, or refuses it (QUOTA_RATE, QUOTA_BYTES) and takes nothing; `refund` gives back what the ledger did
 * not keep. A bucket starts full and is sized by the role of the submitter's binding at the time it is charged.
 */
export class IntakeQuota {
  /** The allowances in force, by role. */
  readonly budgets: Readonly<QuotaBudgets>
  private readonly clock: () => number
  private readonly buckets = new Map<string, Bucket>()

  constructor(opts: QuotaOptions) {
    if (typeof opts.clock !== 'function') throw new TypeError('"clock" expected a function returning milliseconds')
    const budgets = {} as QuotaBudgets
    for (const role of Object.keys(DEFAULT_QUOTAS) as RoleName[]) {
      budgets[role] = checkBudget(role, { ...DEFAULT_QUOTAS[role], ...opts.budgets?.[role] })
    }
    this.budgets = budgets
    this.clock = opts.clock
  }

  private bucket(cn: string, role: RoleName): Bucket {
    const budget = this.budgets[role]
    const now = this.clock()
    let b = this.buckets.get(cn)
    if (b === undefined) {
      b = { role, events: budget.events, bytes: budget.bytes, at: now }
      this.buckets.set(cn, b)
      return b
    }
    const seconds = Math.max(0, now - b.at) / 1000
    b.at = Math.max(b.at, now)
    // A role changes with a rekey or a new binding; the tighter of the two sizes holds what the bucket may keep.
    b.role = role
    b.events = Math.min(budget.events, b.events + seconds * budget.eventsPerSecond)
    b.bytes = Math.min(budget.bytes, b.bytes + seconds * budget.bytesPerSecond)
    return b
  }

  /**
   * Reserves `events` events of `bytes` bytes for `cn` (role `role`): the charge, or a KinError (QUOTA_RATE when
   * the event bucket is short, else QUOTA_BYTES) with nothing taken.
   */
  take(cn: string, role: RoleName, events: number, bytes: number): QuotaCharge | KinError {
    const b = this.bucket(cn, role)
    const budget = this.budgets[role]
    if (events > b.events) {
      const why =
        events > budget.events
          ? `more than a ${role} may send at once (${budget.events})`
          : `${Math.floor(b.events)} left, ${budget.eventsPerSecond}/s regained`
      return new KinError('QUOTA_RATE', `${cn} submitted ${events} events: ${why}`, { detail: { cn, role, events } })
    }
    if (bytes > b.bytes) {
      const why =
        bytes > budget.bytes
          ? `more than a ${role} may send at once (${budget.bytes})`
          : `${Math.floor(b.bytes)} left, ${budget.bytesPerSecond} B/s regained`
      return new KinError('QUOTA_BYTES', `${cn} submitted ${bytes} bytes of events: ${why}`, {
        detail: { cn, role, bytes },
      })
    }
    b.events -= events
    b.bytes -= bytes
    return { cn, events, bytes }
  }

  /** Gives back part of a charge (events the miner did not have to judge, bytes the ledger did not keep). */
  refund(charge: QuotaCharge, events: number, bytes: number): void {
    const b = this.buckets.get(charge.cn)
    if (b === undefined) return
    const budget = this.budgets[b.role]
    b.events = Math.min(budget.events, b.events + Math.min(events, charge.events))
    b.bytes = Math.min(budget.bytes, b.bytes + Math.min(bytes, charge.bytes))
  }

  /** What `cn` may submit now (whole events, bytes), or undefined when it has not submitted yet. */
  remaining(cn: string): { events: number; bytes: number } | undefined {
    const b = this.buckets.get(cn)
    if (b === undefined) return undefined
    const r = this.bucket(cn, b.role)
    return { events: Math.floor(r.events), bytes: Math.floor(r.bytes) }
  }
}
