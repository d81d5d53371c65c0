/** @module The attack run as a SimReport: the house's tree, L0's ledger and heads, each decision with its path, the attack table. */
import type { ReportDecision, ReportDevice, ReportEvent, ReportHead, SimReport } from '../report/model.ts'
import type { AttackContext } from './house.ts'
import type { RecordedDecision } from './runner.ts'
import { tally, type AttackRow } from './types.ts'

/** What a finished run hands the report. */
export interface AttackRunFacts {
  ctx: AttackContext
  rows: readonly AttackRow[]
  decisions: readonly RecordedDecision[]
  flipCodes: ReadonlyMap<string, number>
  startedAt: Date
  seconds: number
  command: string
}

function devicesOf(ctx: AttackContext): ReportDevice[] {
  const state = ctx.fleet.l0.ledger.ledger.state
  const now = ctx.fleet.clock.now()
  const spec = new Map(ctx.house.map(d => [d.label, d]))
  return [...ctx.fleet.devices.values()].map(d => {
    const binding = state.currentBinding(d.cn)
    const invalid = binding === undefined ? undefined : state.invalidAt(binding, now)
    const s = spec.get(d.label)
    return {
      label: d.label,
      cn: d.cn,
      parent: s?.parent ?? '',
      role: d.role,
      kind: s?.kind ?? 'pc',
      name: d.name,
      revoked: invalid !== undefined && (invalid.code === 'REVOKED' || invalid.code === 'ANCESTOR_REVOKED'),
    }
  })
}

function eventsOf(ctx: AttackContext): ReportEvent[] {
  const state = ctx.fleet.l0.ledger.ledger.state
  return state.log.map((e, index) => ({
    index,
    type: e.event.type,
    subject: state.cnOfLabel(e.event.subject),
    issuer: state.cnOfLabel(e.event.issuer),
    time: e.event.time,
    id: e.idHex,
    bytes: e.bytes.length,
  }))
}

function headsOf(ctx: AttackContext): ReportHead[] {
  const miner = ctx.fleet.l0.miner.miner
  const latest = miner.latestHead()
  const heads: ReportHead[] = []
  for (let h = 0; latest !== undefined && h <= latest.height; h++) {
    const head = miner.headAt(h)
    if (head !== undefined) heads.push({ height: head.height, treeSize: head.treeSize, time: head.time })
  }
  return heads
}

function decisionsOf(ctx: AttackContext, decisions: readonly RecordedDecision[]): ReportDecision[] {
  return decisions.map(d => ({
    label: d.spec.attack,
    peer: d.peer,
    target: d.target,
    action: d.action,
    allow: d.decision.allow,
    code: d.decision.code,
    path: d.decision.path.map(cn => ctx.labelOf(cn)),
    expected: d.spec.kind === 'control' ? 'allow' : 'deny',
    ok: d.ok,
  }))
}

const NOTES: readonly string[] = [
  "Every case runs against a live fleet: L0's broker, CA and miner on a loopback port, each device enrolled with a pairing code over MQTT/TLS, with its home on disk, following the ledger.",
  "Access attacks go over real mutual TLS to the front-door lock's endpoint; the stolen-certificate case speaks TLS 1.2 itself because OpenSSL will not pair a certificate with another key. TLS_HANDSHAKE means the lock aborted the handshake: no session, nothing decided.",
  "Rogue root: a root with the fleet root's subject and key identifier under another key, made with the openssl command line. Its leaf asks the lock eight times over mutual TLS from openssl s_client (a process of its own: a client in the suite's process would clear the OpenSSL error queue the fault lived on) and logs in to L0's broker four times over MQTT as the guest's phone; each attempt must end in CERT_CHAIN (the lock's answer line; CONNACK 5 with L0's login.refused line), none in a reset connection.",
  "SAN parent: with a key the ledger does not bind, the binding stage refuses first (CERT_UNBOUND). Only the device itself can record a certificate (a certified event needs its ledger key), so ACCESS_SAN_PARENT is an insider's refusal: the guest, with a mis-issued certificate that puts it under the owner's phone.",
  "Bundle cases run over mutual TLS against an offline lock that keeps only its own lineage: the guest sends its bundle in its request line, and is unknown to the lock until that bundle verifies against the miner key, the genesis and the lock's own head.",
  "Challenge cases run over the device inbox on the live broker: the lock answers on its follower's session, the guest asks with its own, and Eve works through a compromised camera's session.",
  "Forged heads are published on the head topic as L0's services, not retained; each following device must raise an alarm and keep its head, and still adopt the next genuine head.",
  "Ledger tampering works on a copy of the lock's home, taken while the fleet runs, reopened as after a restart; an untouched copy must reopen.",
]

/** The report of one attack run. */
export function attackReport(facts: AttackRunFacts): SimReport {
  const { ctx, rows } = facts
  const t = tally(rows)
  const events = eventsOf(ctx)
  return {
    title: 'kinship attack suite',
    command: facts.command,
    startedAt: facts.startedAt.toISOString(),
    seconds: facts.seconds,
    ok: t.ok,
    devices: devicesOf(ctx),
    events,
    heads: headsOf(ctx),
    decisions: decisionsOf(ctx, facts.decisions),
    attacks: rows.map(r => ({
      attack: `${r.kind === 'control' ? 'control: ' : ''}${r.attack}`,
      expected: r.expected.join(' / '),
      actual: r.actual,
      refused: r.refused,
      ok: r.ok,
    })),
    figures: [
      { name: 'attacks', value: t.attacks, unit: 'cases' },
      { name: 'controls', value: t.controls, unit: 'cases' },
      { name: 'false accepts', value: t.falseAccepts, unit: 'attacks let in' },
      { name: 'false rejects', value: t.falseRejects, unit: 'controls turned away' },
      { name: 'unexpected codes', value: t.wrongCodes + t.errors, unit: 'cases' },
      { name: 'devices', value: ctx.fleet.devices.size, unit: 'identities' },
      { name: 'ledger', value: events.length, unit: 'events' },
      { name: 'ledger size', value: events.reduce((s, e) => s + e.bytes, 0), unit: 'bytes' },
      { name: 'head alarms', value: ctx.alarms.length, unit: 'raised by followers' },
      { name: 'run time', value: facts.seconds, unit: 's' },
    ],
    charts: [
      { title: 'time per case', unit: 'ms', points: rows.map(r => ({ x: r.id, y: r.ms })) },
      {
        title: 'one changed byte in a bundle: refusal codes',
        unit: 'bundles',
        points: [...facts.flipCodes].sort((a, b) => b[1] - a[1]).map(([code, n]) => ({ x: code, y: n })),
      },
    ],
    notes: [...NOTES],
  }
}
