/** @module The access decision on the device being asked: chain → binding → lineage → policy, one recipe, one coded answer. */
import { verifyBindingStage } from './binding-stage.ts'
import { verifyChainStage } from './chain-stage.ts'
import { decisionOfError } from './decision.ts'
import { verifyLineageStage, type LineagePath } from './lineage-stage.ts'
import { verifyPolicyStage } from './policy-stage.ts'
import type { AccessRequest, Decision, DecisionContext, DecidingDevice, PeerCertificate } from './types.ts'

/**
 * What differs between the decisions a device takes: whether the policy stage runs (an access decision) or the
 * recipe stops after lineage (the server identity check, docs in access/session.ts), and how an allow reads.
 */
export interface DecisionRecipe {
  /** Run stage 4 (policy); without it the recipe is stages 1–3. */
  policy: boolean
}

/** Stages 1–4: the access decision. */
export const ACCESS_RECIPE: DecisionRecipe = { policy: true }
/** Stages 1–3: who the peer is, not what it may do (the server identity check). */
export const IDENTITY_RECIPE: DecisionRecipe = { policy: false }

/**
 * The one recipe of every decision (design, "Access decision" steps 1–4 and 6): chain, binding, lineage and, when
 * `recipe.policy`, policy. Never throws for a refusal: a deny carries the code of the stage that refused, the path
 * once lineage was walked, and the `retry`/`missing` hints of its error (DESIGN.md "Access decision" step 5 is the caller's: retry once).
 */
export function decideWith<C extends PeerCertificate>(
  request: AccessRequest<C>,
  context: DecisionContext<C>,
  recipe: DecisionRecipe,
): Decision {
  const { action } = request
  let peer: string | undefined, lineage: LineagePath | undefined
  try {
    const chain = verifyChainStage(request, context)
    peer = chain.cn
    const binding = verifyBindingStage(chain, context)
    lineage = verifyLineageStage(chain, binding, context)
    const via = lineage.path.join(' → ')
    let reason = `${peer} (${binding.role}) is the fleet device it claims to be: chain, ledger binding and lineage via ${via}`
    if (recipe.policy) {
      const verdict = verifyPolicyStage(binding, lineage, action, context)
      reason = `${peer} (${binding.role}) may "${action}" via ${via} (${lineage.hops} hops; ${verdict.source} policy)`
    }
    const time = context.now
    return {
      allow: true,
      code: 'ALLOW',
      reason,
      ...onPath(lineage),
      peer,
      action,
      time,
      retry: false,
      missing: undefined,
    }
  } catch (e) {
    const denied = decisionOfError(e, action, context.now, peer)
    return lineage === undefined ? denied : { ...denied, ...onPath(lineage) }
  }
}

function onPath(l: LineagePath): Pick<Decision, 'path' | 'commonAncestor' | 'hops'> {
  return { path: l.path, commonAncestor: l.commonAncestor, hops: l.hops }
}

/**
 * Decides whether the peer presenting `request.certificate` may do `request.action` on this device (DESIGN.md
 * "Access decision" steps 1–4 and 6). The caller has already checked proof of possession (TLS handshake or a
 * signed challenge). Never throws for a refusal: every deny carries its own code, and `retry` tells the caller
 * that a merge with the miner or the peer's proof bundle could change the answer (DESIGN.md "Access decision" step 5: retry once).
 */
export function decide<C extends PeerCertificate>(request: AccessRequest<C>, context: DecisionContext<C>): Decision {
  return decideWith(request, context, ACCESS_RECIPE)
}

/**
 * The decision as a device takes it from certificate bytes: parsed by the device's own reader (a parse failure is a
 * deny with its code, CERT_PARSE), then the recipe on `ledger` at `now`. kin-core, the Node session and the pure
 * fleet all decide through here; what differs (reader, chain verifier, caches, root pinning) is the device's.
 */
export function decideAs<C extends PeerCertificate>(
  device: DecidingDevice<C>,
  certificate: Uint8Array | C,
  action: string,
  ledger: DecisionContext<C>['ledger'],
  now: number,
  recipe: DecisionRecipe = ACCESS_RECIPE,
): Decision {
  let parsed: C
  try {
    parsed = certificate instanceof Uint8Array ? device.parse(certificate) : certificate
  } catch (e) {
    return decisionOfError(e, action, now)
  }
  const { parse: _parse, ...context } = device
  return decideWith({ certificate: parsed, action }, { ...context, ledger, now }, recipe)
}

/** True when the decision denied only for want of a proof the ledger lacks; `decision.missing` names the CN. */
export function isMissingProof(decision: Decision): boolean {
  return decision.code === 'ACCESS_MISSING_PROOF'
}
