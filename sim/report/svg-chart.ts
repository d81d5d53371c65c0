/** @module Fleet figures as inline SVG charts: a line chart for numeric x, a bar chart for named x. */
import { esc, figure, num } from './escape.ts'
import type { ReportSeries } from './model.ts'

const W = 560
const H = 270
const L = 64
const R = 20
const T = 46
const B = 52

/** A round step for about `count` ticks over [0, max]. */
function niceStep(max: number, count: number): number {
  const raw = max / count
  const mag = 10 ** Math.floor(Math.log10(raw))
  const m = raw / mag
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * mag
}

function yAxis(max: number, unit: string, out: string[]): (v: number) => number {
  const top = max > 0 ? max : 1
  const step = niceStep(top, 4)
  const end = Math.ceil(top / step) * step
  const y = (v: number) => T + (H - T - B) * (1 - v / end)
  for (let v = 0; v <= end + step / 2; v += step) {
    out.push(
      `<line class="grid" x1="${L}" y1="${num(y(v))}" x2="${W - R}" y2="${num(y(v))}"/><text class="tick" x="${L - 6}" y="${num(y(v) + 4)}" text-anchor="end">${esc(figure(v))}</text>`,
    )
  }
  out.push(`<text class="unit" x="${L - 40}" y="${T - 14}" text-anchor="start">${esc(unit)}</text>`)
  return y
}

/** One series as a chart (`<svg class="chart">`). */
export function drawChart(series: ReportSeries): string {
  const points = series.points.filter(p => Number.isFinite(p.y))
  const numeric = points.length > 1 && points.every(p => typeof p.x === 'number')
  const out = [
    `<svg class="chart ${numeric ? 'line-chart' : 'bar-chart'}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" role="img">`,
  ]
  out.push(`<text class="chart-title" x="${L}" y="18">${esc(series.title)}</text>`)
  const max = points.reduce((m, p) => Math.max(m, p.y), 0)
  const y = yAxis(max, series.unit, out)
  const plot = W - L - R
  if (points.length === 0) {
    out.push(`<text class="tick" x="${L + plot / 2}" y="${H / 2}" text-anchor="middle">no data</text>`)
  } else if (numeric) {
    const xs = points.map(p => p.x as number)
    const x0 = Math.min(...xs),
      x1 = Math.max(...xs)
    const x = (v: number) => L + (x1 === x0 ? plot / 2 : ((v - x0) / (x1 - x0)) * plot)
    out.push(
      `<polyline class="series-line" points="${points.map(p => `${num(x(p.x as number))},${num(y(p.y))}`).join(' ')}"/>`,
    )
    if (points.length <= 60)
      for (const p of points)
        out.push(
          `<circle class="series-point" cx="${num(x(p.x as number))}" cy="${num(y(p.y))}" r="3"><title>${esc(`${figure(p.x)}: ${figure(p.y)} ${series.unit}`)}</title></circle>`,
        )
    const step = niceStep(Math.max(1e-9, x1 - x0), 5)
    for (let v = Math.ceil(x0 / step) * step; v <= x1 + step / 1e6; v += step) {
      out.push(`<text class="tick" x="${num(x(v))}" y="${H - B + 18}" text-anchor="middle">${esc(figure(v))}</text>`)
    }
  } else {
    const slot = plot / points.length
    const bw = Math.max(2, Math.min(60, slot * 0.7))
    const showText = points.length <= 24
    points.forEach((p, i) => {
      const cx = L + slot * (i + 0.5)
      out.push(
        `<rect class="bar" x="${num(cx - bw / 2)}" y="${num(y(p.y))}" width="${num(bw)}" height="${num(Math.max(0, y(0) - y(p.y)))}"><title>${esc(`${p.x}: ${figure(p.y)} ${series.unit}`)}</title></rect>`,
      )
      if (showText) {
        out.push(
          `<text class="bar-value" x="${num(cx)}" y="${num(y(p.y) - 4)}" text-anchor="middle">${esc(figure(p.y))}</text>`,
        )
        const name = String(p.x)
        out.push(
          `<text class="tick" x="${num(cx)}" y="${H - B + 18}" text-anchor="middle">${esc(name.length > 14 ? name.slice(0, 13) + '…' : name)}</text>`,
        )
      }
    })
  }
  out.push(`<line class="axis" x1="${L}" y1="${num(y(0))}" x2="${W - R}" y2="${num(y(0))}"/>`)
  out.push('</svg>')
  return out.join('')
}
