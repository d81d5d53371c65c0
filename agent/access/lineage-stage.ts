/** @module Stage 3 of an access decision: the peer's lineage, confirmed by the ledger, up to the common ancestor with oneself. */
import { VerificationError } from '../errors.ts'
import type { LedgerState } from '../ledger/state.ts'
import type { Binding } from '../ledger/types.ts'
import { missingProof } from './errors.ts'
import type { DecisionContext, VerifiedChain } from './types.ts'

/** Where the peer sits relative to the deciding device. */
export interface LineagePath {
  /** Peer up to the common ancestor, then down to the deciding device, e.g. [L3.4, L2.2, L1, L2.1, L3.3]. */
  path: string[]
  commonAncestor: string
  /** Edges on `path`. */
  hops: number
  /** The peer's CNs up to L0, peer first. */
  peerLineage: string[]
  /** The deciding device's CNs up to L0, itself first. */
  selfLineage: string[]
}

/**
 * Why the ledger cannot follow `binding` up to genesis: ACCESS_MISSING_PROOF (retryable) when it lacks an ancestor's
 * binding, ACCESS_LINEAGE_GAP when the lineage is broken otherwise (deeper than the ledger follows, or rooted
 * elsewhere than this fleet's genesis). Undefined when the lineage is whole.
 */
export function lineageRefusal(
  ledger: LedgerState,
  binding: Binding,
  up: Binding[] = ledger.lineageOf(binding),
): VerificationError | undefined {
  const top = up[up.length - 1]!
  if (top.parentBindingId === undefined && top.cn === ledger.genesis?.cn) return undefined
  if (top.parentBindingId !== undefined && ledger.bindingById(top.parentBindingId) === undefined) {
    return missingProof(top.parentCn ?? top.parentBindingId, `the ancestor of ${top.cn},`)
  }
  return new VerificationError(
    'ACCESS_LINEAGE_GAP',
    `the ledger cannot follow the lineage of ${binding.cn} from ${top.cn} to genesis`,
  )
}

function lineageToGenesis(ledger: LedgerState, binding: Binding): string[] {
  const up = ledger.lineageOf(binding)
  const refusal = lineageRefusal(ledger, binding, up)
  if (refusal !== undefined) throw refusal
  return up.map(b => b.cn)
}

/**
 * Walks the certificate's SAN parent marker and the ledger's authorize events up to L0, for the peer and for
 * oneself, and meets them at the lowest common ancestor. The ledger confirms each hop: the issuer of the peer's
 * authorize event must be the parent its certificate names (ACCESS_SAN_PARENT), and every hop above is an
 * authorize event already verified on ingest. Throws ACCESS_MISSING_PROOF when the ledger lacks a lineage.
 * Both lineages end at the one genesis, so they always meet; if not, the state is damaged (ACCESS_LINEAGE_GAP).
 */
export function verifyLineageStage(
  chain: VerifiedChain,
  peer: Binding,
  context: Pick<DecisionContext, 'ledger' | 'self'>,
): LineagePath {
  const { ledger, self } = context
  if (chain.parentCn !== peer.parentCn) {
    throw new VerificationError(
      'ACCESS_SAN_PARENT',
      `the certificate of ${chain.cn} names parent ${chain.parentCn ?? '(none)'}, but the ledger's authorization of it was issued by ${peer.parentCn ?? '(none: genesis)'}`,
    )
  }
  const peerLineage = lineageToGenesis(ledger, peer)
  const selfBinding = ledger.currentBinding(self)
  if (selfBinding === undefined) throw missingProof(self, 'this device')
  const selfLineage = lineageToGenesis(ledger, selfBinding)
  const up = peerLineage.findIndex(cn => selfLineage.includes(cn))
  if (up < 0)
    throw new VerificationError('ACCESS_LINEAGE_GAP', `${chain.cn} and ${self} share no ancestor in this ledger`)
  const commonAncestor = peerLineage[up]!
  const down = selfLineage.indexOf(commonAncestor)
  const path = peerLineage.slice(0, up + 1).concat(selfLineage.slice(0, down).reverse())
  return { path, commonAncestor, hops: path.length - 1, peerLineage, selfLineage }
}
