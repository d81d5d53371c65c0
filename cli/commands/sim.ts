/** @module `kin sim house`: the fleet simulator's house story on L0's real services, each decision reported. */
import { prepareKeepDir, reportTarget } from '../../runtime/output-file.ts'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { playHouse, type StoryStep } from '../../sim/house/story.ts'
import { liveHouseDriver } from '../../sim/house/live-driver.ts'
import { houseReport, timedDriver } from '../../sim/report/house-report.ts'
import { writeReport } from '../../sim/report/html.ts'
import type { SimReport } from '../../sim/report/model.ts'
import { usageError, type CommandSpec } from '../args.ts'
import { emit } from '../output.ts'

/** `kin sim house`. */
export const simHouse: CommandSpec = {
  name: 'sim house',
  usage: 'kin sim house [--keep DIR [--force]] [--report FILE.html] [--json]',
  summary:
    "Play the house of the design on a live fleet: L0's broker, CA and miner on a free loopback port, every device enrolled with a pairing code over MQTT/TLS and following the ledger, every access checked over mutual TLS. " +
    'The story: the guest opens the lock, a camera may not configure it, the tablet is compromised and revoked, rekeyed, the holidays end. Exit 0 only if every expectation held.',
  options: {
    keep: {
      type: 'string',
      help: 'write the device homes into DIR and keep them (default: a temporary directory, removed at the end)',
    },
    force: {
      type: 'boolean',
      help: "keep the homes in --keep DIR even when it holds files, replacing an earlier run's homes there (refused with STORAGE_EXISTS otherwise)",
    },
    report: {
      type: 'string',
      help: 'write the run as one self-contained HTML page: the identity tree, the ledger timeline, each decision with its path (docs/SIMULATOR.md)',
    },
  },
  async run(args) {
    const started = performance.now()
    const keep = typeof args.values.keep === 'string' ? resolve(args.values.keep) : undefined
    const dir = keep ?? mkdtempSync(join(tmpdir(), 'kin-sim-house-'))
    const out = args.json ? () => undefined : (line: string) => process.stdout.write(line + '\n')
    const reportFile = reportTarget(args.values.report)
    // Refused before anything is removed; the earlier run's homes go only once every check has passed.
    if (keep !== undefined) prepareKeepDir(keep, args.values.force === true, 'sim house')
    else if (args.values.force === true)
      throw usageError('--force applies to --keep DIR: give --keep, or leave out --force')
    const startedAt = new Date().toISOString()
    const { driver, decisionMs } = timedDriver(await liveHouseDriver(dir))
    let steps: StoryStep[] = []
    let report: SimReport | undefined
    try {
      out(`kinship house demo — fleet ${driver.fleet.l0.fleet}, L0 ${driver.cnOf('L0')} on ${driver.fleet.url}`)
      steps = await playHouse(driver, out)
      // Read from the live fleet before it closes: L0's ledger and heads, the tree as it stands at the end.
      if (reportFile !== undefined)
        report = houseReport(driver.fleet, steps, {
          startedAt,
          seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
          decisionMs,
        })
    } finally {
      await driver.fleet.close()
      if (keep === undefined) rmSync(dir, { recursive: true, force: true })
    }
    if (report !== undefined) writeReport(reportFile!, report)
    const passed = steps.filter(s => s.ok).length
    const seconds = Number(((performance.now() - started) / 1000).toFixed(1))
    emit(
      args.json,
      {
        ok: passed === steps.length,
        passed,
        failed: steps.length - passed,
        seconds,
        homes: keep,
        report: reportFile,
        steps: steps.map(s => ({
          label: s.label,
          peer: s.peer,
          target: s.target,
          action: s.action,
          expect: s.expect,
          ok: s.ok,
          allow: s.decision?.allow,
          code: s.decision?.code,
          path: s.decision?.path,
        })),
      },
      () =>
        `\n${passed}/${steps.length} expectations held in ${seconds} s${passed === steps.length ? '' : ' — SOME FAILED'}${keep ? `; homes kept in ${keep}` : ''}${reportFile ? `; report in ${reportFile}` : ''}`,
    )
    return passed === steps.length ? 0 : 1
  },
}
