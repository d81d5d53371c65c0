/** @module The simulator's report as one self-contained HTML page: inline CSS and SVG, no scripts, every string escaped. */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { esc, figure, num } from './escape.ts'
import type { ReportDecision, ReportDevice, SimReport } from './model.ts'
import { REPORT_CSS } from './style.ts'
import { drawChart } from './svg-chart.ts'
import { drawPathStrip } from './svg-path.ts'
import { drawTimeline } from './svg-timeline.ts'
import { drawTree, treeLegend } from './svg-tree.ts'
import { layoutTree, type TreeLayout } from './tree-layout.ts'

/** Decisions drawn as cards with their path; the rest are listed in a table (a fleet run may hold thousands). */
export const MAX_DECISION_CARDS = 120
/** Trees this small get a small multiple of the whole tree in each decision card. */
export const MAX_SMALL_MULTIPLE_DEVICES = 40
/** Ledger events listed in the event table (all of them are on the timeline). */
export const MAX_EVENT_ROWS = 400

function labelOf(layout: TreeLayout, key: string): string {
  return layout.byKey.get(key)?.device.label ?? (key.length > 24 ? key.slice(0, 23) + '…' : key)
}

function header(r: SimReport): string {
  return (
    `<header><h1>${esc(r.title)}</h1><span class="badge ${r.ok ? 'ok' : 'fail'}">${r.ok ? 'ALL EXPECTATIONS HELD' : 'SOME EXPECTATIONS FAILED'}</span>` +
    `<span class="meta"><code>${esc(r.command)}</code> · started ${esc(r.startedAt)} · ${esc(figure(r.seconds))} s</span></header>`
  )
}

function figures(r: SimReport): string {
  if (r.figures.length === 0) return ''
  const cards = r.figures.map(
    f =>
      `<div class="figure"><div class="name">${esc(f.name)}</div><span class="value">${esc(figure(f.value))}</span><span class="unit">${esc(f.unit)}</span></div>`,
  )
  return `<section id="figures"><h2>Figures</h2><div class="figures">${cards.join('')}</div></section>`
}

function roleCounts(devices: readonly ReportDevice[]): string {
  const counts = new Map<string, number>()
  for (const d of devices) counts.set(d.role, (counts.get(d.role) ?? 0) + 1)
  const revoked = devices.filter(d => d.revoked).length
  return [...counts].map(([role, n]) => `${n} ${esc(role)}`).join(', ') + (revoked > 0 ? `; ${revoked} revoked` : '')
}

function tree(r: SimReport, layout: TreeLayout): string {
  return (
    `<section id="tree"><h2>Identity tree</h2><p class="muted">${r.devices.length} identities (${roleCounts(r.devices)}), layers by depth under L0; hover a node for its name and CN.</p>` +
    treeLegend() +
    drawTree(layout, { idPrefix: 'tree' }) +
    '</section>'
  )
}

function ledger(r: SimReport, layout: TreeLayout): string {
  const bytes = r.events.reduce((s, e) => s + e.bytes, 0)
  const rows = r.events
    .slice(0, MAX_EVENT_ROWS)
    .map(
      e =>
        `<tr class="event"><td class="num">${e.index}</td><td>${esc(e.type)}</td><td>${esc(labelOf(layout, e.subject))}</td><td>${esc(labelOf(layout, e.issuer))}</td>` +
        `<td class="num">${e.bytes}</td><td class="mono">${esc(new Date(e.time * 1000).toISOString().replace('.000Z', 'Z'))}</td><td class="mono">${esc(e.id.slice(0, 16))}</td></tr>`,
    )
  const more =
    r.events.length > MAX_EVENT_ROWS
      ? `<p class="muted">${r.events.length - MAX_EVENT_ROWS} more events are on the timeline only.</p>`
      : ''
  const lastHead = r.heads[r.heads.length - 1]
  return (
    `<section id="ledger"><h2>Ledger</h2><p class="muted">${r.events.length} events, ${figure(bytes)} bytes${lastHead ? `; latest head ${lastHead.height} over ${lastHead.treeSize} events` : ''}.</p>` +
    drawTimeline(r.events, r.heads) +
    `<details${r.events.length <= 12 ? ' open' : ''}><summary>Events (${r.events.length})</summary><table class="events"><thead><tr><th>#</th><th>type</th><th>subject</th><th>issuer</th><th>bytes</th><th>claimed time</th><th>id</th></tr></thead><tbody>${rows.join('')}</tbody></table>${more}</details></section>`
  )
}

function verdict(d: ReportDecision): string {
  const expected =
    d.expected !== undefined
      ? ` · expected ${esc(d.expected)}${d.ok === false ? ' — <strong>FAILED</strong>' : d.ok === true ? ' ✓' : ''}`
      : ''
  const code = d.code !== 'ALLOW' ? ` <code>${esc(d.code)}</code>` : ''
  return `<span class="badge ${d.allow ? 'allow' : 'deny'}">${d.allow ? 'ALLOW' : 'DENY'}</span>${code}${expected}`
}

function decisionCard(d: ReportDecision, i: number, layout: TreeLayout, small: boolean): string {
  const cls = ['decision', d.allow ? 'allow' : 'deny']
  if (d.ok === false) cls.push('fail')
  const mini = small ? drawTree(layout, { idPrefix: `d${i}`, path: d.path, displayWidth: 350 }) : ''
  return (
    `<article class="${cls.join(' ')}" id="decision-${i}" data-path-length="${d.path.length}"><h3>${esc(d.label)}</h3>` +
    `<div class="what">${esc(labelOf(layout, d.peer))} → ${esc(labelOf(layout, d.target))} · <code>${esc(d.action)}</code></div><div>${verdict(d)}</div>` +
    `<div class="strip">${drawPathStrip(layout, d.path)}</div>${mini}</article>`
  )
}

function decisions(r: SimReport, layout: TreeLayout): string {
  if (r.decisions.length === 0) return ''
  const small = r.devices.length <= MAX_SMALL_MULTIPLE_DEVICES
  const cards = r.decisions.slice(0, MAX_DECISION_CARDS).map((d, i) => decisionCard(d, i, layout, small))
  const rest = r.decisions
    .slice(MAX_DECISION_CARDS)
    .map(
      d =>
        `<tr class="${d.ok === false ? 'fail' : ''}"><td>${esc(d.label)}</td><td>${esc(d.action)}</td><td>${d.allow ? 'allow' : 'deny'}</td><td><code>${esc(d.code)}</code></td><td>${esc(d.path.map(k => labelOf(layout, k)).join(' · '))}</td></tr>`,
    )
  const allowed = r.decisions.filter(d => d.allow).length
  const failed = r.decisions.filter(d => d.ok === false).length
  return (
    `<section id="decisions"><h2>Access decisions</h2><p class="muted">${r.decisions.length} decisions: ${allowed} allowed, ${r.decisions.length - allowed} denied${failed > 0 ? `, <strong>${failed} not as expected</strong>` : ''}. ` +
    'Each path climbs from the peer to the common ancestor and descends to the device that decided (orange).</p>' +
    `<div class="decisions">${cards.join('')}</div>` +
    (rest.length > 0
      ? `<details><summary>${rest.length} more decisions</summary><table><thead><tr><th>decision</th><th>action</th><th>result</th><th>code</th><th>path</th></tr></thead><tbody>${rest.join('')}</tbody></table></details>`
      : '') +
    '</section>'
  )
}

function attacks(r: SimReport): string {
  if (r.attacks.length === 0) return ''
  const rows = r.attacks.map(
    a =>
      `<tr class="attack ${a.ok ? 'ok' : 'fail'}"><td>${esc(a.attack)}</td><td><code>${esc(a.expected)}</code></td><td><code>${esc(a.actual)}</code></td>` +
      `<td>${a.refused ? 'refused' : a.ok ? 'accepted' : '<strong>accepted</strong>'}</td><td><span class="badge ${a.ok ? 'ok' : 'fail'}">${a.ok ? 'as expected' : 'UNEXPECTED'}</span></td></tr>`,
  )
  const held = r.attacks.filter(a => a.ok).length
  return (
    `<section id="attacks"><h2>Attacks</h2><p class="muted">${held}/${r.attacks.length} attacks met the expected refusal.</p>` +
    `<table><thead><tr><th>attack</th><th>expected</th><th>seen</th><th>outcome</th><th></th></tr></thead><tbody>${rows.join('')}</tbody></table></section>`
  )
}

function charts(r: SimReport): string {
  if (r.charts.length === 0) return ''
  return `<section id="charts"><h2>Charts</h2><div class="charts">${r.charts.map(drawChart).join('')}</div></section>`
}

function notes(r: SimReport): string {
  if (r.notes.length === 0) return ''
  return `<section id="notes"><h2>Notes</h2><ul>${r.notes.map(n => `<li>${esc(n)}</li>`).join('')}</ul></section>`
}

/** The whole page. Needs no network, no fonts and no script to render. */
export function renderReport(report: SimReport): string {
  const layout = layoutTree(report.devices)
  return (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">' +
    `<meta name="viewport" content="width=device-width, initial-scale=1"><title>${esc(report.title)}</title><style>${REPORT_CSS}</style></head>` +
    `<body><main data-ok="${report.ok}" data-devices="${num(report.devices.length)}">` +
    header(report) +
    figures(report) +
    tree(report, layout) +
    ledger(report, layout) +
    decisions(report, layout) +
    attacks(report) +
    charts(report) +
    notes(report) +
    `<footer>kinship simulator report · ${esc(report.startedAt)}</footer></main></body></html>\n`
  )
}

/** Renders the report into `file` (its folder made if missing). */
export function writeReport(file: string, report: SimReport): void {
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, renderReport(report))
}
