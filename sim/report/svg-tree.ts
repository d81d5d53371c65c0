/** @module The identity tree as inline SVG: layers by depth, roles colour-coded, revoked nodes crossed, a decision's path drawn over it. */
import { esc, num, roleClass } from './escape.ts'
import type { PlacedNode, TreeLayout } from './tree-layout.ts'

/** How one drawing of the tree looks. */
export interface TreeDrawing {
  /** Keys (labels or CNs) of a decision's path, peer first, deciding device last. */
  path?: readonly string[]
  /** Width the SVG is shown at (CSS px); the viewBox keeps the geometry. */
  displayWidth?: number
  /** Prefix of element ids, so several drawings on one page stay distinct. */
  idPrefix: string
  /** Draw labels (when the layout has room for them). */
  labels?: boolean
}

/** The nodes a path names, in order, skipping keys the tree does not hold. */
export function pathNodes(layout: TreeLayout, path: readonly string[]): PlacedNode[] {
  return path.map(k => layout.byKey.get(k)).filter((n): n is PlacedNode => n !== undefined)
}

function title(n: PlacedNode): string {
  const d = n.device
  return `${d.label} — ${d.name} (${d.role}, ${d.kind})${d.revoked ? ' — REVOKED' : ''}\n${d.cn}`
}

/** The tree as one `<svg>` element. */
export function drawTree(layout: TreeLayout, drawing: TreeDrawing): string {
  const r = layout.radius
  const onPath = drawing.path !== undefined ? pathNodes(layout, drawing.path) : []
  const pathSet = new Set(onPath)
  const faded = drawing.path !== undefined
  const out: string[] = []
  const w = drawing.displayWidth
  // A small tree is shown at its natural size, not blown up to the page's width.
  const size =
    w !== undefined
      ? ` width="${num(w)}" height="${num((w * layout.height) / layout.width)}"`
      : ` style="max-width:${num(layout.width)}px"`
  out.push(
    `<svg class="tree${faded ? ' tree-path' : ''}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${num(layout.width)} ${num(layout.height)}"` +
      ` preserveAspectRatio="xMidYMin meet" role="img"${size}>`,
  )
  const labels = drawing.labels !== false && layout.labelled
  // Edges leave a parent below its label, so they never cross the text.
  const below = labels ? r + 30 : 0
  out.push('<g class="edges">')
  for (const n of layout.nodes) {
    if (n.parent === undefined) continue
    out.push(
      `<line class="edge" x1="${num(n.parent.x)}" y1="${num(n.parent.y + below)}" x2="${num(n.x)}" y2="${num(n.y - r)}"/>`,
    )
  }
  out.push('</g>')
  if (onPath.length > 1) {
    const pts = onPath.map(n => `${num(n.x)},${num(n.y)}`).join(' ')
    out.push(
      `<polyline class="path-line" data-hops="${onPath.length - 1}" points="${pts}" stroke-width="${num(Math.max(2.5, r * 0.45))}"/>`,
    )
  }
  out.push('<g class="nodes">')
  for (const n of layout.nodes) {
    const d = n.device
    const cls = ['tree-node', roleClass(d.role)]
    if (d.parent === '') cls.push('root')
    if (d.revoked) cls.push('revoked')
    if (pathSet.has(n)) cls.push('on-path')
    else if (faded) cls.push('off-path')
    out.push(
      `<g class="${cls.join(' ')}" id="${drawing.idPrefix}-n${n.index}" data-label="${esc(d.label)}"><title>${esc(title(n))}</title>`,
    )
    out.push(`<circle cx="${num(n.x)}" cy="${num(n.y)}" r="${num(r)}"/>`)
    if (d.parent === '')
      out.push(`<circle class="ring" cx="${num(n.x)}" cy="${num(n.y)}" r="${num(r + Math.max(1.5, r * 0.25))}"/>`)
    if (d.revoked) {
      const k = r * 0.75
      out.push(
        `<path class="cross" d="M${num(n.x - k)} ${num(n.y - k)}L${num(n.x + k)} ${num(n.y + k)}M${num(n.x + k)} ${num(n.y - k)}L${num(n.x - k)} ${num(n.y + k)}"/>`,
      )
    }
    if (labels) {
      out.push(`<text class="label" x="${num(n.x)}" y="${num(n.y + r + 14)}">${esc(d.label)}</text>`)
      const name = d.name.length > 16 ? d.name.slice(0, 15) + '…' : d.name
      if (name !== '') out.push(`<text class="name" x="${num(n.x)}" y="${num(n.y + r + 26)}">${esc(name)}</text>`)
    }
    out.push('</g>')
  }
  out.push('</g>')
  if (onPath.length > 0 && labels) {
    const peer = onPath[0]!,
      target = onPath[onPath.length - 1]!
    out.push(`<text class="end-mark" x="${num(peer.x)}" y="${num(peer.y - r - 5)}">peer</text>`)
    if (target !== peer)
      out.push(`<text class="end-mark" x="${num(target.x)}" y="${num(target.y - r - 5)}">decides</text>`)
  }
  out.push('</svg>')
  return out.join('')
}

/** The legend of roles and marks, as a small SVG. */
export function treeLegend(): string {
  const items: Array<[string, string]> = [
    ['role-admin', 'admin'],
    ['role-member', 'member'],
    ['role-device', 'device'],
    ['role-guest', 'guest'],
    ['role-other', 'other'],
  ]
  const out = ['<svg class="legend" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 640 28" width="640" height="28">']
  items.forEach(([cls, name], i) => {
    out.push(
      `<g class="tree-legend ${cls}"><circle cx="${14 + i * 92}" cy="14" r="8"/><text x="${27 + i * 92}" y="18">${name}</text></g>`,
    )
  })
  const x = 14 + items.length * 92
  out.push(
    `<g class="tree-legend revoked role-other"><circle cx="${x}" cy="14" r="8"/><path class="cross" d="M${x - 6} 8L${x + 6} 20M${x + 6} 8L${x - 6} 20"/><text x="${x + 13}" y="18">revoked</text></g>`,
  )
  out.push('</svg>')
  return out.join('')
}
