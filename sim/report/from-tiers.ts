/** @module Report parts of a mixed-tier fleet: each tier's count, memory and decision latency, side by side. */
import type { TiersFigures } from '../fleet/bundle-tier.ts'
import type { ReportSeries, SimReport } from './model.ts'

/** Headline figures per tier: devices, what one device holds, decision latency as a target. */
export function tierFigures(t: TiersFigures): SimReport['figures'] {
  return [
    { name: 'full-tier devices', value: t.full.devices, unit: '' },
    { name: 'bundle-tier devices', value: t.bundle.devices, unit: '' },
    { name: 'full device holds', value: t.full.bytesHeld, unit: 'bytes' },
    { name: 'bundle device holds', value: t.bundle.bytesHeld, unit: 'bytes' },
    { name: 'full device heap', value: t.full.heapKbPerDevice, unit: 'KB' },
    { name: 'bundle device heap', value: t.bundle.heapKbPerDevice, unit: 'KB' },
    { name: 'full-tier decision p50', value: t.full.decisions.p50Ms, unit: 'ms' },
    { name: 'bundle-tier decision p50', value: t.bundle.decisions.p50Ms, unit: 'ms' },
  ]
}

/** Decision latency of each tier's targets, p50 / p99 / max, as one bar chart. */
export function tierLatencyChart(t: TiersFigures): ReportSeries {
  const bars = (name: string, d: TiersFigures['full']['decisions']) => [
    { x: `${name} p50`, y: d.p50Ms || 0 },
    { x: `${name} p99`, y: d.p99Ms || 0 },
    { x: `${name} max`, y: d.maxMs || 0 },
  ]
  return {
    title: 'Access decision latency per tier of the target (in process)',
    unit: 'ms',
    points: [...bars('full', t.full.decisions), ...bars('bundle', t.bundle.decisions)],
  }
}

/** One sentence per tier for the report's notes. */
export function tierNotes(t: TiersFigures): string[] {
  const { full, bundle } = t
  return [
    `Full tier (L0 excluded): ${full.devices} devices (${full.standing} standing), each holding the whole ledger of ${full.eventsHeld} events (${full.bytesHeld} bytes, ~${full.heapKbPerDevice} KB of heap); ${full.decisions.count} decisions as target, p50 ${full.decisions.p50Ms} ms.`,
    `Bundle tier: ${bundle.devices} devices (${bundle.standing} standing), each holding its own lineage's bundle (${bundle.eventsHeld} events, ${bundle.bytesHeld} bytes, ~${bundle.heapKbPerDevice} KB of heap) got from L0 after enrollment (p50 ${bundle.bootP50Ms} ms) and refreshed with one bundle request (p50 ${bundle.refreshP50Ms} ms); ` +
      `every standing one holds head ${bundle.oldestHeight} or newer (L0's latest: ${bundle.latestHeight}); ${bundle.decisions.count} decisions as target on the bundles peers present, p50 ${bundle.decisions.p50Ms} ms, ${bundle.verifiedPerDecision} signatures checked and ${bundle.cachedPerDecision} found in the cache per decision (median).`,
  ]
}
