/** @module Fleet figures by size: `kin sim fleet` at 50/100/200/400 devices, each in its own process — wall time, CPU, enrollment rate, convergence, peak RSS, and how CPU grows with N. */
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { DEFAULT_KEY_POOL_FILE } from '../sim/fleet/key-pool.ts'
import { runFleet } from '../sim/fleet/run.ts'

/*
 * Sizes: KIN_BENCH_FLEET_SIZES (default 50,100,200,400). Sizes above KIN_BENCH_FLEET_MAX (default 100) are reported
 * skipped, so `npm run bench` stays within a few minutes; all of them:
 *   KIN_BENCH_FLEET_MAX=400 npm run bench fleet       (about 8–10 minutes on 2 cores)
 * Each size runs in a fresh process (peak RSS is that run's alone) with the simulator's key pool, so key generation
 * is not measured. The smallest size run is the baseline: per-device CPU is given as a ratio to it, and between
 * consecutive sizes the exponent k of CPU ∝ N^k.
 */
const SIZES = (process.env.KIN_BENCH_FLEET_SIZES ?? '50,100,200,400')
  .split(',')
  .map(Number)
  .filter(n => Number.isInteger(n) && n > 0)
const MAX = Number(process.env.KIN_BENCH_FLEET_MAX ?? 100)
/** A run that takes longer than this is stopped and reported as failed. */
const RUN_TIMEOUT_MS = 30 * 60_000

/** What one size's child process prints. */
interface FleetFigures {
  devices: number
  ok: boolean
  wallSeconds: number
  cpuSeconds: number
  userSeconds: number
  systemSeconds: number
  enrollPerSecond: number
  enrollSeconds: number
  convergenceMs: number
  events: number
  peakRssMb: number
  failures: string[]
}

/** Runs one fleet in this process and prints its figures as one JSON line. */
async function child(devices: number): Promise<void> {
  const root = process.platform === 'linux' && existsSync('/dev/shm') ? '/dev/shm' : tmpdir()
  const dir = mkdtempSync(join(root, 'kin-bench-fleet-'))
  const t0 = performance.now()
  try {
    const r = await runFleet({ devices, dir, keyPool: DEFAULT_KEY_POOL_FILE })
    const usage = process.resourceUsage()
    const figures: FleetFigures = {
      devices,
      ok: r.ok,
      wallSeconds: round((performance.now() - t0) / 1000, 1),
      cpuSeconds: round((usage.userCPUTime + usage.systemCPUTime) / 1e6, 1),
      userSeconds: round(usage.userCPUTime / 1e6, 1),
      systemSeconds: round(usage.systemCPUTime / 1e6, 1),
      enrollPerSecond: r.enrollment.perSecond,
      enrollSeconds: r.enrollment.seconds,
      convergenceMs: r.convergence.ms,
      events: r.convergence.events,
      // maxRSS is in KiB: the whole process's peak, key pool and L0 included.
      peakRssMb: round(usage.maxRSS / 1024, 1),
      failures: r.failures.slice(0, 3),
    }
    process.stdout.write(JSON.stringify(figures) + '\n')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

function round(x: number, digits = 2): number {
  const k = 10 ** digits
  return Math.round(x * k) / k
}

/** Runs `devices` in a child process; resolves with its figures, or an error line. */
function runChild(devices: number): Promise<FleetFigures | { error: string }> {
  return new Promise(resolve => {
    const p = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', String(devices)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = '',
      err = ''
    p.stdout.on('data', d => {
      out += String(d)
    })
    p.stderr.on('data', d => {
      err = (err + String(d)).slice(-2000)
    })
    const timer = setTimeout(() => p.kill('SIGTERM'), RUN_TIMEOUT_MS)
    p.on('close', code => {
      clearTimeout(timer)
      const line = out.trim().split('\n').pop() ?? ''
      try {
        resolve(JSON.parse(line) as FleetFigures)
      } catch {
        resolve({ error: `exit ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}` })
      }
    })
  })
}

export async function run(emit: (row: object) => void): Promise<void> {
  let baseline: FleetFigures | undefined
  let previous: FleetFigures | undefined
  for (const n of [...SIZES].sort((a, b) => a - b)) {
    if (n > MAX) {
      emit({
        bench: 'fleet',
        devices: n,
        skipped: `above KIN_BENCH_FLEET_MAX=${MAX}; run all with KIN_BENCH_FLEET_MAX=${Math.max(...SIZES)} npm run bench fleet`,
      })
      continue
    }
    const r = await runChild(n)
    if ('error' in r) {
      emit({ bench: 'fleet', devices: n, error: r.error })
      process.exitCode = 1
      continue
    }
    baseline ??= r
    const cpuPerDevice = r.cpuSeconds / n
    emit({
      bench: 'fleet',
      ...r,
      cpuMsPerDevice: round(cpuPerDevice * 1000, 1),
      ...(baseline === r
        ? { baseline: true }
        : { cpuPerDeviceRatioToBaseline: round(cpuPerDevice / (baseline.cpuSeconds / baseline.devices), 2) }),
      // CPU ∝ N^k between this size and the previous one: 1 is linear, 2 quadratic.
      ...(previous === undefined
        ? {}
        : {
            cpuExponentSincePrevious: round(
              Math.log(r.cpuSeconds / previous.cpuSeconds) / Math.log(n / previous.devices),
              2,
            ),
          }),
    })
    if (!r.ok) process.exitCode = 1
    previous = r
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const i = process.argv.indexOf('--child')
  if (i >= 0) await child(Number(process.argv[i + 1]))
  else await run(row => process.stdout.write(JSON.stringify(row) + '\n'))
}
