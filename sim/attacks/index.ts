/** @module The attack suite: builds the live house, runs every family of attacks and controls in order, tallies, reports. */
import type { SimReport } from '../report/model.ts'
import type { FleetLog } from '../live/fleet.ts'
import { bundleAttacks } from './bundle.ts'
import { challengeAttacks } from './challenge.ts'
import { startAttackHouse, type AttackContext, type AttackHouseDevice } from './house.ts'
import { identityAttacks } from './identity.ts'
import { ledgerAttacks } from './ledger.ts'
import { lifecycleAttacks } from './lifecycle.ts'
import { minerAttacks } from './miner.ts'
import { attackReport } from './report.ts'
import { AttackRunner, type RowListener } from './runner.ts'
import { tally, type AttackFamily, type AttackRow, type AttackTally } from './types.ts'

export { ATTACK_HOUSE } from './house.ts'
export { isAccepted, isError, tally, type AttackFamily, type AttackRow, type AttackTally } from './types.ts'

/** Options of `runAttacks`. */
export interface AttackSuiteOptions {
  /** Where the device homes go (the caller removes or keeps it). */
  dir: string
  /** Told of every row as soon as it is known. */
  onRow?: RowListener
  /** Told after each enrollment of the house. */
  onEnrolled?: (device: AttackHouseDevice, cn: string) => void
  /** The fleet's log records. */
  log?: FleetLog
  /** Shown in the report's header (default 'kin sim attacks'). */
  command?: string
}

/** What a run found. */
export interface AttackSuiteResult {
  rows: AttackRow[]
  tally: AttackTally
  report: SimReport
  /** Seconds to enroll the house. */
  enrollSeconds: number
  seconds: number
  /** The fleet's domain and L0's CN. */
  fleet: string
  l0: string
}

/**
 * Runs the whole suite on a fresh live fleet in `dir` and closes it. Families run in this order because the later
 * ones change the fleet for good: identity (its last case records a certificate), challenge, bundle, ledger files,
 * forking miner, then the fleet's life (policy, revocation, the clock past a guest's stay).
 */
export async function runAttacks(options: AttackSuiteOptions): Promise<AttackSuiteResult> {
  const startedAt = new Date()
  const started = performance.now()
  const ctx: AttackContext = await startAttackHouse({
    dir: options.dir,
    log: options.log,
    onEnrolled: options.onEnrolled,
  })
  const enrollSeconds = (performance.now() - started) / 1000
  const runner = new AttackRunner(options.onRow)
  let flipCodes = new Map<string, number>()
  const families: Array<[AttackFamily, (ctx: AttackContext, run: AttackRunner) => Promise<unknown>]> = [
    ['identity', identityAttacks],
    ['challenge', challengeAttacks],
    [
      'bundle',
      async (c, r) => {
        flipCodes = (await bundleAttacks(c, r)).flipCodes
      },
    ],
    ['ledger', ledgerAttacks],
    ['miner', minerAttacks],
    ['lifecycle', lifecycleAttacks],
  ]
  try {
    for (const [family, attacks] of families) {
      try {
        await attacks(ctx, runner)
      } catch (err) {
        // A family whose setup failed leaves a failed row, so the run cannot pass; the later families still run.
        await runner.run(
          { id: `${family}-setup`, family, kind: 'attack', attack: `setting up the ${family} cases`, expected: [] },
          () => Promise.reject(err),
        )
      }
    }
    const seconds = Number(((performance.now() - started) / 1000).toFixed(1))
    const report = attackReport({
      ctx,
      rows: runner.rows,
      decisions: runner.decisions,
      flipCodes,
      startedAt,
      seconds,
      command: options.command ?? 'kin sim attacks',
    })
    return {
      rows: runner.rows,
      tally: tally(runner.rows),
      report,
      enrollSeconds: Number(enrollSeconds.toFixed(1)),
      seconds,
      fleet: ctx.fleet.l0.fleet,
      l0: ctx.fleet.l0.cn,
    }
  } finally {
    await ctx.fleet.close()
  }
}
