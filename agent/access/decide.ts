/** @module The access decision on the device being asked: chain → binding → lineage → policy, one coded answer. */
import { KinError } from '../errors.ts'
import { verifyBindingStage } from './binding-stage.ts'
import { verifyChainStage } from './chain-stage.ts'
import { verifyLineageStage, type LineagePath } from './lineage-stage.ts'
import { verifyPolicyStage } from './policy-stage.ts'
import type { AccessRequest, Decision, DecisionContext, PeerCertificate } from './types.ts'

/** What the stages established before one of them refused. */
interface Trail {
  peer: string | undefined
  lineage: LineagePath | undefined
}

type Outcome = Pick<Decision, 'allow' | 'code' | 'reason' | 'retry' | 'missing'>

function decision(action: string, time: number, trail: Trail, outcome: Outcome): Decision {
  const l = trail.lineage
  return {
    allow: outcome.allow,
    code: outcome.code,
    reason: outcome.reason,
    path: l?.path ?? [],
    commonAncestor: l?.commonAncestor,
    hops: l?.hops,
    peer: trail.peer,
    action,
    time,
    retry: outcome.retry,
    missing: outcome.missing,
  }
}

// Fail closed: anything unexpected (a bug, a verifier that threw a bare Error) denies, and says so.
function denial(e: unknown): Outcome {
  if (!(e instanceof KinError))
    return {
      allow: false,
      code: 'INTERNAL',
      reason: `decision failed: ${(e as Error)?.message ?? String(e)}`,
      retry: false,
      missing: undefined,
    }
  const missing = e.detail?.['missing']
  return {
    allow: false,
    code: e.code,
    reason: e.message,
    retry: e.detail?.['retry'] === true,
    missing: typeof missing === 'string' ? missing : undefined,
  }
}

/**
 * Decides whether the peer presenting `request.certificate` may do `request.action` on this device (DESIGN.md
 * "Access decision" steps 1–4 and 6). The caller has already checked proof of possession (TLS handshake or a
 * signed challenge). Never throws for a refusal: every deny carries its own code, and `retry` tells the caller
 * that a merge with the miner or the peer's proof bundle could change the answer (DESIGN.md "Access decision" step 5: retry once).
 */
export function decide<C extends PeerCertificate>(request: AccessRequest<C>, context: DecisionContext<C>): Decision {
  const trail: Trail = { peer: undefined, lineage: undefined }
  try {
    const chain = verifyChainStage(request, context)
    trail.peer = chain.cn
    const peer = verifyBindingStage(chain, context)
    trail.lineage = verifyLineageStage(chain, peer, context)
    const verdict = verifyPolicyStage(peer, trail.lineage, request.action, context)
    const via = trail.lineage.path.join(' → ')
    return decision(request.action, context.now, trail, {
      allow: true,
      code: 'ALLOW',
      retry: false,
      missing: undefined,
      reason: `${peer.cn} (${peer.role}) may "${request.action}" via ${via} (${trail.lineage.hops} hops; ${verdict.source} policy)`,
    })
  } catch (e) {
    return decision(request.action, context.now, trail, denial(e))
  }
}

/** True when the decision denied only for want of a proof the ledger lacks; `decision.missing` names the CN. */
export function isMissingProof(decision: Decision): boolean {
  return decision.code === 'ACCESS_MISSING_PROOF'
}
