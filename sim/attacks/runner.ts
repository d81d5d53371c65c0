/** @module Runs the suite's cases one after another: times each, turns a case that throws into a failed row, keeps the decisions. */
import { KinError } from '../../agent/errors.ts'
import { isAccepted, type AttackOutcome, type AttackRow, type AttackSpec, type CaseDecision } from './types.ts'

/** Told of every row as soon as it is known. */
export type RowListener = (row: AttackRow) => void

/** A decision with the case it belonged to. */
export interface RecordedDecision extends CaseDecision {
  spec: AttackSpec
  ok: boolean
}

/** Collects the rows of one run. */
export class AttackRunner {
  readonly rows: AttackRow[] = []
  readonly decisions: RecordedDecision[] = []
  readonly #onRow: RowListener | undefined

  constructor(onRow?: RowListener) {
    this.#onRow = onRow
  }

  /**
   * Runs one case. A case that throws did not show what it meant to show, so its row fails: for an attack the error
   * is not counted as a refusal (nothing proves the fleet, rather than the harness, turned it away).
   */
  async run(spec: AttackSpec, attempt: () => Promise<AttackOutcome>): Promise<AttackRow> {
    const started = performance.now()
    let outcome: AttackOutcome
    let failed = false
    try {
      outcome = await attempt()
    } catch (err) {
      failed = true
      const code = err instanceof KinError ? err.code : 'INTERNAL'
      outcome = { actual: `ERROR ${code}`, detail: `the case could not run: ${(err as Error)?.message ?? String(err)}` }
    }
    const refused = failed ? spec.kind === 'control' : !isAccepted(outcome.actual)
    const ok = !failed && spec.expected.includes(outcome.actual)
    const row: AttackRow = {
      ...spec,
      actual: outcome.actual,
      detail: outcome.detail,
      refused,
      ok,
      ms: Math.round(performance.now() - started),
    }
    this.rows.push(row)
    if (outcome.decision !== undefined) this.decisions.push({ ...outcome.decision, spec, ok })
    this.#onRow?.(row)
    return row
  }
}

/** The outcome of an access decision: its code and reason, and the decision for the report. */
export function decided(
  peer: string,
  target: string,
  action: string,
  decision: CaseDecision['decision'],
): AttackOutcome {
  return { actual: decision.code, detail: decision.reason, decision: { peer, target, action, decision } }
}
