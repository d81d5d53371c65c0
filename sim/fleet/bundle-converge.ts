/** @module Convergence of a fleet's bundle tier: once the full devices hold L0's head, every standing bundle device refreshes to it. */
import type { LiveFleet } from '../live/fleet.ts'
import type { BundleTier } from './bundle-tier.ts'
import type { ProgressBar } from './progress.ts'
import { quantile, round } from './stats.ts'

/**
 * A bundle device follows nothing: it holds the head of its last bundle. After the last change, each standing one
 * asks L0 for its own bundle from the tree size it holds (one short session, one request; the miner adds the
 * consistency proof), so it ends on L0's latest head with its lineage's latest events. Resolves with the failures:
 * a refresh refused, or a standing bundle device left on a head older than L0's latest.
 */
export async function refreshBundleTier(
  fleet: LiveFleet,
  tier: BundleTier,
  concurrency: number,
  bars: (label: string, total: number) => ProgressBar,
  say: (line: string) => void,
): Promise<string[]> {
  if (tier.devices.size === 0) return []
  const labels = tier.standing().map(d => d.label)
  const bar = bars('bundle heads', labels.length)
  const t0 = performance.now()
  const failures = await tier.refresh(labels, concurrency, done => bar.update(done))
  bar.done()
  const latest = fleet.l0.miner.miner.latestHead()?.height ?? 0
  const behind = labels.filter(l => (tier.devices.get(l)!.head?.height ?? -1) < latest)
  if (behind.length > 0)
    failures.push(
      `${behind.length} bundle-tier devices (${behind.slice(0, 5).join(', ')}…) hold a head older than L0's latest (${latest})`,
    )
  say(
    `bundle tier: ${labels.length} standing devices refreshed to head ${latest} in ${round((performance.now() - t0) / 1000, 1)} s (one bundle request each, p50 ${round(quantile(tier.refreshMs, 0.5), 1)} ms), ${behind.length} behind`,
  )
  return failures.slice(0, 10)
}
