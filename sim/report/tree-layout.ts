/** @module Layout of the identity tree for the report: layers by depth, leaves side by side, parents over their children. */
import type { ReportDevice } from './model.ts'

/** A device placed on the drawing. */
export interface PlacedNode {
  device: ReportDevice
  /** Position in the report's device list (stable element ids that never carry a name). */
  index: number
  depth: number
  x: number
  y: number
  children: PlacedNode[]
  parent: PlacedNode | undefined
}

/** The whole drawing's geometry. */
export interface TreeLayout {
  nodes: PlacedNode[]
  /** Nodes by label and by CN, so a decision path (either form) finds them. */
  byKey: Map<string, PlacedNode>
  width: number
  height: number
  radius: number
  /** Whether there is room for a label under each node. */
  labelled: boolean
}

const TARGET_WIDTH = 1160
const MARGIN = 40

/**
 * Places every device: depth from the parent chain, leaves spaced evenly in depth-first order, each parent centred
 * over its children. A parent that is not in the list (or a cycle, which only a forged report could hold) makes
 * the device a root of its own, so every device is drawn exactly once.
 */
export function layoutTree(devices: readonly ReportDevice[]): TreeLayout {
  const nodes: PlacedNode[] = devices.map((device, index) => ({
    device,
    index,
    depth: 0,
    x: 0,
    y: 0,
    children: [],
    parent: undefined,
  }))
  const byLabel = new Map<string, PlacedNode>()
  for (const n of nodes) if (!byLabel.has(n.device.label)) byLabel.set(n.device.label, n)
  const roots: PlacedNode[] = []
  for (const n of nodes) {
    const p = n.device.parent === '' ? undefined : byLabel.get(n.device.parent)
    if (p === undefined || p === n) roots.push(n)
    else {
      n.parent = p
      p.children.push(n)
    }
  }
  // Nodes on a parent cycle are reached from no root: cut each cycle at its first node.
  const reached = new Set<PlacedNode>()
  const mark = (r: PlacedNode) => {
    const stack = [r]
    while (stack.length > 0) {
      const n = stack.pop()!
      if (reached.has(n)) continue
      reached.add(n)
      stack.push(...n.children)
    }
  }
  roots.forEach(mark)
  for (const n of nodes) {
    if (reached.has(n)) continue
    const p = n.parent!
    p.children.splice(p.children.indexOf(n), 1)
    n.parent = undefined
    roots.push(n)
    mark(n)
  }

  // Depth-first order without recursion (a long chain must not exhaust the stack).
  const order: PlacedNode[] = []
  const stack = [...roots].reverse()
  for (const r of roots) r.depth = 0
  while (stack.length > 0) {
    const n = stack.pop()!
    order.push(n)
    for (let i = n.children.length - 1; i >= 0; i--) {
      const c = n.children[i]!
      c.depth = n.depth + 1
      stack.push(c)
    }
  }
  const leaves = order.filter(n => n.children.length === 0)
  const maxDepth = order.reduce((m, n) => Math.max(m, n.depth), 0)
  const gapX = Math.max(3, Math.min(150, TARGET_WIDTH / Math.max(1, leaves.length)))
  const labelled = gapX >= 40 && nodes.length <= 150
  const gapY = labelled ? 96 : Math.max(28, Math.min(80, 600 / Math.max(1, maxDepth)))
  const radius = labelled ? 15 : Math.max(1.2, Math.min(8, gapX * 0.4))
  leaves.forEach((n, i) => {
    n.x = MARGIN + gapX * (i + 0.5)
  })
  for (let i = order.length - 1; i >= 0; i--) {
    const n = order[i]!
    if (n.children.length > 0) n.x = (n.children[0]!.x + n.children[n.children.length - 1]!.x) / 2
    n.y = MARGIN + n.depth * gapY
  }
  const byKey = new Map<string, PlacedNode>()
  for (const n of nodes) {
    if (!byKey.has(n.device.label)) byKey.set(n.device.label, n)
    if (n.device.cn !== '' && !byKey.has(n.device.cn)) byKey.set(n.device.cn, n)
  }
  return {
    nodes,
    byKey,
    labelled,
    radius,
    width: Math.max(2 * MARGIN + gapX * Math.max(1, leaves.length), 320),
    height: 2 * MARGIN + maxDepth * gapY + (labelled ? 30 : 0),
  }
}
