/** @module Figures of a fleet run: percentiles, and process memory sampled while the run goes. */

/** The q-quantile (0..1) of `values` by the nearest-rank method; NaN when empty. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)))
  return sorted[rank - 1]!
}

/** Rounded to `digits` decimals. */
export function round(value: number, digits = 1): number {
  const k = 10 ** digits
  return Math.round(value * k) / k
}

/** One memory sample, MB. */
export interface MemorySample {
  seconds: number
  rssMb: number
  heapMb: number
}

/** Samples process memory every `everyMs` until stopped; `peak` is the largest rss seen. */
export function sampleMemory(everyMs = 500): {
  samples: MemorySample[]
  stop(): MemorySample[]
  peakRssMb(): number
  peakHeapMb(): number
} {
  const started = performance.now()
  const samples: MemorySample[] = []
  const take = () => {
    const m = process.memoryUsage()
    samples.push({
      seconds: round((performance.now() - started) / 1000, 2),
      rssMb: round(m.rss / 2 ** 20),
      heapMb: round(m.heapUsed / 2 ** 20),
    })
  }
  take()
  const timer = setInterval(take, everyMs)
  timer.unref()
  return {
    samples,
    stop() {
      clearInterval(timer)
      take()
      return samples
    },
    peakRssMb: () => Math.max(...samples.map(s => s.rssMb)),
    peakHeapMb: () => Math.max(...samples.map(s => s.heapMb)),
  }
}
