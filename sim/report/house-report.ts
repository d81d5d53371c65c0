/** @module The SimReport of a `kin sim house` run: the house's tree, L0's ledger and heads, every story step with its path. */
import type { LiveFleet } from '../live/fleet.ts'
import { HOUSE, type HouseDriver, type StoryStep } from '../house/story.ts'
import { reportDecision, reportDevices, reportEvents, reportHeads } from './from-fleet.ts'
import type { ReportSeries, SimReport } from './model.ts'

/** A driver that times each access decision (ms, in story order), as the peer sees it over mutual TLS. */
export function timedDriver<D extends HouseDriver>(driver: D): { driver: D; decisionMs: number[] } {
  const decisionMs: number[] = []
  const decide: HouseDriver['decide'] = async (peer, target, action) => {
    const t0 = performance.now()
    try {
      return await driver.decide(peer, target, action)
    } finally {
      decisionMs.push(performance.now() - t0)
    }
  }
  return { driver: { ...driver, decide }, decisionMs }
}

/** Reads the report from the house's live fleet (call it before the fleet closes). */
export function houseReport(
  fleet: LiveFleet,
  steps: readonly StoryStep[],
  run: { startedAt: string; seconds: number; decisionMs?: readonly number[]; command?: string },
): SimReport {
  const kinds = new Map<string, string>([['L0', 'pc'], ...HOUSE.map(h => [h.label, h.kind] as [string, string])])
  const events = reportEvents(fleet)
  const heads = reportHeads(fleet)
  const bytesByType = new Map<string, number>()
  for (const e of events) bytesByType.set(e.type, (bytesByType.get(e.type) ?? 0) + e.bytes)
  const adopted = new Map<string, number>()
  for (const h of fleet.heads) adopted.set(h.label, (adopted.get(h.label) ?? 0) + 1)
  const passed = steps.filter(s => s.ok).length
  const ledgerBytes = events.reduce((s, e) => s + e.bytes, 0)
  // One enrolled device costs one authorize and one certified event: the mean of each (L0's own certified event
  // and those after a rekey are certified events too, so counting certified events would undercount).
  const mean = (type: string): number => {
    const of = events.filter(e => e.type === type)
    return of.length === 0 ? 0 : of.reduce((s, e) => s + e.bytes, 0) / of.length
  }
  const enrolled = events.filter(e => e.type === 'authorize').length
  const enrollBytes = enrolled * (mean('authorize') + mean('certified'))
  const charts: ReportSeries[] = [
    { title: "L0's ledger: bytes by event type", unit: 'bytes', points: [...bytesByType].map(([x, y]) => ({ x, y })) },
    {
      title: 'Heads each device adopted while following the ledger',
      unit: 'heads',
      points: [...adopted].map(([x, y]) => ({ x, y })),
    },
  ]
  if (run.decisionMs !== undefined && run.decisionMs.length === steps.length) {
    charts.unshift({
      title: 'Each access check over mutual TLS (story order)',
      unit: 'ms',
      points: steps.map((s, i) => ({
        x: `${i + 1}. ${s.peer}→${s.target}`,
        y: Math.round(run.decisionMs![i]! * 10) / 10,
      })),
    })
  }
  const figures: SimReport['figures'] = [
    { name: 'expectations held', value: `${passed}/${steps.length}`, unit: '' },
    { name: 'identities', value: fleet.devices.size, unit: '' },
    { name: 'ledger events', value: events.length, unit: '' },
    { name: 'ledger', value: ledgerBytes, unit: 'bytes' },
    {
      name: 'authorize + certified per device',
      value: enrolled > 0 ? Math.round(enrollBytes / enrolled) : 0,
      unit: 'bytes',
    },
    { name: 'signed heads', value: heads.length, unit: '' },
  ]
  if (run.decisionMs !== undefined && run.decisionMs.length > 0) {
    const sorted = [...run.decisionMs].sort((a, b) => a - b)
    figures.push({
      name: 'access check (median, mutual TLS)',
      value: Math.round(sorted[sorted.length >> 1]! * 10) / 10,
      unit: 'ms',
    })
  }
  return {
    title: 'kinship — the house',
    command: run.command ?? 'kin sim house',
    startedAt: run.startedAt,
    seconds: run.seconds,
    ok: passed === steps.length,
    devices: reportDevices(fleet, kinds),
    events,
    heads,
    decisions: steps
      .filter(s => s.decision !== undefined)
      .map(s =>
        reportDecision(fleet, {
          label: s.label,
          peer: s.peer,
          target: s.target,
          action: s.action,
          decision: s.decision!,
          expected: s.expect,
          ...(s.ok !== undefined ? { ok: s.ok } : {}),
        }),
      ),
    attacks: [],
    figures,
    charts,
    notes: [
      "Every device was enrolled with a pairing code through L0's broker (MQTT over TLS), certified by L0's CA, and follows L0's ledger; every access check ran over mutual TLS.",
      'The story: the guest opens the front door, a camera may not configure the lock, the tablet is compromised and revoked with its subtree, rekeyed, the guest re-admitted, then the holidays end.',
      'The tree shows the identities as they stand at the end: the tablet was rekeyed, so it is no longer revoked; the guest has expired, which is not a revocation.',
    ],
  }
}
