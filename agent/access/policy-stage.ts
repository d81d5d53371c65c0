/** @module Stage 4 of an access decision: hops, anchors, role and action, time window, ledger freshness. */
import type { Binding } from '../ledger/types.ts'
import { PolicyError } from './errors.ts'
import type { LineagePath } from './lineage-stage.ts'
import { inWindow, isSensitiveAction, policyLayers, policyLimits, rulesForAction } from './policy.ts'
import type { DecisionContext } from './types.ts'

/** Which policy layer allowed the action. */
export interface PolicyVerdict {
  source: string
}

/**
 * Applies the policy layers (see policy.ts for how they combine) to a peer whose identity and lineage are proven.
 * Throws PolicyError: POLICY_HOPS, POLICY_ANCHOR, POLICY_ACTION (no rule for the action, or the peer's role may
 * do other things here but not this), POLICY_ROLE (the deciding layer grants this action to other roles only),
 * POLICY_WINDOW, POLICY_STALE_LEDGER.
 */
export function verifyPolicyStage(
  peer: Binding,
  lineage: LineagePath,
  action: string,
  context: Pick<DecisionContext, 'ledger' | 'self' | 'now' | 'localPolicy' | 'lastHeadTime'>,
): PolicyVerdict {
  const { now } = context
  const layers = policyLayers(context.ledger, context.self, context.localPolicy)
  const limits = policyLimits(layers)
  if (lineage.hops > limits.maxHops) {
    throw new PolicyError(
      'POLICY_HOPS',
      `${peer.cn} is ${lineage.hops} hops away through ${lineage.commonAncestor}; at most ${limits.maxHops} are allowed`,
    )
  }
  if (limits.anchors.length > 0 && !limits.anchors.some(a => lineage.peerLineage.includes(a))) {
    throw new PolicyError('POLICY_ANCHOR', `${peer.cn} is not under any trusted anchor (${limits.anchors.join(', ')})`)
  }
  const found = rulesForAction(layers, action)
  if (found === undefined) throw new PolicyError('POLICY_ACTION', `no policy rule allows action "${action}"`)
  const forRole = found.rules.filter(r => r.roles.includes(peer.role))
  if (forRole.length === 0) {
    const roleKnown = found.layer.rules.some(r => r.roles.includes(peer.role))
    if (roleKnown)
      throw new PolicyError(
        'POLICY_ACTION',
        `role ${peer.role} may not "${action}" under the ${found.layer.source} policy`,
      )
    throw new PolicyError(
      'POLICY_ROLE',
      `"${action}" is granted to ${[...new Set(found.rules.flatMap(r => r.roles))].join(', ')} only (${found.layer.source}), not to role ${peer.role}`,
    )
  }
  if (!forRole.some(r => inWindow(r, now))) {
    const windows = forRole.map(r => `${r.from}-${r.to}`).join(', ')
    throw new PolicyError(
      'POLICY_WINDOW',
      `"${action}" is allowed to role ${peer.role} only within UTC seconds-of-day ${windows} (${found.layer.source})`,
    )
  }
  if (isSensitiveAction(action) && limits.maxHeadAge > 0) {
    const age = context.lastHeadTime === undefined ? undefined : now - context.lastHeadTime
    if (age === undefined || age > limits.maxHeadAge) {
      throw new PolicyError(
        'POLICY_STALE_LEDGER',
        `"${action}" needs a block head at most ${limits.maxHeadAge} s old; ${age === undefined ? 'none was verified' : `the last is ${age} s old`}; sync with the miner`,
        { detail: { retry: true } },
      )
    }
  }
  return { source: found.layer.source }
}
