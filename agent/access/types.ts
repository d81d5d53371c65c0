/** @module The access decision's inputs and result: request, context, chain results, decision. */
import type { KinErrorCode } from '../errors.ts'
import type { LedgerState } from '../ledger/state.ts'
import type { PolicyRule } from '../ledger/types.ts'
import type { ChainInfo } from '../pki/chain.ts'
import type { ChainCache } from './chain-cache.ts'

/** What the engine reads from a peer certificate itself; `DeviceCertificate` (agent/pki) fits. */
export interface PeerCertificate {
  /** SHA-256 of the certificate DER: the cache key and what `certified` events record. */
  readonly certHash: Uint8Array
  /** Not valid before / after, seconds since the epoch. */
  readonly notBefore: number
  readonly notAfter: number
}

/** What an X.509 chain check proved about a peer certificate: agent/pki `verifyChain`'s result. */
export type VerifiedChain = ChainInfo

/**
 * Checks a peer certificate against the fleet root at `now` (signature, validity, key usage, names) and returns
 * what it proved; throws a coded error (CERT_CHAIN, CERT_EXPIRED, ...). The node fast path or the portable
 * path is plugged in here, with the root and provider already bound.
 */
export type ChainVerifier<C extends PeerCertificate = PeerCertificate> = (certificate: C, now: number) => VerifiedChain

/** Device-local policy overrides (config.json): the shape of a policy body, every field optional. */
export interface LocalPolicy {
  maxHops?: number
  maxHeadAge?: number
  /** Subtree roots: 10-byte labels, or CNs as text. */
  anchors?: Array<Uint8Array | string>
  rules?: PolicyRule[]
}

/** One access request: a peer whose possession of the certificate's key was already proven, and an action. */
export interface AccessRequest<C extends PeerCertificate = PeerCertificate> {
  certificate: C
  action: string
  /** A chain result verified earlier for this very certificate (e.g. by the TLS layer): skips the verifier. */
  chain?: VerifiedChain
}

/** Everything the deciding device brings to a decision. */
export interface DecisionContext<C extends PeerCertificate = PeerCertificate> {
  /** The deciding device's own CN. */
  self: string
  /** Its verified ledger state. */
  ledger: LedgerState
  verifyChain: ChainVerifier<C>
  /** Seconds since the epoch. */
  now: number
  /** Chain results by certificate hash, so warm decisions skip signature checks. */
  chainCache?: ChainCache
  localPolicy?: LocalPolicy
  /** Time (seconds) of the last block head this device verified; read for `maxHeadAge`. */
  lastHeadTime?: number
}

/**
 * The deciding device as the recipe takes it (access/decide.ts `decideAs`): its decision context without the ledger
 * and the time, and its own certificate reader (kin-core's strict DER reader, or agent/pki's on Node).
 */
export type DecidingDevice<C extends PeerCertificate = PeerCertificate> = Omit<DecisionContext<C>, 'ledger' | 'now'> & {
  /** Parses peer certificate DER; throws a coded error (CERT_PARSE, RSA_KEY_SIZE, ...). */
  parse: (der: Uint8Array) => C
}

/** 'ALLOW', or the code of the check that denied. */
export type DecisionCode = 'ALLOW' | KinErrorCode

/** The outcome of `decide`: allow or deny with a specific code, and the path it was judged on. */
export interface Decision {
  allow: boolean
  code: DecisionCode
  reason: string
  /** Peer up to the common ancestor, then down to the deciding device; [] when the lineage stage was not reached. */
  path: string[]
  commonAncestor: string | undefined
  /** Edges on `path`. */
  hops: number | undefined
  /** The peer's CN once the chain check named it. */
  peer: string | undefined
  action: string
  time: number
  /**
   * True when a fresher ledger or the peer's proof bundle could change the answer (ACCESS_MISSING_PROOF, and
   * lags such as an unseen certified or rekey event): the caller may merge or read the bundle and decide once more.
   */
  retry: boolean
  /** The CN whose ledger proof is missing (set with ACCESS_MISSING_PROOF). */
  missing: string | undefined
}

/** A decision as the requester sees it, over TLS or the inbox: JSON-ready, no undefined fields. */
export interface AccessAnswer {
  allow: boolean
  code: string
  reason: string
  path: string[]
  commonAncestor: string | null
  hops: number | null
  peer: string | null
  action: string
  time: number
}
