/** @module `kin sim fleet`: a fleet of N devices on L0's real services — enrollment through the broker, faults, convergence, access checks, figures. */
import { prepareKeepDir, reportTarget } from '../../runtime/output-file.ts'
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fitsInMemory } from '../../sim/fleet/footprint.ts'
import { DEFAULT_KEY_POOL_FILE } from '../../sim/fleet/key-pool.ts'
import { parseTlsKeyType } from '../../agent/pki/key-type.ts'
import { planFleet } from '../../sim/fleet/plan.ts'
import { progressBars } from '../../sim/fleet/progress.ts'
import { defaultSealIntervalMs, runFleet, type FleetRunResult } from '../../sim/fleet/run.ts'
import { writeReport } from '../../sim/report/html.ts'
import { usageError, type CommandSpec, type ParsedArgs } from '../args.ts'
import { emit } from '../output.ts'
import { KinError } from '../../agent/errors.ts'
import { SEAL_INTERVAL_MS } from '../../broker/miner-service.ts'

function count(args: ParsedArgs, name: string, fallback: number | undefined, min: number): number | undefined {
  const v = args.values[name]
  if (v === undefined) return fallback
  if (typeof v !== 'string' || !/^\d+$/.test(v) || Number(v) < min)
    throw usageError(`--${name} expects a whole number of at least ${min}, got "${String(v)}"`)
  return Number(v)
}

/**
 * Depth 3 unless its tree has more full devices (the inviting ones, with the whole ledger each) than this process's
 * memory holds: then 2, whose wider tree has fewer inviting devices for the same N.
 */
function defaultDepth(devices: number, tiers: 'mixed' | 'full', fanout: number | undefined): number {
  const full = (depth: number) =>
    planFleet({ devices, depth, ...(fanout !== undefined ? { fanout } : {}), tiers }).devices.filter(
      d => d.tier === 'full',
    ).length + 1
  try {
    // When depth 3 does not fit, depth 2 needs less; the check after the plan then says what it needs (a heap flag).
    return fitsInMemory(devices, full(3)).fits || full(2) >= full(3) ? 3 : 2
  } catch {
    // The tree does not fit at one of the depths: depth 3 says why, as before.
    return 3
  }
}

/** Homes go to memory-backed /dev/shm when there is one: a thousand replicas fsync on every head, which a disk turns into the bottleneck. */
function homesRoot(): { root: string; note: string } {
  if (process.platform === 'linux' && existsSync('/dev/shm'))
    return { root: '/dev/shm', note: 'tmpfs /dev/shm (fsync is cheap there; use --keep DIR for a disk)' }
  return { root: tmpdir(), note: tmpdir() }
}

function summary(r: FleetRunResult, homes: string, reportFile: string | undefined): string {
  const p = r.enrollment.phases
  const lines = [
    '',
    `${r.ok ? 'ok' : 'FAILED'}: ${r.plan.devices} device${r.plan.devices === 1 ? '' : 's'} (${Object.entries(
      r.plan.roles,
    )
      .map(([k, v]) => `${v} ${k}`)
      .join(', ')}), depth ${r.plan.depth}, fanout ${r.plan.fanout}, in ${r.seconds} s`,
    `  enrollment     ${r.enrollment.perSecond}/s (${r.enrollment.devices} in ${r.enrollment.seconds} s, ${r.enrollment.concurrency} at once; RSA keys from the pool: ${r.keys.fromDisk} from disk, ${r.keys.made} made in ${(r.keys.makeMs / 1000).toFixed(1)} s)`,
    ...(Object.keys(r.enrollment.retries).length > 0
      ? [
          `    retried      ${Object.entries(r.enrollment.retries)
            .map(([k, v]) => `${v} after ${k}`)
            .join(', ')} (each with a new code and new keys)`,
        ]
      : []),
    `    median ms    queued ${p.queuedMs}, invite ${p.inviteMs}, pairing ${p.pairingMs}, home ${p.homeMs}, submit ${p.submitMs}, follow ${p.followMs}; total ${p.totalMs} (p99 ${p.p99TotalMs})`,
    `  convergence    ${r.convergence.ms} ms after the last change: ${r.convergence.devices} devices on head ${r.convergence.headHeight} over ${r.convergence.events} events; ${r.lost} submitted events lost`,
    r.decisions.count === 0
      ? '  decisions      none (no device in good standing to ask)'
      : `  decisions      ${r.decisions.count} in process: p50 ${r.decisions.p50Ms} ms, p99 ${r.decisions.p99Ms} ms, max ${r.decisions.maxMs} ms; ${r.decisions.unexpected} unexpected` +
        `; ${r.decisions.tls.count} over mutual TLS: p50 ${r.decisions.tls.p50Ms} ms`,
    `  ledger         ${r.ledger.eventBytes} bytes in ${r.ledger.events} events: ${r.ledger.bytesPerDevice} bytes per device (authorize + certified ${r.ledger.enrollmentBytesPerDevice})`,
    `  memory         rss peak ${r.memory.peakRssMb} MB, heap peak ${r.memory.peakHeapMb} MB (~${r.memory.rssPerDeviceKb} KB more rss per device)`,
    `  cpu            ${r.cpu.userSeconds} s user + ${r.cpu.systemSeconds} s system (${r.cpu.coresBusy} of ${r.cpu.cores} cores busy on average; machine load ${r.cpu.loadAverage[0]} → ${r.cpu.loadAverage[1]})`,
  ]
  if (r.tiers !== undefined) {
    const { full, bundle } = r.tiers
    const row = (name: string, t: typeof full) =>
      `  ${name} ${t.devices} devices (${t.standing} standing), each holds ${t.eventsHeld} events / ${t.bytesHeld} bytes (~${t.heapKbPerDevice} KB heap); ${t.decisions.count} decisions as target: p50 ${t.decisions.p50Ms} ms, p99 ${t.decisions.p99Ms} ms, ${t.decisions.unexpected} unexpected`
    lines.push(
      row('full tier     ', full),
      row('bundle tier   ', bundle),
      `    bundle heads boot p50 ${bundle.bootP50Ms} ms, refresh p50 ${bundle.refreshP50Ms} ms (${bundle.refreshed} refreshed); oldest head held ${bundle.oldestHeight} of L0's ${bundle.latestHeight}; per decision ${bundle.verifiedPerDecision} signatures checked, ${bundle.cachedPerDecision} from the cache`,
    )
  }
  if (r.brokerRestart)
    lines.push(
      `  kill-broker    L0 restarted in ${r.brokerRestart.restartMs} ms with ${r.brokerRestart.inFlight} revocations in flight`,
    )
  if (r.partition)
    lines.push(
      `  partition      ${r.partition.devices} devices cut off for ${r.partition.seconds} s missed ${r.partition.eventsMissed} events, caught up in ${r.partition.catchUpMs} ms`,
    )
  lines.push(`  homes          ${homes}`)
  if (reportFile) lines.push(`  report         ${reportFile}`)
  for (const f of r.failures) lines.push(`  FAIL           ${f}`)
  return lines.join('\n')
}

/** `kin sim fleet`. */
export const simFleet: CommandSpec = {
  name: 'sim fleet',
  usage:
    'kin sim fleet --devices N [--depth D] [--fanout F] [--kill-broker] [--partition K] [--report FILE.html] [--keep DIR [--force]] [--json]',
  summary:
    "Run a fleet of N devices on L0's real services in this process: a tree under L0 (admins and members inside, devices and guests at the leaves), every device enrolled with a pairing code through the broker " +
    '(many at once), following the ledger over MQTT/TLS; optional faults; then convergence on one head, random access checks whose outcome the plan predicts, and the figures. ' +
    'Exit 0 only if every device converged, nothing submitted was lost, and every decision was as predicted.',
  options: {
    devices: { type: 'string', help: 'devices to enroll under L0 (required)' },
    depth: {
      type: 'string',
      help: 'deepest layer under L0 (default 3, or 2 when a depth-3 tree would have more full devices than memory holds)',
    },
    'seal-ms': {
      type: 'string',
      help: `longest wait before L0's miner seals a head (default ${SEAL_INTERVAL_MS}, or N/5 above ${SEAL_INTERVAL_MS * 5} devices: every full device syncs on every head)`,
    },
    tiers: {
      type: 'string',
      help: "mixed: locks, cameras, sensors and guests' phones run the bundle tier, admins' laptops and members' phones the full one; full: every device holds the whole ledger",
      default: 'mixed',
    },
    fanout: { type: 'string', help: 'children per parent (default: the smallest that fits N in the depth)' },
    concurrency: { type: 'string', help: 'enrollments in flight at once', default: '16' },
    checks: {
      type: 'string',
      help: "random access checks, decided in process on the targets' AccessSessions (10 of them also over mutual TLS)",
      default: '500',
    },
    'kill-broker': {
      type: 'boolean',
      help: 'restart L0 mid-run with revocations in flight: nothing accepted may be lost, everyone must converge',
    },
    partition: {
      type: 'string',
      help: "stop K devices' followers while revocations, the restart and half the enrollments happen, then let them catch up",
    },
    report: {
      type: 'string',
      help: 'write the run as one self-contained HTML page (tree, ledger timeline, decisions with paths, charts)',
    },
    keep: {
      type: 'string',
      help: 'write the device homes into DIR and keep them (default: a temporary directory, removed at the end)',
    },
    force: {
      type: 'boolean',
      help: "keep the homes in --keep DIR even when it holds files, replacing an earlier run's homes there (refused with STORAGE_EXISTS otherwise)",
    },
    'fresh-keys': {
      type: 'boolean',
      help: `make every TLS key for this run and keep none (default: a pool of simulator keys kept in ${DEFAULT_KEY_POOL_FILE})`,
    },
    key: { type: 'string', help: "the devices' TLS key type: p256 or rsa2048", default: 'p256' },
    seed: { type: 'string', help: 'seed of the random checks and fault choices', default: '1' },
  },
  async run(args) {
    const devices = count(args, 'devices', undefined, 1)
    if (devices === undefined)
      throw usageError("--devices is required: how many devices to enroll, e.g. 'kin sim fleet --devices 100'")
    const tiers = args.values.tiers ?? 'mixed'
    if (tiers !== 'mixed' && tiers !== 'full') throw usageError(`--tiers expects mixed or full, got "${String(tiers)}"`)
    const fanout = count(args, 'fanout', undefined, 1)
    const depth = count(args, 'depth', undefined, 1) ?? defaultDepth(devices, tiers, fanout)
    // A tree that cannot hold N is a usage error before anything starts.
    const plan = planFleet({ devices, depth, ...(fanout !== undefined ? { fanout } : {}), tiers })
    // Refused up front rather than after half an hour of enrollments ending in an out-of-memory abort.
    const memory = fitsInMemory(devices, plan.devices.filter(d => d.tier === 'full').length + 1)
    if (!memory.fits) throw new KinError('USAGE', memory.advice)
    const keep = typeof args.values.keep === 'string' ? resolve(args.values.keep) : undefined
    const reportFile = reportTarget(args.values.report)
    // Refused before anything is removed; the earlier run's homes go only once every check has passed.
    if (keep !== undefined) prepareKeepDir(keep, args.values.force === true, 'sim fleet')
    else if (args.values.force === true)
      throw usageError('--force applies to --keep DIR: give --keep, or leave out --force')
    const { root, note } = homesRoot()
    if (keep !== undefined) mkdirSync(keep, { recursive: true })
    const dir = keep ?? mkdtempSync(join(root, 'kin-sim-fleet-'))
    const homes = keep ?? note
    const out = args.json ? () => undefined : (line: string) => process.stdout.write(line + '\n')
    out(
      `kinship fleet — ${devices} devices; homes in ${homes}; enrollment through L0's broker with pairing codes; access decisions in process on each target's AccessSession (10 also over mutual TLS)`,
    )
    let result: FleetRunResult
    try {
      result = await runFleet({
        devices,
        depth,
        ...(fanout !== undefined ? { fanout } : {}),
        dir,
        concurrency: count(args, 'concurrency', 16, 1)!,
        checks: count(args, 'checks', 500, 0)!,
        killBroker: args.values['kill-broker'] === true,
        tiers,
        sealIntervalMs: count(args, 'seal-ms', defaultSealIntervalMs(devices), 1)!,
        partition: count(args, 'partition', 0, 0)!,
        keyPool: args.values['fresh-keys'] === true ? undefined : DEFAULT_KEY_POOL_FILE,
        keyType: parseTlsKeyType(String(args.values.key)),
        seed: count(args, 'seed', 1, 0)!,
        bars: progressBars(!args.json && process.stderr.isTTY === true),
        say: out,
        report: reportFile !== undefined,
      })
    } finally {
      if (keep === undefined) rmSync(dir, { recursive: true, force: true })
    }
    if (reportFile !== undefined && result.report !== undefined) writeReport(reportFile, result.report)
    const { checks, memorySamples, enrollCurve, report, ...figures } = result
    emit(
      args.json,
      {
        ...figures,
        dir: keep,
        report: reportFile,
        checksUnexpected: checks
          .filter(c => !c.ok)
          .map(c => ({
            peer: c.peer,
            target: c.target,
            action: c.action,
            code: c.decision.code,
            expected: c.expected,
            because: c.because,
            via: c.via,
          })),
      },
      () => summary(result, homes, reportFile),
    )
    return result.ok ? 0 : 1
  },
}
