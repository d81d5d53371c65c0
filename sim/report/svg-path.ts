/** @module One decision's path as a small SVG: up from the peer to the common ancestor, down to the deciding device. */
import { esc, num, roleClass } from './escape.ts'
import type { TreeLayout } from './tree-layout.ts'

const GAP_X = 68
const GAP_Y = 34
const R = 11

/**
 * Draws the path keys as nodes placed by their depth in the tree, so the climb to the common ancestor and the
 * descent to the decider read at a glance. Keys the tree does not hold are drawn grey with their own text.
 */
export function drawPathStrip(layout: TreeLayout, path: readonly string[]): string {
  if (path.length === 0)
    return '<svg class="path-strip empty" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 240 30" width="240" height="30"><text x="4" y="19">no path (refused before the lineage walk)</text></svg>'
  const steps = path.map(k => ({ key: k, node: layout.byKey.get(k) }))
  const depths = steps.map((s, i) => s.node?.depth ?? (i === 0 ? 0 : 0))
  const minD = Math.min(...depths),
    maxD = Math.max(...depths)
  const width = 30 + GAP_X * (steps.length - 1) + 50
  const height = 26 + (maxD - minD) * GAP_Y + 34
  const pts = steps.map((_, i) => ({ x: 28 + i * GAP_X, y: 20 + (depths[i]! - minD) * GAP_Y }))
  const out = [
    `<svg class="path-strip" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${num(width)} ${num(height)}" style="width:100%;max-width:${num(width)}px;height:auto" data-hops="${path.length - 1}">`,
  ]
  out.push(`<polyline class="path-line" points="${pts.map(p => `${num(p.x)},${num(p.y)}`).join(' ')}"/>`)
  steps.forEach((s, i) => {
    const p = pts[i]!
    const d = s.node?.device
    const cls = ['path-node', d !== undefined ? roleClass(d.role) : 'role-other']
    if (d?.revoked === true) cls.push('revoked')
    if (i === 0) cls.push('peer')
    if (i === steps.length - 1) cls.push('target')
    const text = d?.label ?? (s.key.length > 12 ? s.key.slice(0, 11) + '…' : s.key)
    out.push(
      `<g class="${cls.join(' ')}"><title>${esc(d !== undefined ? `${d.label} — ${d.name} (${d.role})\n${d.cn}` : s.key)}</title>`,
    )
    out.push(
      `<circle cx="${num(p.x)}" cy="${num(p.y)}" r="${R}"/><text x="${num(p.x)}" y="${num(p.y + R + 13)}">${esc(text)}</text></g>`,
    )
  })
  out.push('</svg>')
  return out.join('')
}
