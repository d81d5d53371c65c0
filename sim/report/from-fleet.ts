/** @module Report parts read from a live fleet: the identity tree, L0's ledger as a timeline, the miner's signed heads. */
import type { Decision } from '../../agent/access/types.ts'
import type { LiveFleet } from '../live/fleet.ts'
import type { ReportDecision, ReportDevice, ReportEvent, ReportHead } from './model.ts'

/**
 * Every device of the fleet with its parent's label, as L0's ledger says at `now`: `revoked` when its current
 * binding is revoked or lies under a revoked ancestor (an expired guest is not revoked).
 */
export function reportDevices(fleet: LiveFleet, kinds: ReadonlyMap<string, string> = new Map()): ReportDevice[] {
  const state = fleet.l0.ledger.ledger.state
  const labelByCn = new Map([...fleet.devices.values()].map(d => [d.cn, d.label]))
  const now = fleet.clock.now()
  return [...fleet.devices.values()].map(d => {
    const binding = state.currentBinding(d.cn)
    const parentCn =
      binding?.parentBindingId !== undefined ? state.bindings.get(binding.parentBindingId)?.cn : undefined
    const invalid = binding !== undefined ? state.invalidAt(binding, now) : undefined
    return {
      label: d.label,
      cn: d.cn,
      parent: parentCn !== undefined ? (labelByCn.get(parentCn) ?? parentCn) : '',
      role: binding?.role ?? d.role,
      kind: kinds.get(d.label) ?? (d.label === 'L0' ? 'pc' : 'device'),
      name: d.name,
      revoked: invalid?.code === 'REVOKED' || invalid?.code === 'ANCESTOR_REVOKED',
    }
  })
}

/** L0's ledger (the miner's log) in order; subject and issuer as labels where the fleet knows them, else CNs. */
export function reportEvents(fleet: LiveFleet): ReportEvent[] {
  const state = fleet.l0.ledger.ledger.state
  const labelByCn = new Map([...fleet.devices.values()].map(d => [d.cn, d.label]))
  const name = (label: Uint8Array) => {
    const cn = state.cnOfLabel(label)
    return labelByCn.get(cn) ?? cn
  }
  return state.log.map((e, index) => ({
    index,
    type: e.event.type,
    subject: name(e.event.subject),
    issuer: name(e.event.issuer),
    time: e.event.time,
    id: e.idHex,
    bytes: e.bytes.length,
  }))
}

/** Every head the miner signed, oldest first. */
export function reportHeads(fleet: LiveFleet): ReportHead[] {
  const miner = fleet.l0.miner.miner
  const latest = miner.latestHead()
  const heads: ReportHead[] = []
  if (latest === undefined) return heads
  for (let h = 0; h <= latest.height; h++) {
    const head = miner.headAt(h)
    if (head !== undefined) heads.push({ height: head.height, treeSize: head.treeSize, time: head.time })
  }
  return heads
}

/** One decision for the report; its path is shown as labels (CNs the fleet does not know stay CNs). */
export function reportDecision(
  fleet: LiveFleet,
  d: {
    label: string
    peer: string
    target: string
    action: string
    decision: Decision
    expected?: 'allow' | 'deny'
    ok?: boolean
  },
): ReportDecision {
  const labelByCn = new Map([...fleet.devices.values()].map(x => [x.cn, x.label]))
  return {
    label: d.label,
    peer: d.peer,
    target: d.target,
    action: d.action,
    allow: d.decision.allow,
    code: d.decision.code,
    path: d.decision.path.map(cn => labelByCn.get(cn) ?? cn),
    ...(d.expected !== undefined ? { expected: d.expected } : {}),
    ...(d.ok !== undefined ? { ok: d.ok } : {}),
  }
}
