/** @module A device's access session: its decision context kept warm, peer certificates parsed once, the server identity check. */
import { DecodeError, type KinErrorCode } from '../errors.ts'
import { toHex } from '../codec/bytes.ts'
import type { LedgerState } from '../ledger/state.ts'
import { DeviceCertificate } from '../pki/certificate.ts'
import type { PkiProvider } from '../ports/pki.ts'
import type { Clock } from '../ports/platform.ts'
import { ChainCache } from './chain-cache.ts'
import { ACCESS_RECIPE, decideAs, decideWith, IDENTITY_RECIPE, type DecisionRecipe } from './decide.ts'
import { decisionOfError, refusalDecision } from './decision.ts'
import { fleetChainVerifier } from './fleet-chain.ts'
import type { AccessRequest, DecidingDevice, Decision, DecisionContext, LocalPolicy } from './types.ts'

export { decisionOfError, refusalDecision }

/*
 * THE SERVER IDENTITY CHECK (the spec; docs/PROTOCOL.md has no access section yet)
 * Authentication is mutual: before a requester sends its action, it checks the device it reached with the same
 * engine, under the reserved action name SERVE_ACTION ('serve'). That check is stages 1–3 of the access decision:
 *   1. chain: the certificate chains to the fleet root, is valid now, has leaf key usage and fleet names;
 *   2. binding: the ledger binds its CN to this key, a certified event recorded it, not revoked, not expired;
 *   3. lineage: the ledger walks the peer's lineage to genesis and meets this device's own lineage.
 * No policy layer applies to 'serve' (neither the default policy nor policy events): any fleet device, whatever its
 * role and however many hops away, may act as a server to any other. What the requester learns is only whether the
 * endpoint is the fleet device it claims to be; what the requester may do there is the server's decision.
 */

/** The action name of the server identity check: stages 1–3 only, allowed to every role (see above). */
export const SERVE_ACTION = 'serve'

/** What a requested action may look like: the characters of policy rule actions, at most 32 of them, never '*'. */
export const ACTION_PATTERN: RegExp = /^[a-z][a-z0-9._-]{0,31}$/

/** Default number of parsed peer certificates a session keeps. */
export const DEFAULT_CERTIFICATE_CACHE_SIZE = 64

/** The action name, checked; DecodeError DECODE_FIELD for anything a peer should not send (including the rule wildcard '*'). */
export function checkActionName(action: unknown): string {
  if (typeof action !== 'string' || !ACTION_PATTERN.test(action)) {
    const shown = typeof action === 'string' ? JSON.stringify(action.slice(0, 40)) : typeof action
    throw new DecodeError(
      'DECODE_FIELD',
      `"action" expected 1-32 characters a-z 0-9 . _ - starting with a letter, got ${shown}`,
    )
  }
  return action
}

/**
 * The server identity check (stages 1–3, see the note at the top of this file) as a decision with action 'serve'.
 * Like `decide`, never throws for a refusal: every deny carries the code of the stage that refused.
 */
export function verifyServerIdentity<C extends DeviceCertificate>(
  request: Omit<AccessRequest<C>, 'action'>,
  context: DecisionContext<C>,
): Decision {
  return decideWith({ ...request, action: SERVE_ACTION }, context, IDENTITY_RECIPE)
}

/** What a session needs from its device. */
export interface AccessSessionOptions {
  /** The deciding device's own CN. */
  self: string
  /** The fleet root certificate. */
  root: DeviceCertificate
  /** Verifies certificate signatures: node fast path or portable. */
  pki: PkiProvider
  /** Hashes certificates (a CryptoProvider's sha256). */
  sha256: (data: Uint8Array) => Uint8Array
  clock: Clock
  /** The verified ledger state to decide on; called before every decision, so a refreshed ledger is seen at once. */
  ledger: () => LedgerState
  localPolicy?: LocalPolicy
  /** Time of the last verified block head, when the device keeps them. */
  lastHeadTime?: () => number | undefined
  chainCacheSize?: number
  certificateCacheSize?: number
}

/**
 * One device's access decisions over time. Chains verified once stay in a ChainCache and parsed peer certificates
 * in a small map keyed by the SHA-256 of their DER, so a warm decision parses nothing and verifies no signature.
 */
export class AccessSession {
  readonly self: string
  readonly root: DeviceCertificate
  readonly chainCache: ChainCache
  readonly #options: AccessSessionOptions
  readonly #verifyChain: DecisionContext<DeviceCertificate>['verifyChain']
  readonly #certificates: Map<string, DeviceCertificate> = new Map()
  readonly #certificateCacheSize: number

  constructor(options: AccessSessionOptions) {
    this.self = options.self
    this.root = options.root
    this.#options = options
    this.chainCache = new ChainCache(options.chainCacheSize)
    this.#certificateCacheSize = options.certificateCacheSize ?? DEFAULT_CERTIFICATE_CACHE_SIZE
    this.#verifyChain = fleetChainVerifier(options.root, options.pki)
  }

  /** The current time on the session's clock, seconds. */
  now(): number {
    return this.#options.clock.now()
  }

  /** The parsed certificate of `der`, from the cache when this exact DER was seen; throws CERT_PARSE. */
  certificate(der: Uint8Array): DeviceCertificate {
    const key = toHex(this.#options.sha256(der))
    const hit = this.#certificates.get(key)
    if (hit !== undefined) return hit
    const parsed = new DeviceCertificate(der, { sha256: this.#options.sha256 })
    if (this.#certificates.size >= this.#certificateCacheSize)
      this.#certificates.delete(this.#certificates.keys().next().value!)
    this.#certificates.set(key, parsed)
    return parsed
  }

  /** This device as the decision recipe takes it, with the time of its newest verified head as it is now. */
  get #device(): DecidingDevice<DeviceCertificate> {
    const o = this.#options
    return {
      self: this.self,
      parse: der => this.certificate(der),
      verifyChain: this.#verifyChain,
      chainCache: this.chainCache,
      localPolicy: o.localPolicy,
      lastHeadTime: o.lastHeadTime?.(),
    }
  }

  /** The decision context at `now` (default: the clock), on the ledger state as it is at this moment. */
  context(now: number = this.now()): DecisionContext<DeviceCertificate> {
    const { parse: _parse, ...device } = this.#device
    return { ...device, ledger: this.#options.ledger(), now }
  }

  /** Whether the peer of `certificate` (DER or parsed) may do `action` here. The caller proved possession. Never throws. */
  decide(certificate: Uint8Array | DeviceCertificate, action: string): Decision {
    return this.#decide(certificate, action, ACCESS_RECIPE)
  }

  /** The server identity check (action 'serve', stages 1–3) on the certificate of the device this one reached. Never throws. */
  checkServer(certificate: Uint8Array | DeviceCertificate): Decision {
    return this.#decide(certificate, SERVE_ACTION, IDENTITY_RECIPE)
  }

  /** A deny at the session's clock for something that failed before the engine could run. */
  refuse(code: KinErrorCode, reason: string, action: string): Decision {
    return refusalDecision(code, reason, action, this.now())
  }

  // The peer's certificate first (parsed once per DER), then the ledger: one that cannot be read (a refresh that
  // threw) fails closed with the reason.
  #decide(certificate: Uint8Array | DeviceCertificate, action: string, recipe: DecisionRecipe): Decision {
    const now = this.now()
    let parsed: DeviceCertificate, ledger: LedgerState
    try {
      parsed = certificate instanceof DeviceCertificate ? certificate : this.certificate(certificate)
      ledger = this.#options.ledger()
    } catch (e) {
      return decisionOfError(e, action, now, undefined)
    }
    return decideAs(this.#device, parsed, action, ledger, now, recipe)
  }
}
