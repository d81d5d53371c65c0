/** @module What `kin sim fleet` takes and gives: the options of a run and its result (run.ts runs it, report.ts draws it). */
import type { FleetLog, LiveFleet } from '../live/fleet.ts'
import type { SimReport } from '../report/model.ts'
import type { BundleTier, TiersFigures } from './bundle-tier.ts'
import type { FleetCheck } from './checks.ts'
import type { EnrollTiming } from './enroller.ts'
import type { KeyPoolStats } from './key-pool.ts'
import type { TlsKeyType } from '../../agent/pki/key-type.ts'
import type { ProgressBar } from './progress.ts'
import type { MemorySample } from './stats.ts'

/** What to run. */
export interface FleetRunOptions {
  devices: number
  /** Deepest layer under L0 (default 3). */
  depth?: number
  /** Children per parent (default: the smallest that fits `devices` in `depth`). */
  fanout?: number
  /** Where the device homes go. */
  dir: string
  /** Enrollments in flight at once (default 16). */
  concurrency?: number
  /** Random access checks decided in process on the targets' AccessSessions (default 500). */
  checks?: number
  /** Of which this many are also asked over mutual TLS (default 10). */
  tlsChecks?: number
  /** Leaves revoked by their parents mid-run (default N/100, 1..10). */
  revocations?: number
  /** Restart L0 mid-run, with revocations in flight. */
  killBroker?: boolean
  /** Stop this many devices' followers for a while: they miss revocations, the restart and half the enrollments. */
  partition?: number
  /** Shortest partition, ms (default 2000). */
  partitionMinMs?: number
  /** L0's longest wait before sealing, ms (default: defaultSealIntervalMs in run.ts, N/5 above 1,000 devices). */
  sealIntervalMs?: number
  /** File of the RSA key pool (undefined: keys made in memory for this run only). */
  keyPool?: string | undefined
  /** The devices' TLS key type (default P-256, as `kin enroll` makes). */
  keyType?: TlsKeyType
  seed?: number
  bars?: (label: string, total: number) => ProgressBar
  /** Told each phase's outcome, one line each. */
  say?: (line: string) => void
  log?: FleetLog
  convergeTimeoutMs?: number
  /** Also build the SimReport (tree, ledger, decisions, charts). */
  report?: boolean
  /** 'mixed': locks, cameras, sensors and guests' phones run the bundle tier (sim/fleet/bundle-tier.ts); 'full' (default): every device holds the whole ledger. */
  tiers?: 'full' | 'mixed'
  /** Called with the converged fleet after the checks, before it closes (tests look inside). */
  inspect?: (fleet: LiveFleet, partitioned: readonly string[], bundleTier: BundleTier) => Promise<void> | void
}

/** Medians (and p99 of the total) of the enrollment phases, ms. */
export type PhaseFigures = Record<Exclude<keyof EnrollTiming, 'label'>, number> & { p99TotalMs: number }

/** Everything a run measured. */
export interface FleetRunResult {
  ok: boolean
  failures: string[]
  seconds: number
  plan: { devices: number; depth: number; fanout: number; roles: Record<string, number> }
  dir: string
  keys: KeyPoolStats
  /** retries: enrollments begun again with a new code after a lost session or a timeout (the machine was saturated), and logins closed before CONNACK tried again (LOGIN_CLOSED_BEFORE_CONNACK). */
  enrollment: {
    devices: number
    seconds: number
    perSecond: number
    concurrency: number
    phases: PhaseFigures
    retries: Record<string, number>
  }
  brokerRestart: { restartMs: number; eventsBefore: number; inFlight: number; eventsAfterRestart: number } | undefined
  partition: { devices: number; labels: string[]; seconds: number; eventsMissed: number; catchUpMs: number } | undefined
  revoked: string[]
  convergence: { ms: number; events: number; headHeight: number; devices: number; sameHead: boolean }
  decisions: {
    via: string
    count: number
    p50Ms: number
    p99Ms: number
    maxMs: number
    allowed: number
    denied: number
    unexpected: number
    /** refusedByRequester: TLS checks the requester's own server identity check ended before the target was asked. */
    tls: { count: number; p50Ms: number; p99Ms: number; unexpected: number; refusedByRequester: number }
  }
  ledger: {
    events: number
    eventBytes: number
    fileBytes: number
    bytesPerDevice: number
    enrollmentBytesPerDevice: number
  }
  /** rssPerDeviceKb: growth of rss from L0 started to the end, per device. */
  memory: {
    peakRssMb: number
    peakHeapMb: number
    endRssMb: number
    endHeapMb: number
    baselineRssMb: number
    rssPerDeviceKb: number
  }
  /** loadAverage: the machine's 1-minute load at the start and the end (other processes share the cores). */
  cpu: { userSeconds: number; systemSeconds: number; coresBusy: number; cores: number; loadAverage: [number, number] }
  followers: { alarms: number; errors: Record<string, number>; headsAdoptedMedian: number }
  /** Events a device handed L0 that L0's ledger does not hold at the end (must be 0). */
  lost: number
  checks: FleetCheck[]
  memorySamples: MemorySample[]
  enrollCurve: Array<{ seconds: number; enrolled: number }>
  report: SimReport | undefined
  /** Both tiers' figures; undefined when every device was a full device. */
  tiers: TiersFigures | undefined
}
