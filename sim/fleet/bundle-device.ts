/** @module A bundle-tier device of the simulated fleet: its own lineage's bundle, its newest verified head, and the bundles peers present. */
import { combineBundles } from '../../agent/core.ts'
import { decide } from '../../agent/access/decide.ts'
import { fleetChainVerifier } from '../../agent/access/fleet-chain.ts'
import { ChainCache } from '../../agent/access/chain-cache.ts'
import type { Decision } from '../../agent/access/types.ts'
import { KinError } from '../../agent/errors.ts'
import { fetchBundle } from '../../agent/gossip/bundle-request.ts'
import type { GossipClient } from '../../agent/gossip/client.ts'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { decodeBundle, verifyBundle, type BundleSignatures, type VerifiedBundle } from '../../agent/ledger/bundle.ts'
import { SignatureCache } from '../../agent/ledger/signature-cache.ts'
import type { BlockHead } from '../../agent/ledger/head.ts'
import type { LedgerState } from '../../agent/ledger/state.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import type { PkiProvider } from '../../agent/ports/pki.ts'
import type { Clock, CryptoProvider } from '../../agent/ports/platform.ts'

/*
 * DESIGN.md "Small devices: three tiers", the bundle row, as a lock, camera or sensor of the simulator runs it: no
 * replica and no follower. After enrollment it asks L0 once for its own bundle (agent/gossip/bundle-request.ts) and
 * verifies it on the bundle tier, pinning its lineage's granting signatures in a bounded SignatureCache. A refresh is
 * the same request naming the tree size it holds: the miner adds a consistency proof, so the new head is checked
 * against the old one and nothing already pinned is verified again. A decision verifies the peer's presented bundle
 * on the same tier and cache, combines it with the device's own (combineBundles, as kin-core does) and runs the
 * access stages on that — the code kin-core runs, here on Node's native crypto.
 */

/** Recent entries a simulated bundle device's signature cache keeps (its own lineage is pinned apart). */
export const BUNDLE_DEVICE_CACHE = 32

/** What a bundle device trusts from enrollment: the miner key and the genesis its home names, the fleet root. */
export interface BundleDeviceOptions {
  label: string
  cn: string
  fleet: string
  minerKey: Uint8Array
  genesisId: string
  root: DeviceCertificate
  crypto: CryptoProvider
  pki: PkiProvider
  clock: Clock
}

/** One bundle-tier device: boot and refresh over a short broker session, decisions on presented bundles. */
export class BundleDevice {
  readonly label: string
  readonly cn: string
  readonly cache = new SignatureCache(BUNDLE_DEVICE_CACHE)
  readonly #o: BundleDeviceOptions
  readonly #chains = new ChainCache(8)
  #own: { bytes: Uint8Array; verified: VerifiedBundle } | undefined
  #head: BlockHead | undefined
  /** What the last decision's bundle verification checked of its signatures (undefined when it stopped before). */
  lastSignatures: BundleSignatures | undefined
  /** Heads this device adopted (its boot's, refreshes', and newer ones peers presented). */
  headsAdopted = 0

  constructor(o: BundleDeviceOptions) {
    this.#o = o
    this.label = o.label
    this.cn = o.cn
  }

  /** The newest head this device verified (undefined before boot). */
  get head(): BlockHead | undefined {
    return this.#head
  }

  /** Bytes this device keeps of the ledger: its own bundle (events, proofs and head). */
  get heldBytes(): number {
    return this.#own?.bytes.length ?? 0
  }

  /** Its own bundle's verified state (its lineage only); undefined before boot. */
  get ownState(): LedgerState | undefined {
    return this.#own?.verified.state
  }

  /** Events its own bundle carries (its lineage, closed under links). */
  get heldEvents(): number {
    return this.#own?.verified.bundle.entries.length ?? 0
  }

  /**
   * Asks the miner for this device's own bundle on `client` (already logged in as this device) and adopts it: at
   * boot unanchored, afterwards anchored to the head it holds (the miner sends the consistency proof). Signatures
   * on the bundle tier, its own lineage pinned in the cache. Throws the request's or the verification's KinError.
   */
  async refresh(client: GossipClient, timeoutMs: number): Promise<void> {
    const topics = fleetTopics(this.#o.fleet)
    await client.subscribe([topics.syncResp(this.cn)])
    const fetched = await fetchBundle(client, {
      crypto: this.#o.crypto,
      fleet: this.#o.fleet,
      selfCn: this.cn,
      cn: this.cn,
      now: this.#o.clock.now(),
      timeoutMs,
      anchor: {
        minerKey: this.#o.minerKey,
        genesisId: this.#o.genesisId,
        ...(this.#head !== undefined ? { knownHead: this.#head } : {}),
      },
      verify: { tier: 'bundle', cache: this.cache, own: true },
    })
    this.#take(fetched.bytes, fetched.verified)
  }

  /** Adopts a bundle of its own got another way (a file, a measurement), verified here as `refresh` verifies it. */
  adoptOwn(bytes: Uint8Array): void {
    const anchor = {
      minerKey: this.#o.minerKey,
      genesisId: this.#o.genesisId,
      ...(this.#head !== undefined ? { knownHead: this.#head } : {}),
    }
    this.#take(
      bytes,
      verifyBundle(this.#o.crypto, bytes, anchor, this.#o.clock.now(), {
        tier: 'bundle',
        cache: this.cache,
        own: true,
      }),
    )
  }

  #take(bytes: Uint8Array, verified: VerifiedBundle): void {
    if (verified.state.currentBinding(this.cn) === undefined)
      throw new KinError('BUNDLE_INCOMPLETE', `the bundle for ${this.cn} holds no binding for it`)
    this.#own = { bytes, verified }
    this.#adopt(verified.head)
  }

  /** The bundle this device presents to a peer: its own, as the miner last sent it. */
  present(): Uint8Array {
    if (this.#own === undefined) throw new KinError('HEAD_MISSING', `${this.label} has no bundle of its own yet`)
    return this.#own.bytes
  }

  /**
   * Decides whether the peer holding certificate `peerDer` (as a TLS handshake hands it over) may `action` on this
   * device, from the bundle it presents. Cheapest refusal first: a bundle under an older head than this device holds
   * is refused (BUNDLE_STALE) before any signature is checked; then the bundle is verified on the bundle tier
   * against the head held (HEAD_*, BUNDLE_*, BAD_SIGNATURE, …), combined with the own bundle, and decided. A newer
   * consistent head is adopted. Never throws: a refusal is a deny with its code.
   */
  decide(peerDer: Uint8Array, peerBundle: Uint8Array, action: string): Decision {
    const now = this.#o.clock.now()
    const own = this.#own
    this.lastSignatures = undefined
    try {
      if (own === undefined || this.#head === undefined)
        throw new KinError('HEAD_MISSING', `${this.label} has not verified a head yet`)
      const presented = decodeBundle(peerBundle)
      if (presented.head.height < this.#head.height) {
        throw new KinError(
          'BUNDLE_STALE',
          `the peer's bundle is sealed under head ${presented.head.height}, older than head ${this.#head.height} this device holds: a revocation since then could be missing; present a fresh bundle`,
          { detail: { presented: presented.head.height, held: this.#head.height } },
        )
      }
      const peer = verifyBundle(
        this.#o.crypto,
        peerBundle,
        { minerKey: this.#o.minerKey, genesisId: this.#o.genesisId, knownHead: this.#head },
        now,
        { tier: 'bundle', cache: this.cache },
      )
      this.lastSignatures = peer.signatures
      if (peer.head.height > this.#head.height) this.#adopt(peer.head)
      const state = combineBundles([own.verified, peer])
      return decide(
        { certificate: DeviceCertificate.from(peerDer), action },
        {
          self: this.cn,
          ledger: state,
          now,
          lastHeadTime: this.#head.time,
          chainCache: this.#chains,
          verifyChain: fleetChainVerifier(this.#o.root, this.#o.pki),
        },
      )
    } catch (err) {
      const e = err instanceof KinError ? err : new KinError('INTERNAL', String(err))
      return {
        allow: false,
        code: e.code,
        reason: e.message,
        path: [],
        commonAncestor: undefined,
        hops: undefined,
        peer: undefined,
        action,
        time: now,
        retry: e.code === 'BUNDLE_STALE',
        missing: undefined,
      }
    }
  }

  #adopt(head: BlockHead): void {
    if (this.#head !== undefined && head.height <= this.#head.height) return
    this.#head = head
    this.headsAdopted++
  }
}
