/** @module The bundle tier of a simulated fleet: its devices' boot and refresh through L0, their decisions on presented bundles, and the figures per tier. */
import { AccessSession } from '../../agent/access/session.ts'
import type { Decision } from '../../agent/access/types.ts'
import { KinError } from '../../agent/errors.ts'
import type { EnrolledDevice } from '../../agent/gossip/enroll-session.ts'
import { connectDevice } from '../../agent/gossip/login.ts'
import { buildBundle, encodeBundle } from '../../agent/ledger/bundle.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import type { TlsIdentity } from '../../runtime/node/tls-endpoint.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { retryingLogins } from './login-retry.ts'
import type { LiveDevice, LiveFleet } from '../live/fleet.ts'
import { BundleDevice } from './bundle-device.ts'
import { decideInProcess, type FleetCheck } from './checks.ts'
import { HEAP_BYTES_PER_BUNDLE_DEVICE, HEAP_BYTES_PER_REPLICA_EVENT } from './footprint.ts'
import type { PlannedDevice } from './plan.ts'
import { quantile, round } from './stats.ts'

/** A bundle-tier device's short sessions: a login L0 closes before CONNACK under load is tried again (login-retry.ts). */
const LOGINS = retryingLogins(nodeTransport)

/** Figures of one tier at the end of a run. */
export interface TierFigures {
  devices: number
  /** Devices in good standing (not revoked, nor under a revoked ancestor). */
  standing: number
  /** Ledger events one device of the tier holds (median): the whole log, or its own bundle's lineage. */
  eventsHeld: number
  /** Bytes of ledger one device keeps (median): event bytes of the whole log, or its own bundle (events, proofs, head). */
  bytesHeld: number
  /** JavaScript heap one device's ledger takes, KB: measured per replica event for the full tier, per bundle device for the bundle tier. */
  heapKbPerDevice: number
  /** Decisions this tier's devices took as targets, and their latency, ms. */
  decisions: { count: number; p50Ms: number; p99Ms: number; maxMs: number; unexpected: number }
}

/** Both tiers, and how the bundle tier got and refreshed its heads. */
export interface TiersFigures {
  full: TierFigures
  bundle: TierFigures & {
    /** Boot (own bundle fetched and verified once after enrollment) and refresh (one bundle request from the held tree size), ms. */
    bootP50Ms: number
    refreshP50Ms: number
    refreshed: number
    /** L0's latest head when the refresh ended, and the oldest head a standing bundle device holds. */
    latestHeight: number
    oldestHeight: number
    /** Granting signatures a bundle-tier decision checked itself (median), and found in its cache. */
    verifiedPerDecision: number
    cachedPerDecision: number
  }
}

const STEP_MS = 60_000

/** The bundle-tier devices of a LiveFleet, by label. */
export class BundleTier {
  readonly fleet: LiveFleet
  readonly devices: Map<string, BundleDevice> = new Map()
  readonly bootMs: number[] = []
  readonly refreshMs: number[] = []
  readonly #signatures: Array<{ verified: number; cached: number }> = []
  readonly #identities = new Map<string, TlsIdentity>()
  readonly #timeoutMs: number
  #root: { pem: string; certificate: DeviceCertificate } | undefined

  constructor(fleet: LiveFleet, options: { stepTimeoutMs?: number } = {}) {
    this.fleet = fleet
    this.#timeoutMs = options.stepTimeoutMs ?? STEP_MS
  }

  /** Bundle-tier devices L0 still admits (LiveFleet.standing's rule: current binding, neither revoked nor expired). */
  standing(): LiveDevice[] {
    const f = this.fleet,
      state = f.l0.ledger.ledger.state,
      now = f.clock.now()
    return [...this.devices.keys()]
      .map(l => f.device(l))
      .filter(d => {
        const b = state.currentBinding(d.cn)
        return b !== undefined && state.invalidAt(b, now) === undefined
      })
  }

  /** Whether `label` is a bundle-tier device. */
  has(label: string): boolean {
    return this.devices.has(label)
  }

  /**
   * Takes a device just enrolled (its certified event in L0's log) as a bundle-tier device: it asks L0 for its own
   * bundle over one short session and verifies it (anchor: the miner key and genesis its enrollment verified), then
   * keeps no replica and follows nothing. The LiveDevice returned has an AccessSession over its own lineage only,
   * which is all it can decide on when a peer presents no bundle (ACCESS_MISSING_PROOF).
   */
  async enroll(plan: PlannedDevice, enrolled: EnrolledDevice, identity: TlsIdentity, dir: string): Promise<LiveDevice> {
    const f = this.fleet
    const state = enrolled.ledger.state
    const genesis = state.log[0]
    if (genesis === undefined || state.genesis === undefined)
      throw new KinError('NO_GENESIS', `${plan.label}'s enrollment holds no genesis`)
    // Every device of the fleet got the same root: parsed once, not once per device.
    const root =
      this.#root?.pem === enrolled.rootPem
        ? this.#root.certificate
        : DeviceCertificate.from(enrolled.rootPem, { sha256: nodeCrypto.sha256 })
    this.#root = { pem: enrolled.rootPem, certificate: root }
    const device = new BundleDevice({
      label: plan.label,
      cn: enrolled.cn,
      fleet: enrolled.fleet,
      minerKey: state.genesis.body.minerKey,
      genesisId: genesis.idHex,
      root,
      crypto: nodeCrypto,
      pki: nodePki,
      clock: f.clock,
    })
    const t0 = performance.now()
    await this.#withSession(device.cn, identity, client => device.refresh(client, this.#timeoutMs))
    this.bootMs.push(performance.now() - t0)
    this.devices.set(plan.label, device)
    this.#identities.set(plan.label, identity)
    const session = new AccessSession({
      self: enrolled.cn,
      root,
      pki: nodePki,
      sha256: nodeCrypto.sha256,
      clock: f.clock,
      ledger: () => device.ownState!,
      lastHeadTime: () => device.head?.time,
    })
    return {
      label: plan.label,
      cn: enrolled.cn,
      role: plan.role,
      name: plan.name,
      dir,
      identity,
      ledgerSeed: enrolled.secrets.ledgerSeed,
      replica: undefined,
      follower: undefined,
      session,
      endpoint: undefined,
    }
  }

  async #withSession<T>(
    cn: string,
    identity: TlsIdentity,
    run: (client: Awaited<ReturnType<typeof connectDevice>>) => Promise<T>,
  ): Promise<T> {
    const f = this.fleet
    const client = await connectDevice(
      LOGINS,
      { url: f.url, cn, ...identity, l0Cn: f.l0.cn },
      { timeoutMs: this.#timeoutMs },
    )
    try {
      return await run(client)
    } finally {
      await client.close().catch(() => undefined)
    }
  }

  /**
   * Refreshes the head of every bundle device named (one bundle request each from the tree size it holds, at most
   * `concurrency` at once). Resolves with the failures as sentences; `onDone` counts progress.
   */
  async refresh(labels: readonly string[], concurrency: number, onDone?: (done: number) => void): Promise<string[]> {
    const failures: string[] = []
    let next = 0,
      done = 0
    const worker = async () => {
      while (next < labels.length) {
        const label = labels[next++]!
        const device = this.devices.get(label)
        if (device === undefined) continue
        const t0 = performance.now()
        try {
          await this.#withSession(device.cn, this.#identities.get(label)!, client =>
            device.refresh(client, this.#timeoutMs),
          )
          this.refreshMs.push(performance.now() - t0)
        } catch (err) {
          failures.push(
            `${label} could not refresh its head: ${err instanceof KinError ? `${err.code}: ` : ''}${err instanceof Error ? err.message : String(err)}`,
          )
        }
        onDone?.(++done)
      }
    }
    await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, labels.length)) }, worker))
    return failures
  }

  /**
   * The bundle `peer` presents: a bundle device its own, as the miner last sent it; a full device one it builds from
   * its replica, with the consistency proof from `knownTreeSize` (the verifier's tree) when the sizes differ.
   */
  presented(peer: LiveDevice, knownTreeSize?: number): Uint8Array {
    const own = this.devices.get(peer.label)
    if (own !== undefined) return own.present()
    const source = peer.replica !== undefined ? peer.replica.replica : this.fleet.l0.miner.miner
    return encodeBundle(buildBundle(source, peer.cn, knownTreeSize !== undefined ? { knownTreeSize } : {}))
  }

  /**
   * One access check: a bundle-tier target decides on the bundle the peer presents (BundleDevice.decide); a
   * full-tier target on its own replica (decideInProcess). The time is the target's decision only.
   */
  decide(peer: LiveDevice, target: LiveDevice, action: string): { decision: Decision; ms: number } {
    const device = this.devices.get(target.label)
    if (device === undefined) return decideInProcess(peer, target, action)
    const der = DeviceCertificate.from(peer.identity.certPem, { sha256: nodeCrypto.sha256 }).der
    const bundle = this.presented(peer, device.head?.treeSize)
    const t0 = performance.now()
    const decision = device.decide(der, bundle, action)
    const ms = performance.now() - t0
    if (device.lastSignatures !== undefined)
      this.#signatures.push({ verified: device.lastSignatures.verified, cached: device.lastSignatures.cached })
    return { decision, ms }
  }

  /** The figures of both tiers: `checks` as run (target tier by label), L0's latest head. */
  figures(checks: readonly FleetCheck[]): TiersFigures {
    const f = this.fleet
    const l0 = f.l0.ledger.ledger
    const standing = new Set([...f.standing(), ...this.standing()].map(d => d.label))
    const all = [...f.devices.values()].filter(d => d.label !== 'L0')
    const full = all.filter(d => !this.devices.has(d.label)),
      bundle = [...this.devices.values()]
    const perTier = (isBundle: boolean) => {
      const cs = checks.filter(c => c.via === 'session' && this.devices.has(c.target) === isBundle)
      const lat = cs.map(c => c.ms)
      return {
        count: cs.length,
        p50Ms: round(quantile(lat, 0.5), 3) || 0,
        p99Ms: round(quantile(lat, 0.99), 3) || 0,
        maxMs: round(Math.max(0, ...lat), 3),
        unexpected: cs.filter(c => !c.ok).length,
      }
    }
    const eventBytes = l0.state.log.reduce((s, e) => s + e.bytes.length, 0)
    const latest = f.l0.miner.miner.latestHead()?.height ?? 0
    const standingBundle = bundle.filter(d => standing.has(d.label))
    return {
      full: {
        devices: full.length,
        standing: full.filter(d => standing.has(d.label)).length,
        eventsHeld: l0.size,
        bytesHeld: eventBytes,
        heapKbPerDevice: round((HEAP_BYTES_PER_REPLICA_EVENT * l0.size) / 1024, 0),
        decisions: perTier(false),
      },
      bundle: {
        devices: bundle.length,
        standing: standingBundle.length,
        eventsHeld:
          quantile(
            bundle.map(d => d.heldEvents),
            0.5,
          ) || 0,
        bytesHeld:
          quantile(
            bundle.map(d => d.heldBytes),
            0.5,
          ) || 0,
        heapKbPerDevice: round(HEAP_BYTES_PER_BUNDLE_DEVICE / 1024, 0),
        decisions: perTier(true),
        bootP50Ms: round(quantile(this.bootMs, 0.5), 1) || 0,
        refreshP50Ms: round(quantile(this.refreshMs, 0.5), 1) || 0,
        refreshed: this.refreshMs.length,
        latestHeight: latest,
        oldestHeight: Math.min(latest, ...standingBundle.map(d => d.head?.height ?? 0)),
        verifiedPerDecision:
          quantile(
            this.#signatures.map(s => s.verified),
            0.5,
          ) || 0,
        cachedPerDecision:
          quantile(
            this.#signatures.map(s => s.cached),
            0.5,
          ) || 0,
      },
    }
  }
}
