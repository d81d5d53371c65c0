/**
 * @module Report parts read from one real home instead of a simulated fleet: the identity tree and the timeline from
 * its verified ledger, the heads it holds, and the decisions its audit log recorded. `kin report` draws these.
 */
import type { AuditRecord } from '../../agent/access/audit.ts'
import type { BlockHead } from '../../agent/ledger/head.ts'
import type { LedgerState } from '../../agent/ledger/state.ts'
import type { ReportDecision, ReportDevice, ReportEvent, ReportHead, SimReport } from './model.ts'

/** What a home holds that a report shows; the command that reads the home fills it in. */
export interface HomeReportInput {
  fleet: string
  /** The CN of the home's own device (its node is marked in the tree and ends every decision path). */
  selfCn: string
  state: LedgerState
  /** The heads the home holds, oldest first: every head the miner signed on L0, the latest verified one on a device. */
  heads: readonly BlockHead[]
  /** The home's audit records, oldest first. */
  audit: readonly AuditRecord[]
  now: number
  command: string
}

/** Every identity of the ledger with its parent's CN, revoked when it or an ancestor is revoked at `now`. */
export function ledgerDevices(state: LedgerState, now: number): ReportDevice[] {
  const devices: ReportDevice[] = []
  for (const cn of state.bindingsByCn.keys()) {
    const b = state.currentBinding(cn)
    if (b === undefined) continue
    const invalid = state.invalidAt(b, now)
    devices.push({
      label: b.label,
      cn,
      parent: b.parentCn !== undefined ? (state.currentBinding(b.parentCn)?.label ?? b.parentCn) : '',
      role: b.role,
      kind: b.kind,
      name: b.name,
      revoked: invalid?.code === 'REVOKED' || invalid?.code === 'ANCESTOR_REVOKED',
    })
  }
  return devices
}

/** The ledger in log order; subject and issuer as the labels of their CNs. */
export function ledgerEvents(state: LedgerState): ReportEvent[] {
  const label = (l: Uint8Array): string => state.currentBinding(state.cnOfLabel(l))?.label ?? state.cnOfLabel(l)
  return state.log.map((e, index) => ({
    index,
    type: e.event.type,
    subject: label(e.event.subject),
    issuer: label(e.event.issuer),
    time: e.event.time,
    id: e.idHex,
    bytes: e.bytes.length,
  }))
}

/** An audit record as a decision card: the path's CNs as the tree's labels (a CN the ledger does not know stays a CN). */
export function auditDecision(state: LedgerState, r: AuditRecord): ReportDecision {
  const label = (cn: string): string => state.currentBinding(cn)?.label ?? cn
  return {
    label: `${r.peer ?? 'unnamed peer'} → ${r.action} at ${new Date(r.time * 1000).toISOString().replace('.000Z', 'Z')}`,
    peer: r.peer !== undefined ? label(r.peer) : '',
    target: '',
    action: r.action,
    allow: r.allow,
    code: r.code,
    path: r.path.map(label),
  }
}

/** The whole report of one home. */
export function homeReport(input: HomeReportInput): SimReport {
  const { state, now } = input
  const devices = ledgerDevices(state, now)
  const heads: ReportHead[] = input.heads.map(h => ({ height: h.height, treeSize: h.treeSize, time: h.time }))
  const decisions = input.audit.map(r => auditDecision(state, r))
  const self = state.currentBinding(input.selfCn)
  const latest = input.heads[input.heads.length - 1]
  const revoked = devices.filter(d => d.revoked).length
  return {
    title: `Fleet ${input.fleet} as ${self !== undefined ? `"${self.name}" (${self.label})` : input.selfCn} sees it`,
    command: input.command,
    startedAt: new Date(now * 1000).toISOString(),
    seconds: 0,
    ok: true,
    devices,
    events: ledgerEvents(state),
    heads,
    decisions,
    attacks: [],
    figures: [
      { name: 'identities', value: devices.length, unit: '' },
      { name: 'revoked', value: revoked, unit: '' },
      { name: 'ledger events', value: state.log.length, unit: '' },
      {
        name: 'latest head',
        value: latest !== undefined ? `${latest.height} (size ${latest.treeSize})` : 'none',
        unit: '',
      },
      { name: 'decisions in the audit log', value: decisions.length, unit: '' },
    ],
    charts: [],
    notes: [
      `Drawn from the home of ${input.selfCn} at ${new Date(now * 1000).toISOString()}: what its verified ledger and audit log hold, ` +
        'which may lag L0 (run kin sync first for the newest picture).',
    ],
  }
}
