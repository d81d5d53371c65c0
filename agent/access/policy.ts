/** @module Trust policy: the default policy, the layers that narrow or widen it, and how they combine. */
import type { LedgerState } from '../ledger/state.ts'
import type { PolicyRule } from '../ledger/types.ts'
import type { LocalPolicy } from './types.ts'

/*
 * HOW POLICIES COMBINE (docs/PROTOCOL.md, "Trust policy")
 * Layers, highest precedence first:
 *   1. `policy` events whose subject is the deciding device itself;
 *   2. `policy` events with subtree = true whose subject is an ancestor of it, nearest ancestor first;
 *      within one subject, newest event first (ties: smaller event id first). An event counts only when its
 *      issuer is the deciding device or an ancestor of it, and the issuer's binding was valid when it signed;
 *   3. the device's local overrides (config.json);
 *   4. the default policy (DESIGN.md "Default trust policy").
 * Per action: the highest layer with any rule for the action (named exactly, or '*') decides alone. Within it,
 *   the peer is allowed when one of those rules lists the peer's role and the UTC time of day lies in its window.
 * Windows: [from, to) in seconds of the UTC day; from == to means all day; from > to wraps past midnight.
 * Limits: maxHops, maxHeadAge and anchors each come from the highest layer that sets them (maxHops > 0,
 *   maxHeadAge > 0, anchors non-empty); 0 and [] mean "inherit from below".
 * hops = edges on the path peer → common ancestor → deciding device. anchors: the peer must lie in the subtree of
 *   one anchor (then so does the common ancestor's side of the path). maxHeadAge: for sensitive actions (every
 *   action but 'view') the last verified block head must be at most that many seconds old.
 */

/** One layer of policy, normalised: anchors as CNs. */
export interface PolicyLayer {
  /** Where the layer comes from, for reasons and audit: 'default', 'local', or 'policy <id> by <cn> on <cn>'. */
  source: string
  maxHops: number
  maxHeadAge: number
  anchors: string[]
  rules: PolicyRule[]
}

/** Seconds in a UTC day: the range of rule windows. */
export const DAY_SECONDS = 86400

const DEFAULT_RULES: PolicyRule[] = [
  { action: '*', roles: ['admin', 'member'], from: 0, to: 0 },
  { action: 'unlock', roles: ['guest'], from: 0, to: 0 },
  { action: 'view', roles: ['guest', 'device'], from: 0, to: 0 },
]

/** The default trust policy: admin and member anything, guest unlock and view, device view; at most 8 hops. */
export const DEFAULT_POLICY: PolicyLayer = Object.freeze({
  source: 'default',
  maxHops: 8,
  maxHeadAge: 0,
  anchors: Object.freeze([]) as unknown as string[],
  rules: Object.freeze(
    DEFAULT_RULES.map(r => Object.freeze({ ...r, roles: Object.freeze(r.roles) })),
  ) as unknown as PolicyRule[],
})

/** Actions that need a fresh ledger when a policy sets maxHeadAge: all but 'view'. */
export function isSensitiveAction(action: string): boolean {
  return action !== 'view'
}

/** True when `now` lies in the rule's daily UTC window. */
export function inWindow(rule: PolicyRule, now: number): boolean {
  if (rule.from === rule.to) return true
  const t = ((now % DAY_SECONDS) + DAY_SECONDS) % DAY_SECONDS
  return rule.from < rule.to ? t >= rule.from && t < rule.to : t >= rule.from || t < rule.to
}

function ledgerLayers(ledger: LedgerState, self: string): PolicyLayer[] {
  const up = ledger.lineage(self)
  const out: PolicyLayer[] = []
  for (let distance = 0; distance < up.length; distance++) {
    const found = ledger.policies(up[distance]!).filter(rec => {
      if (distance > 0 && !rec.body.subtree) return false
      const issuer = ledger.bindingById(rec.issuerBindingId)
      return issuer !== undefined && up.includes(issuer.cn) && ledger.invalidAt(issuer, rec.time) === undefined
    })
    found.sort((a, b) => b.time - a.time || (a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0))
    for (const rec of found) {
      const by = ledger.bindingById(rec.issuerBindingId)!.cn
      out.push({
        source: `policy ${rec.eventId.slice(0, 16)} by ${by} on ${rec.subjectCn}`,
        maxHops: rec.body.maxHops,
        maxHeadAge: rec.body.maxHeadAge,
        anchors: rec.body.anchors.map(label => ledger.cnOfLabel(label)),
        rules: rec.body.rules,
      })
    }
  }
  return out
}

function localLayer(ledger: LedgerState, local: LocalPolicy): PolicyLayer {
  return {
    source: 'local',
    maxHops: local.maxHops ?? 0,
    maxHeadAge: local.maxHeadAge ?? 0,
    anchors: (local.anchors ?? []).map(a => (typeof a === 'string' ? a : ledger.cnOfLabel(a))),
    rules: local.rules ?? [],
  }
}

/** The layers that apply to decisions on `self`, highest precedence first, ending with the default policy. */
export function policyLayers(ledger: LedgerState, self: string, local?: LocalPolicy): PolicyLayer[] {
  const layers = ledgerLayers(ledger, self)
  if (local !== undefined) layers.push(localLayer(ledger, local))
  layers.push(DEFAULT_POLICY)
  return layers
}

/** The limits in force: each from the highest layer that sets it. */
export function policyLimits(layers: PolicyLayer[]): { maxHops: number; maxHeadAge: number; anchors: string[] } {
  return {
    maxHops: layers.find(l => l.maxHops > 0)?.maxHops ?? DEFAULT_POLICY.maxHops,
    maxHeadAge: layers.find(l => l.maxHeadAge > 0)?.maxHeadAge ?? 0,
    anchors: layers.find(l => l.anchors.length > 0)?.anchors ?? [],
  }
}

/** The layer that decides `action` and its rules for it; undefined when no layer has a rule for it. */
export function rulesForAction(
  layers: PolicyLayer[],
  action: string,
): { layer: PolicyLayer; rules: PolicyRule[] } | undefined {
  for (const layer of layers) {
    const rules = layer.rules.filter(r => r.action === action || r.action === '*')
    if (rules.length > 0) return { layer, rules }
  }
  return undefined
}
