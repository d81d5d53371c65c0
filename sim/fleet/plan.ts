/** @module The shape of a simulated fleet: N devices under L0 within a depth and a fanout, admins and members inside, devices at the leaves. */
import { KinError } from '../../agent/errors.ts'
import type { RoleName } from '../../agent/ledger/types.ts'

/** One device to enroll. */
export interface PlannedDevice {
  label: string
  parent: string
  depth: number
  role: RoleName
  kind: string
  name: string
  /** Whether it will invite devices of its own. */
  inner: boolean
  /** What it keeps of the ledger (DESIGN.md "Small devices: three tiers"): 'full' the whole ledger, 'bundle' its own lineage and the bundles peers present. */
  tier: DeviceTier
}

/** The tiers a simulated device can run: the whole ledger, or bundles. */
export type DeviceTier = 'full' | 'bundle'

/**
 * The tier a device of `role` runs in a fleet of `tiers`: 'full' makes every device a full device; 'mixed' keeps
 * the admins' laptops and the members' phones (they invite, so they need the whole ledger) full and makes the leaves
 * — locks, cameras, sensors, thermostats, lights and guests' phones, which only ever prove themselves and decide on
 * what a peer presents — the bundle tier.
 */
export function tierOf(role: RoleName, tiers: 'full' | 'mixed'): DeviceTier {
  return tiers === 'mixed' && (role === 'device' || role === 'guest') ? 'bundle' : 'full'
}

/** The whole tree, parents before children (breadth first). */
export interface FleetPlan {
  devices: PlannedDevice[]
  depth: number
  fanout: number
}

/** Largest fanout accepted: a parent inviting more than this at once is not a home or a building floor. */
export const MAX_FANOUT = 1000
/** Deepest tree accepted: L0 may delegate 15 levels, the default policy allows 8 hops between two devices. */
export const MAX_DEPTH = 8

/** Devices a tree of this depth and fanout can hold under L0. */
export function capacity(depth: number, fanout: number): number {
  let total = 0,
    level = 1
  for (let d = 1; d <= depth; d++) {
    level *= fanout
    total += level
    if (total > 1e9) break
  }
  return total
}

/** The smallest fanout whose tree of `depth` holds `devices`. */
export function fanoutFor(devices: number, depth: number): number {
  let f = 1
  while (capacity(depth, f) < devices) f++
  return Math.max(2, f)
}

const LEAF_KINDS = ['lock', 'camera', 'sensor', 'thermostat', 'light'] as const

/**
 * Numbers the devices as a heap (parent of device i is device ⌊(i−1)/F⌋, L0 being 0), so every level fills
 * before the next starts. Inner devices invite: an inner device with inner children is an admin (only an admin
 * may invite admins or members), one whose children are all leaves is a member; leaves are devices, one in ten
 * a guest's phone. Labels say the layer, as in the house: L2.17 is the 17th device on layer 2.
 */
export function planFleet(opts: {
  devices: number
  depth: number
  fanout?: number
  tiers?: 'full' | 'mixed'
}): FleetPlan {
  const n = opts.devices,
    depth = opts.depth
  if (!Number.isInteger(n) || n < 1)
    throw new KinError('USAGE', `--devices must be a whole number of at least 1, got ${n}`)
  if (!Number.isInteger(depth) || depth < 1 || depth > MAX_DEPTH)
    throw new KinError('USAGE', `--depth must be 1..${MAX_DEPTH}, got ${depth}`)
  const fanout = opts.fanout ?? fanoutFor(n, depth)
  if (!Number.isInteger(fanout) || fanout < 1 || fanout > MAX_FANOUT)
    throw new KinError('USAGE', `--fanout must be 1..${MAX_FANOUT}, got ${fanout}`)
  if (capacity(depth, fanout) < n) {
    throw new KinError(
      'USAGE',
      `${n} devices do not fit under L0 in depth ${depth} with fanout ${fanout} (at most ${capacity(depth, fanout)}); raise --fanout to ${fanoutFor(n, depth)} or --depth`,
    )
  }
  const depths = [0],
    labels = ['L0'],
    perLevel = new Map<number, number>()
  for (let i = 1; i <= n; i++) {
    const d = depths[Math.floor((i - 1) / fanout)]! + 1
    depths.push(d)
    const k = (perLevel.get(d) ?? 0) + 1
    perLevel.set(d, k)
    labels.push(`L${d}.${k}`)
  }
  const hasChildren = (i: number) => i * fanout + 1 <= n
  const hasInnerChild = (i: number) => hasChildren(i * fanout + 1)
  const devices: PlannedDevice[] = []
  const tiers = opts.tiers ?? 'full'
  let leaves = 0
  for (let i = 1; i <= n; i++) {
    const parent = labels[Math.floor((i - 1) / fanout)]!
    if (hasChildren(i)) {
      const role: RoleName = hasInnerChild(i) ? 'admin' : 'member'
      devices.push({
        label: labels[i]!,
        parent,
        depth: depths[i]!,
        role,
        kind: role === 'admin' ? 'laptop' : 'phone',
        name: `${role} ${labels[i]}`,
        inner: true,
        tier: tierOf(role, tiers),
      })
    } else {
      leaves++
      const guest = leaves % 10 === 0
      const kind = guest ? 'phone' : LEAF_KINDS[leaves % LEAF_KINDS.length]!
      devices.push({
        label: labels[i]!,
        parent,
        depth: depths[i]!,
        role: guest ? 'guest' : 'device',
        kind,
        name: `${guest ? 'guest phone' : kind} ${labels[i]}`,
        inner: false,
        tier: tierOf(guest ? 'guest' : 'device', tiers),
      })
    }
  }
  return { devices, depth: Math.max(...depths), fanout }
}
