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

// The ledger's lineage must end at genesis; an ancestor it lacks is a proof the caller can fetch.
function lineageToGenesis(ledger: LedgerState, binding: Binding): string[] {
  const up = ledger.lineageOf(binding)
  const top = up[up.length - 1]!
  if (top.parentCn !== undefined || top.cn !== ledger.genesis?.cn) throw missingProof(top.parentCn ?? top.cn, 'the ancestor')
  return up.map(b => b.cn)
}

/**
 * Walks the certificate's SAN parent marker and the ledger's authorize events up to L0, for the peer and for
 * oneself, and meets them at the lowest common ancestor. The ledger confirms each hop: the issuer of the peer's
 * authorize event must be the parent its certificate names (ACCESS_SAN_PARENT), and every hop above is an
 * authorize event already verified on ingest. Throws ACCESS_MISSING_PROOF when the ledger lacks a lineage.
 */
export function verifyLineageStage(chain: VerifiedChain, peer: Binding, context: Pick<DecisionContext, 'ledger' | 'self'>): LineagePath {
  const { ledger, self } = context
  if (chain.parentCn !== peer.parentCn) {
    throw new VerificationError('ACCESS_SAN_PARENT', `the certificate of ${chain.cn} names parent ${chain.parentCn ?? '(none)'}, but the ledger's authorization of it was issued by ${peer.parentCn ?? '(none: genesis)'}`)
  }
  const peerLineage = lineageToGenesis(ledger, peer)
  const selfBinding = ledger.currentBinding(self)
  if (selfBinding === undefined) throw missingProof(self, 'this device')
  const selfLineage = lineageToGenesis(ledger, selfBinding)
  const up = peerLineage.findIndex(cn => selfLineage.includes(cn))
  // Both lineages end at the one genesis, so they always meet; -1 would mean two fleets in one ledger.
  if (up < 0) throw new VerificationError('ACCESS_LINEAGE_GAP', `${chain.cn} and ${self} share no ancestor in this ledger`)
  const commonAncestor = peerLineage[up]!
  const down = selfLineage.indexOf(commonAncestor)
  const path = peerLineage.slice(0, up + 1).concat(selfLineage.slice(0, down).reverse())
  return { path, commonAncestor, hops: path.length - 1, peerLineage, selfLineage }
}
