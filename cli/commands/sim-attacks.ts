/** @module `kin sim attacks`: every attack against a live fleet, the refusal expected and the code seen, one row each. */
import { prepareKeepDir, reportTarget } from '../../runtime/output-file.ts'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { runAttacks, type AttackRow, type AttackSuiteResult } from '../../sim/attacks/index.ts'
import { writeReport } from '../../sim/report/html.ts'
import { usageError, type CommandSpec } from '../args.ts'
import { emit } from '../output.ts'

const ATTACK_WIDTH = 78
const EXPECTED_WIDTH = 34

function cell(text: string, width: number): string {
  return text.length > width ? text.slice(0, width - 1) + '…' : text.padEnd(width)
}

/** One table line: verdict, kind, what was tried, the expected codes, the code seen. */
export function attackLine(row: AttackRow): string {
  const verdict = row.ok ? 'ok  ' : 'FAIL'
  return `${verdict} ${row.kind.padEnd(7)} ${cell(row.attack, ATTACK_WIDTH)} ${cell(row.expected.join(' / '), EXPECTED_WIDTH)} ${row.actual}`
}

function summary(result: AttackSuiteResult, keep: string | undefined, report: string | undefined): string {
  const t = result.tally
  const lines = [
    '',
    `${t.attacks} attacks, ${t.controls} controls: ${t.falseAccepts} false accepts, ${t.falseRejects} false rejects, ${t.wrongCodes} unexpected codes` +
      `${t.errors > 0 ? `, ${t.errors} cases that could not run` : ''} — ${t.ok ? 'every attack refused as expected, every control allowed' : 'SOME FAILED'} (${result.seconds} s, house enrolled in ${result.enrollSeconds} s)`,
  ]
  for (const r of result.rows.filter(r => !r.ok))
    lines.push(
      `  FAIL ${r.id}: expected ${r.expected.join(' / ') || '(nothing: the case failed)'}, saw ${r.actual}: ${r.detail}`,
    )
  if (report !== undefined) lines.push(`report written to ${report}`)
  if (keep !== undefined) lines.push(`homes kept in ${keep}`)
  return lines.join('\n')
}

/** `kin sim attacks`. */
export const simAttacks: CommandSpec = {
  name: 'sim attacks',
  usage: 'kin sim attacks [--report FILE.html] [--keep DIR [--force]] [--json]',
  summary:
    "Run every attack against a live fleet and print what was tried, the refusal expected and the code seen. L0's broker, CA and miner run on a free loopback port, the house is enrolled with pairing codes over MQTT/TLS. " +
    "Attacks: Eve's CA, a rogue root copying the fleet root's name and key identifier (at the lock and as a login to L0's broker), a mis-issued certificate, a certificate with the retired DNS parent marker, a stolen certificate without its key, a lying SAN parent, a fake lock, a half-open socket flood, replayed, late, relayed and forged challenge answers, asks in another device's name and an RSA key with a huge exponent over the device inbox, forged and forked proof bundles, tampered ledger files, a forking miner, a guest spamming the miner (unissued certificates, policy on itself, a flood, bundle requests), a narrowing policy, a revoked ancestor, an expired guest; with controls that must be allowed. " +
    'Exit 0 only if every attack was refused with an expected code and every control allowed.',
  options: {
    report: { type: 'string', help: 'also write the run as a self-contained HTML report to FILE' },
    keep: {
      type: 'string',
      help: 'write the device homes into DIR and keep them (default: a temporary directory, removed at the end)',
    },
    force: {
      type: 'boolean',
      help: "keep the homes in --keep DIR even when it holds files, replacing an earlier run's homes there (refused with STORAGE_EXISTS otherwise)",
    },
  },
  async run(args) {
    const keep = typeof args.values.keep === 'string' ? resolve(args.values.keep) : undefined
    const reportFile = reportTarget(args.values.report)
    // Refused before anything is removed; the earlier run's homes go only once every check has passed.
    if (keep !== undefined) prepareKeepDir(keep, args.values.force === true, 'sim attacks')
    else if (args.values.force === true)
      throw usageError('--force applies to --keep DIR: give --keep, or leave out --force')
    const dir = keep ?? mkdtempSync(join(tmpdir(), 'kin-sim-attacks-'))
    const out = args.json ? () => undefined : (line: string) => process.stdout.write(line + '\n')
    let result: AttackSuiteResult
    let rows = 0
    try {
      out('kinship attack suite — enrolling the house on a live fleet')
      result = await runAttacks({
        dir,
        onEnrolled: (d, cn) =>
          out(
            `  enrolled ${d.label.padEnd(4)} ${d.name.padEnd(18)} ${d.role.padEnd(6)} under ${d.parent.padEnd(4)} ${cn}`,
          ),
        onRow: row => {
          if (rows++ === 0)
            out(
              `\n${'    '} ${'kind'.padEnd(7)} ${cell('what is tried', ATTACK_WIDTH)} ${cell('expected', EXPECTED_WIDTH)} seen`,
            )
          out(attackLine(row))
        },
      })
    } finally {
      if (keep === undefined) rmSync(dir, { recursive: true, force: true })
    }
    if (reportFile !== undefined) writeReport(reportFile, result.report)
    emit(
      args.json,
      {
        ...result.tally,
        seconds: result.seconds,
        enrollSeconds: result.enrollSeconds,
        fleet: result.fleet,
        l0: result.l0,
        homes: keep,
        report: reportFile,
        rows: result.rows.map(r => ({
          id: r.id,
          family: r.family,
          kind: r.kind,
          attack: r.attack,
          expected: r.expected,
          actual: r.actual,
          refused: r.refused,
          ok: r.ok,
          detail: r.detail,
          ms: r.ms,
        })),
      },
      () => summary(result, keep, reportFile),
    )
    return result.tally.ok ? 0 : 1
  },
}
