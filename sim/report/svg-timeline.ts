/** @module The ledger as a timeline: L0's events in log order, one lane per type, and the signed heads over them. */
import { TIMELINE_TYPES, esc, num, typeClass } from './escape.ts'
import type { ReportEvent, ReportHead } from './model.ts'

const WIDTH = 1160
const LEFT = 90
const LANE = 26

/**
 * The x axis is the position in the miner's log, not the claimed time: events of one enrollment share a second,
 * and a simulated clock may jump by days. A head at tree size n covers events 0..n-1, so it sits at n.
 */
export function drawTimeline(events: readonly ReportEvent[], heads: readonly ReportHead[]): string {
  const lanes = [...TIMELINE_TYPES]
  if (events.some(e => !TIMELINE_TYPES.includes(e.type))) lanes.push('other')
  const total = Math.max(1, events.length, ...heads.map(h => h.treeSize))
  const plot = WIDTH - LEFT - 20
  const x = (i: number) => LEFT + (i / total) * plot
  const headsY = 14 + lanes.length * LANE + 10
  const height = headsY + 54
  const barW = Math.max(1, Math.min(14, plot / total - 1))
  const out = [`<svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${WIDTH} ${height}" role="img">`]
  lanes.forEach((type, i) => {
    const y = 14 + i * LANE
    out.push(
      `<g class="lane ${typeClass(type === 'other' ? '?' : type)}"><line class="lane-line" x1="${LEFT}" y1="${y + LANE / 2}" x2="${WIDTH - 20}" y2="${y + LANE / 2}"/><text class="lane-name" x="${LEFT - 8}" y="${y + LANE / 2 + 4}">${type}</text></g>`,
    )
  })
  out.push('<g class="events">')
  for (const [pos, e] of events.entries()) {
    const lane = TIMELINE_TYPES.includes(e.type) ? TIMELINE_TYPES.indexOf(e.type) : lanes.length - 1
    const y = 14 + lane * LANE + 4
    out.push(
      `<rect class="timeline-event ${typeClass(e.type)}" x="${num(x(pos) + 0.5)}" y="${y}" width="${num(barW)}" height="${LANE - 8}"><title>${esc(`#${e.index} ${e.type} ${e.subject} by ${e.issuer}, ${e.bytes} bytes, ${new Date(e.time * 1000).toISOString()}\nid ${e.id}`)}</title></rect>`,
    )
  }
  out.push('</g>')
  out.push(
    `<line class="heads-axis" x1="${LEFT}" y1="${headsY}" x2="${WIDTH - 20}" y2="${headsY}"/><text class="lane-name" x="${LEFT - 8}" y="${headsY + 4}">heads</text>`,
  )
  out.push('<g class="heads">')
  const labelEvery = Math.max(1, Math.ceil(heads.length / 24))
  heads.forEach((h, i) => {
    const hx = x(h.treeSize)
    out.push(
      `<g class="timeline-head"><title>${esc(`head ${h.height}: ${h.treeSize} events, ${new Date(h.time * 1000).toISOString()}`)}</title>` +
        `<line class="head-tick" x1="${num(hx)}" y1="10" x2="${num(hx)}" y2="${headsY}"/>` +
        `<path class="head-mark" d="M${num(hx)} ${headsY - 6}l6 6l-6 6l-6 -6z"/>` +
        (i % labelEvery === 0 ? `<text class="head-label" x="${num(hx)}" y="${headsY + 24}">h${h.height}</text>` : '') +
        '</g>',
    )
  })
  out.push('</g>')
  out.push(
    `<text class="axis-note" x="${LEFT}" y="${height - 6}">position in L0's log →  (${events.length} events, ${heads.length} signed heads; a head sits at the number of events it covers)</text>`,
  )
  out.push('</svg>')
  return out.join('')
}
