/** @module Random access checks on a live fleet, each with the outcome the default trust policy predicts from the plan. */
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import type { Decision } from '../../agent/access/types.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import type { LiveDevice, LiveFleet } from '../live/fleet.ts'

/** One checked request. */
export interface FleetCheck {
  peer: string
  target: string
  action: string
  decision: Decision
  expected: 'allow' | 'deny'
  /** Why the plan predicts that outcome. */
  because: string
  ok: boolean
  /** Time the decision took, ms. */
  ms: number
  /** How it was asked: in process on the target's AccessSession, or over mutual TLS. */
  via: 'session' | 'tls'
  /**
   * Whose engine decided: the target, or (over TLS only) the requester, whose server identity check refused the
   * target before the request was sent — a revoked requester's frozen replica lacks devices enrolled after it fell.
   */
  decidedBy: 'target' | 'requester'
}

/** The actions a check draws from. */
export const CHECK_ACTIONS = ['view', 'unlock', 'configure'] as const

/** A small deterministic generator (mulberry32), so a run's checks can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Labels from `label` up to L0, in the tree as planned. */
function ancestry(parents: ReadonlyMap<string, string>, label: string): string[] {
  const up = [label]
  for (let p = parents.get(label); p !== undefined && p !== ''; p = parents.get(p)) up.push(p)
  return up
}

/**
 * What DESIGN.md's default trust policy says about `peer` asking `target` for `action`: a peer revoked itself or
 * under a revoked ancestor is refused; more than 8 hops through the common ancestor are refused; admin and
 * member may do anything, a guest unlock and view, a device view.
 */
export function predict(
  parents: ReadonlyMap<string, string>,
  roles: ReadonlyMap<string, string>,
  revoked: ReadonlySet<string>,
  peer: string,
  target: string,
  action: string,
): { expected: 'allow' | 'deny'; because: string } {
  const up = ancestry(parents, peer)
  const fallen = up.find(l => revoked.has(l))
  if (fallen !== undefined)
    return { expected: 'deny', because: fallen === peer ? 'peer revoked' : `ancestor ${fallen} revoked` }
  const down = ancestry(parents, target)
  const lca = up.find(l => down.includes(l))
  const hops = up.indexOf(lca!) + down.indexOf(lca!)
  if (hops > 8) return { expected: 'deny', because: `${hops} hops` }
  const role = roles.get(peer)
  if (role === 'admin' || role === 'member') return { expected: 'allow', because: `${role} may ${action}` }
  if (role === 'guest')
    return action === 'unlock' || action === 'view'
      ? { expected: 'allow', because: `guest may ${action}` }
      : { expected: 'deny', because: `guest may not ${action}` }
  return action === 'view'
    ? { expected: 'allow', because: 'device may view' }
    : { expected: 'deny', because: `device may not ${action}` }
}

/** Draws `count` (peer, target, action) triples: targets are devices in good standing, peers any enrolled device but L0 (bundle-tier ones when `bundleTier` names them). */
export function drawChecks(
  fleet: LiveFleet,
  count: number,
  random: () => number,
  bundleTier?: { has(label: string): boolean; standing(): LiveDevice[] },
): Array<{ peer: LiveDevice; target: LiveDevice; action: string }> {
  // A device without a replica takes part only as a bundle-tier device (it decides on presented bundles).
  const all = [...fleet.devices.values()].filter(
    d => d.label !== 'L0' && (d.replica !== undefined || bundleTier?.has(d.label) === true),
  )
  const standing = new Set([...fleet.standing(), ...(bundleTier?.standing() ?? [])].map(d => d.label))
  const targets = all.filter(d => standing.has(d.label))
  const out: Array<{ peer: LiveDevice; target: LiveDevice; action: string }> = []
  if (all.length < 2 || targets.length === 0) return out
  while (out.length < count) {
    const target = targets[Math.floor(random() * targets.length)]!
    const peer = all[Math.floor(random() * all.length)]!
    if (peer === target) continue
    out.push({ peer, target, action: CHECK_ACTIONS[Math.floor(random() * CHECK_ACTIONS.length)]! })
  }
  return out
}

/**
 * Runs checks in process: the target's AccessSession decides on the peer's certificate (DER, as a TLS
 * handshake would hand it over) with the target's own replica of the ledger. Possession of the key is what
 * TLS adds; `fleet.access` runs the same decision behind a real mutual-TLS handshake.
 */
export function decideInProcess(
  peer: LiveDevice,
  target: LiveDevice,
  action: string,
): { decision: Decision; ms: number } {
  const der = DeviceCertificate.from(peer.identity.certPem, { sha256: nodeCrypto.sha256 }).der
  const t0 = performance.now()
  const decision = target.session.decide(der, action)
  return { decision, ms: performance.now() - t0 }
}
