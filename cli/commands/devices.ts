/** @module `kin devices`: the fleet as a tree from the home's ledger — names, roles, kinds, expiry and revocations. */
import type { LedgerState } from '../../agent/ledger/state.ts'
import { requireString, type CommandSpec } from '../args.ts'
import { emit, isoTime } from '../output.ts'
import { openHomeView, revocationJson, revocationText, shown, standingJson } from '../home-view.ts'

/** One identity of the tree, in depth-first order of authorization. */
export interface DeviceRow {
  cn: string
  label: string
  name: string
  role: string
  kind: string
  depth: number
  parent: string | null
  notAfter: number
  certificates: number
  revocations: Array<Record<string, unknown>>
  standing: Record<string, unknown>
  self: boolean
}

/** The identities of `state` from L0 down, each child after its parent in the order it was authorized. */
export function fleetTree(state: LedgerState, selfCn: string, now: number): DeviceRow[] {
  const rows: DeviceRow[] = []
  const root = state.genesis?.cn
  if (root === undefined) return rows
  const seen = new Set<string>()
  const stack: Array<{ cn: string; depth: number }> = [{ cn: root, depth: 0 }]
  while (stack.length > 0) {
    const { cn, depth } = stack.pop()!
    const b = state.currentBinding(cn)
    if (b === undefined || seen.has(cn)) continue
    seen.add(cn)
    rows.push({
      cn,
      label: b.label,
      name: b.name,
      role: b.role,
      kind: b.kind,
      depth,
      parent: b.parentCn ?? null,
      notAfter: b.notAfter,
      certificates: b.certHashes.length,
      revocations: state.effectiveRevocations(b).map(r => revocationJson(state, r)),
      standing: standingJson(state, state.invalidAt(b, now)),
      self: cn === selfCn,
    })
    const children = state.children(cn)
    for (let i = children.length - 1; i >= 0; i--) stack.push({ cn: children[i]!, depth: depth + 1 })
  }
  return rows
}

function rowText(state: LedgerState, row: DeviceRow, now: number): string {
  const b = state.currentBinding(row.cn)!
  const marks: string[] = []
  const own = state.effectiveRevocation(b)
  if (own !== undefined) marks.push(`REVOKED: ${revocationText(state, own)}`)
  else if (row.standing.valid !== true) marks.push(`NOT VALID (${String(row.standing.code)})`)
  else if (row.notAfter <= now) marks.push('EXPIRED')
  const expiry = row.depth === 0 ? '' : ` until ${isoTime(row.notAfter)}`
  return `${'  '.repeat(row.depth)}"${shown(row.name)}" ${row.role} ${shown(row.kind)}${expiry}  ${row.cn}${row.self ? '  (this device)' : ''}${marks.length > 0 ? `  — ${marks.join('; ')}` : ''}`
}

/** `kin devices`. */
export const devices: CommandSpec = {
  name: 'devices',
  usage: 'kin devices --home DIR [--json]',
  summary:
    "The fleet as a tree, with names and revocations. Reads this home's ledger: every identity under the one that authorized it, with its friendly name, " +
    'role, kind, expiry and revocations (reason and effective time; an identity under a revoked ancestor is marked too). Times are ISO 8601 ' +
    '(seconds since the epoch with --json). Run kin sync first for the newest picture.',
  options: {
    home: { type: 'string', help: 'the home whose ledger to read' },
  },
  async run(args) {
    const dir = requireString(args, 'home', 'the home whose ledger to read, e.g. --home ./phone')
    const { config, state } = await openHomeView(dir)
    const now = Math.floor(Date.now() / 1000)
    const rows = fleetTree(state, config.cn, now)
    const revoked = rows.filter(r => r.standing.valid !== true).length
    emit(args.json, { fleet: config.fleet, self: config.cn, devices: rows }, () =>
      [
        ...rows.map(r => rowText(state, r, now)),
        `${rows.length} identities in fleet ${config.fleet}${revoked > 0 ? `, ${revoked} not valid` : ''}`,
      ].join('\n'),
    )
    return 0
  },
}
