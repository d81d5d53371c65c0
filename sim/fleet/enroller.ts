/** @module Batched enrollment into a LiveFleet: many pairing codes at once through the broker, each parent inviting its children over one session. */
import { join } from 'node:path'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { nodeStorage } from '../../runtime/node/storage.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import type { Transport } from '../../agent/ports/transport.ts'
import { retryingLogins } from './login-retry.ts'
import type { TlsIdentity } from '../../runtime/node/tls-endpoint.ts'
import { AccessSession } from '../../agent/access/session.ts'
import { Home } from '../../runtime/home.ts'
import { writeDeviceHome } from '../../runtime/home-writers.ts'
import { KinError, isKinError } from '../../agent/errors.ts'
import type { GossipClient } from '../../agent/gossip/client.ts'
import { enrollThroughBroker, handOverFirstEvents, type EnrolledDevice } from '../../agent/gossip/enroll-session.ts'
import { LedgerFollower } from '../../agent/gossip/follower.ts'
import { completeInvite, openInvite, type Inviter } from '../../agent/gossip/invite-session.ts'
import { connectDevice } from '../../agent/gossip/login.ts'
import { openReplicaFiles, type OpenReplica } from '../../agent/gossip/replica-files.ts'
import { verifiedIn } from '../../agent/ledger/precheck.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import type { TlsKeyPair } from '../../agent/ports/pki.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import type { LiveDevice, LiveFleet } from '../live/fleet.ts'
import type { PlannedDevice } from './plan.ts'

/** Where one enrollment's time went, ms. */
export interface EnrollTiming {
  label: string
  /** Waiting for a slot under the concurrency bound. */
  queuedMs: number
  /** The parent registers the invite with L0 (signed, confirmed). */
  inviteMs: number
  /** The child's pairing session: request, authorization, CSR, certificate, lineage. */
  pairingMs: number
  /** Writing the home (keys, certificate, ledger file with fsync). */
  homeMs: number
  /** First session with the new certificate: submit authorize + certified; until L0 holds the certified event. */
  submitMs: number
  /** Opening the replica and starting the follower. */
  followMs: number
  totalMs: number
}

/** What followers of the batch report, and enrollments tried again. */
export interface FollowerCounters {
  heads: Map<string, number>
  alarms: Array<{ label: string; code: string; message: string }>
  errors: Map<string, number>
  /** Enrollments begun again with a new code after a lost connection or a timeout, by the code that ended them; logins tried again after a close before CONNACK, as LOGIN_CLOSED_BEFORE_CONNACK. */
  retries: Map<string, number>
}

/** Attempts per device: a lost session or a step that timed out is tried again, as a person would re-run `kin enroll`. */
export const ENROLL_ATTEMPTS = 3

/** Failures of the transport or of time, not refusals: an enrollment ended by one of these may be begun again. */
const RETRYABLE = new Set(['BROKER_CLOSED', 'BROKER_TIMEOUT', 'BROKER_UNREACHABLE', 'PAIR_TIMEOUT'])

/** Options of an Enroller. */
export interface EnrollerOptions {
  /** Enrollments in flight at once. */
  concurrency: number
  /** How long a guest's authorization holds, seconds. */
  guestValidSeconds?: number
  stepTimeoutMs?: number
  /** The transport under the enrollment's logins (default the mqtt.js one; tests put a broker stand-in's in front). */
  transport?: Transport
  /** Takes the planned bundle-tier devices once enrolled (sim/fleet/bundle-tier.ts); without it every device follows the ledger. */
  bundle?: BundleEnrollment
}

/** What becomes of an enrolled bundle-tier device instead of a replica and a follower. */
export interface BundleEnrollment {
  enroll(plan: PlannedDevice, enrolled: EnrolledDevice, identity: TlsIdentity, dir: string): Promise<LiveDevice>
}

const STEP_MS = 60_000

/** A bounded pool of slots: at most `size` holders at once, served in arrival order. */
class Slots {
  #free: number
  readonly #waiting: Array<() => void> = []
  constructor(size: number) {
    this.#free = size
  }
  async take(): Promise<void> {
    if (this.#free > 0) {
      this.#free--
      return
    }
    await new Promise<void>(resolve => this.#waiting.push(resolve))
  }
  give(): void {
    const next = this.#waiting.shift()
    if (next !== undefined) next()
    else this.#free++
  }
}

/**
 * Enrolls planned devices into a LiveFleet the way LiveFleet.enroll does (openInvite, completeInvite,
 * enrollThroughBroker, a home on disk, submission, a LedgerFollower), but many at once: a layer at a time,
 * each parent pausing its follower once and inviting all its children over one session (L0 over one session
 * for all of layer 1), at most `concurrency` enrollments in flight. Keys come from the caller (a pool).
 */
export class Enroller {
  readonly fleet: LiveFleet
  readonly counters: FollowerCounters = { heads: new Map(), alarms: [], errors: new Map(), retries: new Map() }
  /** Ids of every event a new device handed the miner (its authorize and certified events). */
  readonly submitted: Set<string> = new Set()
  /** Kind of each enrolled device, by label. */
  readonly kinds: Map<string, string> = new Map()
  readonly #o: Required<Omit<EnrollerOptions, 'bundle' | 'transport'>>
  readonly #bundle: BundleEnrollment | undefined
  readonly #slots: Slots
  /** Every login of the enrollment: one the broker closed before CONNACK under load is tried again (login-retry.ts). */
  readonly #transport: Transport
  #l0Client: Promise<GossipClient> | undefined

  constructor(fleet: LiveFleet, options: EnrollerOptions) {
    this.fleet = fleet
    const { bundle, transport: _transport, ...rest } = options
    this.#o = { guestValidSeconds: 86400, stepTimeoutMs: STEP_MS, ...rest }
    this.#bundle = bundle
    this.#slots = new Slots(Math.max(1, options.concurrency))
    this.#transport = retryingLogins(options.transport ?? nodeTransport, {
      onRetry: (attempt, err, login) => {
        const code = 'LOGIN_CLOSED_BEFORE_CONNACK'
        this.counters.retries.set(code, (this.counters.retries.get(code) ?? 0) + 1)
        fleet.log({
          source: login.clientId,
          event: 'login.retry',
          code: (err as KinError).code,
          message: (err as KinError).message,
          attempt,
        })
      },
    })
  }

  /** A follower for `label` that counts heads, alarms and errors in `counters`. */
  follow(label: string, cn: string, identity: TlsIdentity, replica: OpenReplica): LedgerFollower {
    const f = this.fleet,
      c = this.counters
    return new LedgerFollower({
      transport: this.#transport,
      login: { url: f.url, cn, ...identity, l0Cn: f.l0.cn },
      fleet: f.l0.fleet,
      replica: replica.replica,
      clock: f.clock,
      onHead: () => {
        c.heads.set(label, (c.heads.get(label) ?? 0) + 1)
      },
      onAlarm: a => {
        c.alarms.push({ label, code: a.code, message: a.message })
        f.log({ source: label, event: 'alarm', code: a.code, message: a.message })
      },
      onError: e => {
        c.errors.set(e.code, (c.errors.get(e.code) ?? 0) + 1)
      },
    })
  }

  /** Stops a device's follower (its CN's one broker session is needed for something else, or a partition). */
  async pause(d: LiveDevice): Promise<void> {
    await d.follower?.close()
    d.follower = undefined
  }

  /** Starts a new follower on the device's replica. */
  resume(d: LiveDevice): void {
    if (d.replica === undefined || d.follower !== undefined) return
    d.follower = this.follow(d.label, d.cn, d.identity, d.replica)
    d.follower.start()
  }

  /** Ends L0's inviting session (before L0 restarts, and at the end). */
  async closeL0Session(): Promise<void> {
    const c = this.#l0Client
    this.#l0Client = undefined
    if (c !== undefined) await (await c.catch(() => undefined))?.close().catch(() => undefined)
  }

  #l0Session(): Promise<GossipClient> {
    if (this.#l0Client === undefined) {
      const f = this.fleet,
        id = f.device('L0').identity
      this.#l0Client = connectDevice(
        this.#transport,
        { url: f.url, cn: f.l0.cn, ...id, l0Cn: f.l0.cn },
        { timeoutMs: this.#o.stepTimeoutMs, reconnect: true },
      )
      this.#l0Client.catch(() => {
        this.#l0Client = undefined
      })
    }
    return this.#l0Client
  }

  /**
   * Enrolls `planned` (parents before children; a parent is either enrolled already or earlier in the list),
   * one layer after the other. `keys[i]` is the TLS key of `planned[i]`. Rejects with the first failure.
   */
  async enroll(
    planned: readonly PlannedDevice[],
    keys: readonly TlsKeyPair[],
    onEnrolled?: (t: EnrollTiming) => void,
  ): Promise<EnrollTiming[]> {
    if (keys.length < planned.length)
      throw new KinError('BAD_ARGUMENT', `${planned.length} devices but ${keys.length} keys`)
    const timings: EnrollTiming[] = []
    const layers = new Map<number, number[]>()
    planned.forEach((p, i) => {
      const l = layers.get(p.depth) ?? []
      l.push(i)
      layers.set(p.depth, l)
    })
    for (const depth of [...layers.keys()].sort((a, b) => a - b)) {
      const byParent = new Map<string, number[]>()
      for (const i of layers.get(depth)!) {
        const g = byParent.get(planned[i]!.parent) ?? []
        g.push(i)
        byParent.set(planned[i]!.parent, g)
      }
      await Promise.all(
        [...byParent].map(([parent, group]) =>
          this.#enrollChildren(
            parent,
            group.map(i => ({ plan: planned[i]!, key: keys[i]! })),
            t => {
              timings.push(t)
              onEnrolled?.(t)
            },
          ),
        ),
      )
    }
    return timings
  }

  async #enrollChildren(
    parentLabel: string,
    children: Array<{ plan: PlannedDevice; key: TlsKeyPair }>,
    done: (t: EnrollTiming) => void,
    attempt = 1,
  ): Promise<void> {
    const f = this.fleet
    const parent = f.device(parentLabel)
    const isL0 = parentLabel === 'L0'
    const again: Array<{ plan: PlannedDevice; key: TlsKeyPair }> = []
    if (!isL0) await this.pause(parent)
    try {
      const client = isL0
        ? await this.#l0Session()
        : await connectDevice(
            this.#transport,
            { url: f.url, cn: parent.cn, ...parent.identity, l0Cn: f.l0.cn },
            { timeoutMs: this.#o.stepTimeoutMs },
          )
      try {
        const inviter: Inviter = {
          cn: parent.cn,
          fleet: f.l0.fleet,
          l0Cn: f.l0.cn,
          ledgerSeed: parent.ledgerSeed,
          rootPem: parent.identity.rootPem,
          ledger: isL0 ? f.l0.ledger.ledger : parent.replica!.ledger.ledger,
        }
        const keep = async (e: EncodedEvent) => {
          if (!isL0) await parent.replica!.replica.appendLocal([e])
        }
        const results = await Promise.allSettled(
          children.map(c => this.#enrollOne(client, inviter, keep, c.plan, c.key).then(done)),
        )
        for (const [i, r] of results.entries()) {
          if (r.status === 'fulfilled') continue
          if (attempt >= ENROLL_ATTEMPTS || !isKinError(r.reason) || !RETRYABLE.has(r.reason.code)) throw r.reason
          this.counters.retries.set(r.reason.code, (this.counters.retries.get(r.reason.code) ?? 0) + 1)
          f.log({
            source: children[i]!.plan.label,
            event: 'enroll.retry',
            code: r.reason.code,
            message: r.reason.message,
            attempt,
          })
          again.push(children[i]!)
        }
      } finally {
        if (!isL0) await client.close()
      }
    } finally {
      if (!isL0) this.resume(parent)
    }
    if (again.length === 0) return
    // A new code and new keys: the failed attempt may have got as far as an authorize event for its key.
    if (isL0) await this.closeL0Session()
    const fresh = await Promise.all(again.map(async c => ({ plan: c.plan, key: await nodePki.generateTlsKeyPair() })))
    await this.#enrollChildren(parentLabel, fresh, done, attempt + 1)
  }

  async #enrollOne(
    client: GossipClient,
    inviter: Inviter,
    keep: (e: EncodedEvent) => Promise<void>,
    plan: PlannedDevice,
    tls: TlsKeyPair,
  ): Promise<EnrollTiming> {
    const f = this.fleet,
      o = this.#o
    const queued = performance.now()
    await this.#slots.take()
    try {
      const t0 = performance.now()
      const now = () => f.clock.now()
      const opened = await openInvite(
        nodeCrypto,
        client,
        inviter,
        { role: plan.role, name: plan.name, ttlSeconds: 600, guestValidSeconds: o.guestValidSeconds },
        { now: now(), timeoutMs: o.stepTimeoutMs },
      )
      const t1 = performance.now()
      const parentSide = completeInvite(nodeCrypto, nodePki, client, inviter, opened, {
        keep,
        now,
        stepTimeoutMs: o.stepTimeoutMs,
      })
      parentSide.catch(() => undefined)
      const ledger = nodeCrypto.ed25519KeyPair()
      const keys = {
        request: { spkiDer: tls.spkiDer, ledgerKey: ledger.publicKey, kind: plan.kind, name: plan.name },
        secrets: { tls, ledgerSeed: ledger.secretKey },
      }
      const enrolled = await enrollThroughBroker(nodeCrypto, nodePki, this.#transport, {
        code: opened.code,
        url: f.url,
        kind: plan.kind,
        name: plan.name,
        stepTimeoutMs: o.stepTimeoutMs,
        now,
        keys,
        verified: f.events.verified,
      })
      await parentSide
      const t2 = performance.now()
      const dir = join(f.dir, plan.label)
      await writeDeviceHome(new Home(dir), enrolled, f.url)
      const t3 = performance.now()
      const identity: TlsIdentity = {
        certPem: enrolled.certPem,
        keyPem: enrolled.secrets.tls.privateKeyPem,
        rootPem: enrolled.rootPem,
      }
      await handOverFirstEvents(this.#transport, enrolled, f.url, o.stepTimeoutMs)
      this.submitted.add(enrolled.authorize.idHex).add(enrolled.certified.idHex)
      this.kinds.set(plan.label, plan.kind)
      // The broker acknowledges before the miner writes: until L0 holds the certified event, L0 admits this
      // certificate for submitting only, and a follower's subscriptions would be refused.
      const deadline = Date.now() + o.stepTimeoutMs
      while (!f.l0.ledger.ledger.state.has(enrolled.certified.idHex)) {
        if (Date.now() > deadline)
          throw new KinError(
            'BROKER_TIMEOUT',
            `L0 did not record ${plan.label}'s certified event within ${o.stepTimeoutMs} ms`,
          )
        await new Promise(r => setTimeout(r, 5))
      }
      const t4 = performance.now()
      if (plan.tier === 'bundle' && this.#bundle !== undefined) {
        f.devices.set(plan.label, await this.#bundle.enroll(plan, enrolled, identity, dir))
        const t5 = performance.now()
        f.log({
          source: plan.label,
          event: 'enrolled',
          cn: enrolled.cn,
          parent: plan.parent,
          role: plan.role,
          tier: 'bundle',
        })
        return {
          label: plan.label,
          queuedMs: t0 - queued,
          inviteMs: t1 - t0,
          pairingMs: t2 - t1,
          homeMs: t3 - t2,
          submitMs: t4 - t3,
          followMs: t5 - t4,
          totalMs: t5 - t0,
        }
      }
      // The home's ledger file was written a moment ago from this verified ledger: its records are not verified twice.
      const replica = await openReplicaFiles(nodeCrypto, nodeStorage(dir), {
        verified: verifiedIn(enrolled.ledger.state),
        events: f.events,
      })
      const session2 = new AccessSession({
        self: enrolled.cn,
        root: DeviceCertificate.from(enrolled.rootPem),
        pki: nodePki,
        sha256: nodeCrypto.sha256,
        clock: f.clock,
        ledger: () => replica.ledger.ledger.state,
        lastHeadTime: () => replica.replica.head?.time ?? f.clock.now(),
      })
      const device: LiveDevice = {
        label: plan.label,
        cn: enrolled.cn,
        role: plan.role,
        name: plan.name,
        dir,
        identity,
        ledgerSeed: enrolled.secrets.ledgerSeed,
        replica,
        follower: undefined,
        session: session2,
        endpoint: undefined,
      }
      f.devices.set(plan.label, device)
      this.resume(device)
      const t5 = performance.now()
      f.log({ source: plan.label, event: 'enrolled', cn: enrolled.cn, parent: plan.parent, role: plan.role })
      return {
        label: plan.label,
        queuedMs: t0 - queued,
        inviteMs: t1 - t0,
        pairingMs: t2 - t1,
        homeMs: t3 - t2,
        submitMs: t4 - t3,
        followMs: t5 - t4,
        totalMs: t5 - t0,
      }
    } finally {
      this.#slots.give()
    }
  }
}
