/** @module `kin report`: the simulator's HTML report drawn from a real home — its fleet tree, ledger timeline, heads and audited decisions. */
import { readFileSync, existsSync } from 'node:fs'
import { resolve } from 'node:path'
import type { AuditRecord } from '../../agent/access/audit.ts'
import { homeReport } from '../../sim/report/from-ledger.ts'
import { writeReport } from '../../sim/report/html.ts'
import { Home } from '../../runtime/home.ts'
import { requireString, type CommandSpec } from '../args.ts'
import { emit } from '../output.ts'
import { refuseExistingFile, reportTarget } from '../../runtime/output-file.ts'
import { readHomeLog } from '../home-view.ts'

/** Most audit records a report reads (the newest ones): the page stays a page on a lock that decided for years. */
export const MAX_REPORT_DECISIONS = 2000
/** Most bytes of audit.log a report reads: its tail, where the newest records are. */
const MAX_AUDIT_BYTES = 4 * 2 ** 20

/** The decision records of an audit.log (its summary lines and anything not a decision are skipped), oldest first. */
export function readAuditRecords(path: string, max: number = MAX_REPORT_DECISIONS): AuditRecord[] {
  if (!existsSync(path)) return []
  let text = readFileSync(path, 'utf8')
  if (text.length > MAX_AUDIT_BYTES) text = text.slice(text.indexOf('\n', text.length - MAX_AUDIT_BYTES) + 1)
  const records: AuditRecord[] = []
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    let r: unknown
    try {
      r = JSON.parse(line)
    } catch {
      continue
    }
    const o = r as Record<string, unknown>
    if (
      typeof o.time !== 'number' ||
      typeof o.action !== 'string' ||
      typeof o.allow !== 'boolean' ||
      typeof o.code !== 'string' ||
      !Array.isArray(o.path)
    )
      continue
    records.push({
      time: o.time,
      peer: typeof o.peer === 'string' ? o.peer : undefined,
      action: o.action,
      allow: o.allow,
      code: o.code,
      path: o.path.filter((p): p is string => typeof p === 'string'),
    })
  }
  return records.slice(-max)
}

/** `kin report`. */
export const report: CommandSpec = {
  name: 'report',
  usage: 'kin report --home DIR --out FILE.html [--force] [--json]',
  summary:
    "Draw this home's fleet as an HTML page: the identity tree with names, roles and revocations, the ledger as a timeline with " +
    'its signed heads, and the access decisions its audit log recorded, each with its path through the tree — the same page kin sim draws. ' +
    'Reads the home without taking it over (a running kin serve or kin broker keeps it); run kin sync first for the newest picture. ' +
    'FILE is replaced only with --force (STORAGE_EXISTS otherwise).',
  options: {
    home: { type: 'string', help: 'the home whose ledger and audit log to draw' },
    out: { type: 'string', help: 'the HTML file to write' },
    force: { type: 'boolean', help: 'replace FILE when it exists' },
  },
  async run(args) {
    const dir = requireString(args, 'home', 'the home to draw, e.g. --home ./phone')
    const out = reportTarget(requireString(args, 'out', 'the HTML file to write, e.g. --out fleet.html'))!
    refuseExistingFile(out, args.values.force === true, '--out FILE')
    const home = new Home(dir)
    const config = home.readConfig()
    const now = Math.floor(Date.now() / 1000)
    const built = await readHomeLog(home, config, log =>
      homeReport({
        fleet: config.fleet,
        selfCn: config.cn,
        state: log.state,
        heads: log.heads(),
        audit: readAuditRecords(home.path('audit')),
        now,
        command: `kin report --home ${dir} --out ${args.values.out as string}`,
      }),
    )
    writeReport(out, built)
    emit(
      args.json,
      {
        out: resolve(out),
        devices: built.devices.length,
        events: built.events.length,
        heads: built.heads.length,
        decisions: built.decisions.length,
      },
      () =>
        `wrote ${out}: ${built.devices.length} identities, ${built.events.length} events, ${built.heads.length} heads, ${built.decisions.length} decisions`,
    )
    return 0
  },
}
