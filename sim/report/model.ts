/** @module What a simulator run hands its HTML report: the identity tree, the ledger timeline, decisions, figures. */

/** One identity in the tree drawing. */
export interface ReportDevice {
  label: string
  cn: string
  /** The parent's label ('' for L0). */
  parent: string
  role: string
  kind: string
  name: string
  /** Revoked (or under a revoked ancestor) at the end of the run. */
  revoked: boolean
}

/** One ledger event on the timeline. */
export interface ReportEvent {
  index: number
  type: string
  subject: string
  issuer: string
  /** Seconds since the epoch (claimed by the issuer). */
  time: number
  id: string
  bytes: number
}

/** One signed block head on the timeline. */
export interface ReportHead {
  height: number
  treeSize: number
  time: number
}

/** One access decision, with the path it was judged on (CNs or labels). */
export interface ReportDecision {
  label: string
  peer: string
  target: string
  action: string
  allow: boolean
  code: string
  path: string[]
  expected?: 'allow' | 'deny'
  ok?: boolean
}

/** One attack row: what was tried, the refusal expected, the code actually seen. */
export interface ReportAttack {
  attack: string
  expected: string
  actual: string
  refused: boolean
  ok: boolean
}

/** A named series of numbers for a chart (x → y). */
export interface ReportSeries {
  title: string
  unit: string
  points: Array<{ x: number | string; y: number }>
}

/** Everything one report page shows. */
export interface SimReport {
  title: string
  command: string
  startedAt: string
  seconds: number
  ok: boolean
  devices: ReportDevice[]
  events: ReportEvent[]
  heads: ReportHead[]
  decisions: ReportDecision[]
  attacks: ReportAttack[]
  /** Headline figures: name → value with unit. */
  figures: Array<{ name: string; value: number | string; unit: string }>
  charts: ReportSeries[]
  notes: string[]
}
