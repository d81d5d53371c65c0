/** @module The SimReport of a fleet run: the tree, L0's ledger, a sample of decisions with their paths, and the figures as charts. */
import { reportDecision, reportDevices, reportEvents, reportHeads } from '../report/from-fleet.ts'
import type { ReportSeries, SimReport } from '../report/model.ts'
import type { LiveFleet } from '../live/fleet.ts'
import type { FleetRunOptions, FleetRunResult } from './run-types.ts'
import { quantile, round } from './stats.ts'
import { tierFigures, tierLatencyChart, tierNotes } from '../report/from-tiers.ts'

/** Decisions shown with their path: every unexpected one, then a sample of the rest. */
export const REPORT_DECISIONS = 60

/** The report of a finished run, read from the fleet before it closes. */
export function fleetReport(
  fleet: LiveFleet,
  kinds: ReadonlyMap<string, string>,
  r: FleetRunResult,
  o: FleetRunOptions,
): SimReport {
  const shown = [
    ...r.checks.filter(c => !c.ok),
    ...r.checks.filter(c => c.ok && c.decision.allow).slice(0, REPORT_DECISIONS / 2),
    ...r.checks.filter(c => c.ok && !c.decision.allow).slice(0, REPORT_DECISIONS / 2),
  ]
  const lat = r.checks.filter(c => c.via === 'session').map(c => c.ms)
  const ph = r.enrollment.phases
  const charts: ReportSeries[] = [
    {
      title: 'Devices enrolled over time (x: seconds of enrollment)',
      unit: 'devices',
      points: thin(
        r.enrollCurve.map(p => ({ x: p.seconds, y: p.enrolled })),
        200,
      ),
    },
    {
      title: 'Where an enrollment spends its time (median)',
      unit: 'ms',
      points: [
        { x: 'queued', y: ph.queuedMs },
        { x: 'invite', y: ph.inviteMs },
        { x: 'pairing', y: ph.pairingMs },
        { x: 'home', y: ph.homeMs },
        { x: 'submit', y: ph.submitMs },
        { x: 'follow', y: ph.followMs },
      ],
    },
    {
      title: 'Access decision latency (in process)',
      unit: 'ms',
      points: [
        { x: 'p50', y: round(quantile(lat, 0.5), 3) },
        { x: 'p90', y: round(quantile(lat, 0.9), 3) },
        { x: 'p99', y: round(quantile(lat, 0.99), 3) },
        { x: 'max', y: round(Math.max(0, ...lat), 3) },
      ],
    },
    ...(r.tiers ? [tierLatencyChart(r.tiers)] : []),
    {
      title: 'Process memory, rss (x: seconds of the run)',
      unit: 'MB',
      points: thin(
        r.memorySamples.map(s => ({ x: s.seconds, y: s.rssMb })),
        200,
      ),
    },
    {
      title: 'Process memory, JS heap (x: seconds of the run)',
      unit: 'MB',
      points: thin(
        r.memorySamples.map(s => ({ x: s.seconds, y: s.heapMb })),
        200,
      ),
    },
  ]
  const flags = [o.killBroker ? '--kill-broker' : '', o.partition ? `--partition ${o.partition}` : '']
    .filter(Boolean)
    .join(' ')
  const notes = [
    `Devices enrolled through L0's broker with pairing codes (openInvite, completeInvite, enrollThroughBroker), ${r.enrollment.concurrency} at once; RSA keys from a pool (${r.keys.fromDisk} from disk, ${r.keys.made} made for this run), so key generation is not in the enrollment rate.`,
    `Access decisions: ${r.decisions.via}; ${r.decisions.tls.count} of them also over mutual TLS (p50 ${r.decisions.tls.p50Ms} ms)` +
      (r.decisions.tls.refusedByRequester > 0
        ? `; ${r.decisions.tls.refusedByRequester} of those never reached the target: the requester's own server identity check refused it (a revoked requester no longer follows the ledger, so its replica lacks devices enrolled after it fell).`
        : '.'),
    ...(r.brokerRestart
      ? [
          `L0 restarted mid-run in ${r.brokerRestart.restartMs} ms with ${r.brokerRestart.inFlight} revocations in flight; ${r.lost} submitted events lost.`,
        ]
      : []),
    ...(r.partition
      ? [
          `${r.partition.devices} devices were cut off for ${r.partition.seconds} s, missed ${r.partition.eventsMissed} events and caught up in ${r.partition.catchUpMs} ms.`,
        ]
      : []),
    ...(r.tiers ? tierNotes(r.tiers) : []),
    ...r.failures,
  ]
  return {
    title: `kinship fleet — ${r.plan.devices} devices`,
    command: `kin sim fleet --devices ${r.plan.devices} --depth ${r.plan.depth} --fanout ${r.plan.fanout}${flags ? ' ' + flags : ''}`,
    startedAt: new Date(Date.now() - r.seconds * 1000).toISOString(),
    seconds: r.seconds,
    ok: r.ok,
    devices: reportDevices(fleet, kinds),
    events: reportEvents(fleet),
    heads: reportHeads(fleet),
    decisions: shown.map(c =>
      reportDecision(fleet, {
        label: `${c.peer} → ${c.target} ${c.action} (${c.because}, ${c.via}${c.decidedBy === 'requester' ? ", refused by the requester's own server check" : ''})`,
        peer: c.peer,
        target: c.target,
        action: c.action,
        decision: c.decision,
        expected: c.expected,
        ok: c.ok,
      }),
    ),
    attacks: [],
    figures: [
      { name: 'devices', value: r.plan.devices, unit: '' },
      { name: 'enrollment rate', value: r.enrollment.perSecond, unit: '/s' },
      { name: 'convergence', value: r.convergence.ms, unit: 'ms' },
      { name: 'decision p50', value: r.decisions.p50Ms, unit: 'ms' },
      { name: 'decision p99', value: r.decisions.p99Ms, unit: 'ms' },
      { name: 'ledger', value: r.ledger.eventBytes, unit: 'bytes' },
      { name: 'ledger per device', value: r.ledger.bytesPerDevice, unit: 'bytes' },
      { name: 'peak rss', value: r.memory.peakRssMb, unit: 'MB' },
      { name: 'peak heap', value: r.memory.peakHeapMb, unit: 'MB' },
      { name: 'events lost', value: r.lost, unit: '' },
      ...(r.tiers ? tierFigures(r.tiers) : []),
    ],
    charts,
    notes,
  }
}

/** At most `max` points, evenly picked, the last kept. */
function thin<T>(points: T[], max: number): T[] {
  if (points.length <= max) return points
  const step = points.length / max
  const out = Array.from({ length: max - 1 }, (_, i) => points[Math.floor(i * step)]!)
  out.push(points[points.length - 1]!)
  return out
}
