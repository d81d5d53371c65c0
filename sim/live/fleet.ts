/** @module A live fleet for the simulator: L0's real services on loopback, devices enrolled with pairing codes, following the ledger over MQTT. */
import { join } from 'node:path'
import type { L0Services } from '../../broker/l0.ts'
import type { TopicObserver } from '../../broker/hooks.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { nodeStorage } from '../../runtime/node/storage.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import {
  requestAccess,
  startAccessEndpoint,
  type AccessEndpoint,
  type TlsIdentity,
} from '../../runtime/node/tls-endpoint.ts'
import type { Transport, TransportSession } from '../../agent/ports/transport.ts'
import type { Clock } from '../../agent/ports/platform.ts'
import { AccessSession } from '../../agent/access/session.ts'
import type { Decision } from '../../agent/access/types.ts'
import { decisionOfAnswer } from '../../agent/access/decision.ts'
import { Home } from '../../runtime/home.ts'
import { KinError } from '../../agent/errors.ts'
import { FleetCa } from '../../agent/enroll/ca.ts'
import { acceptRekey, createEnrollCsr, recordCertificate } from '../../agent/enroll/child.ts'
import { rekeyChild } from '../../agent/enroll/parent.ts'
import { createEnrollRequest } from '../../agent/enroll/request.ts'
import type { GossipClient } from '../../agent/gossip/client.ts'
import { LedgerFollower, type AdoptedHead } from '../../agent/gossip/follower.ts'
import type { Inviter } from '../../agent/gossip/invite-session.ts'
import { connectDevice } from '../../agent/gossip/login.ts'
import { openReplicaFiles, type OpenReplica } from '../../agent/gossip/replica-files.ts'
import { submitEvents } from '../../agent/gossip/submit.ts'
import { verifiedIn } from '../../agent/ledger/precheck.ts'
import { signedRevoke } from '../../agent/ledger/revoke.ts'
import { SharedEvents } from '../../agent/ledger/shared-events.ts'
import type { LedgerState } from '../../agent/ledger/state.ts'
import type { EncodedEvent, RevokeBody, RoleName } from '../../agent/ledger/types.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { enrollIntoHome } from './enroll.ts'
import { initL0Home, LoopbackL0 } from './l0.ts'

/** The simulator's clock: real time plus an offset that the story moves forward. */
export interface SimClock extends Clock {
  advance(seconds: number): void
  /** Milliseconds on a monotonic scale that `advance` moves forward too (what L0's intake quotas refill by). */
  monotonicMs(): number
}

/** A clock starting now that `advance` moves forward. */
export function simClock(): SimClock {
  let offset = 0
  return {
    now: () => Math.floor(Date.now() / 1000) + offset,
    monotonicMs: () => performance.now() + offset * 1000,
    advance: s => {
      offset += s
    },
  }
}

/** One device of the live fleet: its home on disk, its identity, its ledger follower and its access endpoint. */
export interface LiveDevice {
  label: string
  cn: string
  role: RoleName
  name: string
  dir: string
  identity: TlsIdentity
  ledgerSeed: Uint8Array
  replica: OpenReplica | undefined
  follower: LedgerFollower | undefined
  session: AccessSession
  endpoint: AccessEndpoint | undefined
}

/**
 * A decision over mutual TLS and whose engine made it: `target` when the target answered; `requester` when the
 * requester's server identity check refused the target and sent nothing (the decision is then that check's, action
 * 'serve', with `missing` naming what the requester's ledger lacked).
 */
export interface AccessAnswered {
  decision: Decision
  decidedBy: 'target' | 'requester'
}

/** What the fleet reports as it runs. */
export type FleetLog = (record: Record<string, unknown>) => void

const STEP_MS = 30_000
const DAY = 86400

/** A live fleet in `dir`: every device has a real home there; L0 runs aedes, the CA and the miner in this process. */
export class LiveFleet {
  readonly dir: string
  readonly clock: SimClock
  readonly devices = new Map<string, LiveDevice>()
  readonly heads: Array<{ label: string; height: number; size: number }> = []
  /** L0's home on loopback: its services, port and restarts. */
  readonly loopback: LoopbackL0
  readonly l0Home: Home
  readonly url: string
  readonly log: FleetLog
  /** What L0's broker tells of every topic a session uses (kept across restartL0). */
  onTopic: TopicObserver | undefined
  /** L0's longest wait before sealing accepted events (undefined: the broker's default), kept across restartL0. */
  sealIntervalMs: number | undefined
  /** Decoded ledger events the devices' replicas share: one copy per event in this process, each still validated by every replica. */
  readonly events: SharedEvents = new SharedEvents()
  private l0Client: GossipClient | undefined
  /** Per label: the broker session its follower opened last, and who wants to hear of the next (see `onSession`). */
  private readonly followerSessions = new Map<string, TransportSession>()
  private readonly sessionListeners = new Map<string, Set<(session: TransportSession) => void>>()

  private constructor(dir: string, clock: SimClock, loopback: LoopbackL0, log: FleetLog) {
    this.dir = dir
    this.clock = clock
    this.loopback = loopback
    this.l0Home = new Home(join(dir, 'L0'))
    this.url = loopback.url
    this.log = log
  }

  /** L0's running services (new ones after restartL0). */
  get l0(): L0Services {
    return this.loopback.services
  }

  /** Creates L0's home in `dir/L0` (as `kin init` does) and starts L0's services on a free loopback port. */
  static async start(opts: {
    dir: string
    domain: string
    clock?: SimClock
    log?: FleetLog
    onTopic?: TopicObserver
    sealIntervalMs?: number
  }): Promise<LiveFleet> {
    const clock = opts.clock ?? simClock()
    const log = opts.log ?? (() => undefined)
    const home = new Home(join(opts.dir, 'L0'))
    const created = await initL0Home(home.dir, { domain: opts.domain, now: clock.now() })
    const l0 = await LoopbackL0.start({
      home: home.dir,
      now: () => clock.now(),
      // A minute of the story refills a submitter's budget as a minute of the day would.
      quota: { clock: () => clock.monotonicMs() },
      log: r => log({ source: 'L0', ...r }),
      onTopic: opts.onTopic,
      sealIntervalMs: opts.sealIntervalMs,
    })
    const fleet = new LiveFleet(opts.dir, clock, l0, log)
    fleet.onTopic = opts.onTopic
    fleet.sealIntervalMs = opts.sealIntervalMs
    fleet.devices.set(
      'L0',
      fleet.deviceRecord(
        'L0',
        home.dir,
        l0.services.cn,
        'admin',
        'home pc',
        created.ledgerSeed,
        () => fleet.l0.ledger.ledger.state,
      ),
    )
    return fleet
  }

  private deviceRecord(
    label: string,
    dir: string,
    cn: string,
    role: RoleName,
    name: string,
    ledgerSeed: Uint8Array,
    ledger: () => LedgerState,
    follower?: LedgerFollower,
  ): LiveDevice {
    const home = new Home(dir)
    const identity = { certPem: home.readText('cert'), keyPem: home.readText('tlsKey'), rootPem: home.readText('root') }
    const session = new AccessSession({
      self: cn,
      root: DeviceCertificate.from(identity.rootPem),
      pki: nodePki,
      sha256: nodeCrypto.sha256,
      clock: this.clock,
      ledger,
      lastHeadTime: () => follower?.lastHeadTime() ?? this.clock.now(),
    })
    return {
      label,
      cn,
      role,
      name,
      dir,
      identity,
      ledgerSeed,
      replica: undefined,
      follower,
      session,
      endpoint: undefined,
    }
  }

  /** The device called `label`. */
  device(label: string): LiveDevice {
    const d = this.devices.get(label)
    if (d === undefined) throw new KinError('BAD_ARGUMENT', `no device ${label} in this fleet`)
    return d
  }

  /** CN of a label. */
  cnOf(label: string): string {
    return this.device(label).cn
  }

  private async l0Session(): Promise<GossipClient> {
    if (this.l0Client === undefined) {
      const id = this.device('L0').identity
      this.l0Client = await connectDevice(
        nodeTransport,
        {
          url: this.url,
          cn: this.l0.cn,
          certPem: id.certPem,
          keyPem: id.keyPem,
          rootPem: id.rootPem,
          l0Cn: this.l0.cn,
        },
        { timeoutMs: STEP_MS, reconnect: true },
      )
    }
    return this.l0Client
  }

  /** Stops a device's follower so its CN's one MQTT session can serve something else (an invite); `resume` restarts it. */
  private async pause(d: LiveDevice): Promise<void> {
    await d.follower?.close()
  }

  private resume(d: LiveDevice): void {
    if (d.replica === undefined) return
    d.follower = this.follow(d.label, d.cn, d.identity, d.replica)
    d.follower.start()
  }

  /**
   * Calls `listener` with the broker session `label`'s ledger follower holds now (when it is connected) and with
   * each one the follower opens later (a reconnect, a resume, a rekey); returns a function that stops the calls.
   * The broker keeps one session per CN, so whatever else must reach the broker as this device (an inbox
   * challenge verifier, a requester) rides on the follower's session instead of pushing the follower off — as
   * `kin serve` does with openFollowingHome's `onSession`.
   */
  onSession(label: string, listener: (session: TransportSession) => void): () => void {
    this.device(label)
    let listeners = this.sessionListeners.get(label)
    if (listeners === undefined) this.sessionListeners.set(label, (listeners = new Set()))
    listeners.add(listener)
    const current = this.followerSessions.get(label)
    if (current?.connected === true) listener(current)
    return () => {
      listeners.delete(listener)
    }
  }

  private follow(label: string, cn: string, identity: TlsIdentity, replica: OpenReplica): LedgerFollower {
    // Tells `onSession` listeners of each session this follower opens.
    const transport: Transport = {
      connect: async options => {
        const session = await nodeTransport.connect(options)
        this.followerSessions.set(label, session)
        for (const listener of this.sessionListeners.get(label) ?? []) {
          try {
            listener(session)
          } catch {
            /* a listener's failure is not the follower's: it keeps its session */
          }
        }
        return session
      },
    }
    return new LedgerFollower({
      transport,
      login: { url: this.url, cn, ...identity, l0Cn: this.l0.cn },
      fleet: this.l0.fleet,
      replica: replica.replica,
      clock: this.clock,
      onHead: (h: AdoptedHead) => {
        this.heads.push({ label, height: h.head.height, size: h.head.treeSize })
      },
      onAlarm: a => this.log({ source: label, event: 'alarm', code: a.code, message: a.message }),
    })
  }

  /**
   * Enrolls `label` under `parentLabel` exactly as `kin invite` and `kin enroll` do: the parent registers an invite
   * with L0 and shows a code, the new device pairs with it through the broker, gets its certificate from L0's CA,
   * writes its home, submits its events, and starts following the ledger.
   */
  async enroll(
    label: string,
    parentLabel: string,
    info: { role: RoleName; kind: string; name: string; validSeconds?: number },
  ): Promise<LiveDevice> {
    const parent = this.device(parentLabel)
    const isL0 = parentLabel === 'L0'
    if (!isL0) await this.pause(parent)
    try {
      const client = isL0
        ? await this.l0Session()
        : await connectDevice(
            nodeTransport,
            { url: this.url, cn: parent.cn, ...parent.identity, l0Cn: this.l0.cn },
            { timeoutMs: STEP_MS },
          )
      try {
        const ledger = isL0 ? this.l0.ledger.ledger : parent.replica!.ledger.ledger
        const inviter: Inviter = {
          cn: parent.cn,
          fleet: this.l0.fleet,
          l0Cn: this.l0.cn,
          ledgerSeed: parent.ledgerSeed,
          ledger,
          rootPem: parent.identity.rootPem,
        }
        const { device: enrolled, dir } = await enrollIntoHome({
          client,
          inviter,
          url: this.url,
          homeOf: () => join(this.dir, label),
          role: info.role,
          kind: info.kind,
          name: info.name,
          guestValidSeconds: info.validSeconds ?? DAY,
          now: () => this.clock.now(),
          keep: async (e: EncodedEvent) => {
            if (!isL0) await parent.replica!.replica.appendLocal([e])
          },
          onInvite: opened =>
            this.log({
              source: parentLabel,
              event: 'invite',
              role: info.role,
              code: opened.code,
              inviteId: opened.inviteId,
            }),
          stepTimeoutMs: STEP_MS,
        })
        const replica = await openReplicaFiles(nodeCrypto, nodeStorage(dir), {
          verified: verifiedIn(enrolled.ledger.state),
          events: this.events,
        })
        const identity = {
          certPem: enrolled.certPem,
          keyPem: enrolled.secrets.tls.privateKeyPem,
          rootPem: enrolled.rootPem,
        }
        const follower = this.follow(label, enrolled.cn, identity, replica)
        const d = this.deviceRecord(
          label,
          dir,
          enrolled.cn,
          info.role,
          info.name,
          enrolled.secrets.ledgerSeed,
          () => replica.ledger.ledger.state,
          follower,
        )
        d.replica = replica
        this.devices.set(label, d)
        follower.start()
        this.log({ source: label, event: 'enrolled', cn: enrolled.cn, parent: parentLabel, role: info.role })
        return d
      } finally {
        if (!isL0) await client.close()
      }
    } finally {
      if (!isL0) this.resume(parent)
    }
  }

  /** Devices L0 still admits: a revoked or expired identity cannot log in, so it cannot follow the ledger. */
  standing(): LiveDevice[] {
    const state = this.l0.ledger.ledger.state
    return [...this.devices.values()].filter(d => {
      const b = state.currentBinding(d.cn)
      return d.replica !== undefined && b !== undefined && state.invalidAt(b, this.clock.now()) === undefined
    })
  }

  /** Waits until every device in good standing follows L0's latest head and holds all of L0's events. */
  async converge(timeoutMs = 30_000): Promise<{ ms: number; size: number }> {
    const started = Date.now()
    for (;;) {
      const size = this.l0.ledger.ledger.size
      const lagging = this.standing().filter(d => d.replica!.replica.coveredSize < size)
      if (lagging.length === 0 && size > 0) return { ms: Date.now() - started, size }
      if (Date.now() - started > timeoutMs) {
        throw new KinError(
          'BROKER_TIMEOUT',
          `devices ${lagging.map(d => d.label).join(', ')} did not reach L0's ${size} events within ${timeoutMs} ms`,
        )
      }
      await new Promise(r => setTimeout(r, 25))
    }
  }

  /** `by` revokes `target` (signed with by's ledger key), hands it to the miner, and waits until L0 holds it. */
  async revoke(
    byLabel: string,
    targetLabel: string,
    body: Omit<RevokeBody, 'effective'> & { effective?: number },
  ): Promise<EncodedEvent> {
    const by = this.device(byLabel)
    const state = by.replica?.ledger.ledger.state ?? this.l0.ledger.ledger.state
    const now = this.clock.now()
    const full = { reason: body.reason, subtree: body.subtree, effective: body.effective ?? now }
    const e = signedRevoke(nodeCrypto, state, by, this.cnOf(targetLabel), full, now)
    await this.submitAs(by, [e])
    return e
  }

  /** Hands `by`'s own signed events to the miner through its follower and waits until a head covers them; throws the refusal's code. */
  async submitAs(by: LiveDevice, events: EncodedEvent[]): Promise<void> {
    if (by.label === 'L0') {
      // L0 is the miner: its own events go straight into its log (as `kin revoke` on L0's home does while its broker runs).
      const result = await this.l0.miner.submit(
        events.map(e => e.bytes),
        this.clock.now(),
      )
      if (result.refused.length > 0)
        throw new KinError(result.refused[0]!.code as 'INTERNAL', result.refused[0]!.message)
      await this.l0.seal()
      return
    }
    if (by.follower === undefined) throw new KinError('ENROLL_STATE', `${by.label} does not follow the ledger`)
    const outcome = await by.follower.submit(events)
    if (outcome.refused.length > 0)
      throw new KinError(outcome.refused[0]!.code as 'INTERNAL', outcome.refused[0]!.message)
    await by.follower.waitCovered(
      events.map(e => e.idHex),
      STEP_MS,
    )
  }

  /**
   * The parent gives `child` new keys after a compromise: the child makes them, the parent signs the rekey and
   * hands it to the miner, L0's CA issues the certificate for the recorded rekey, the child records it.
   */
  async rekey(parentLabel: string, childLabel: string, notAfter?: number): Promise<void> {
    const parent = this.device(parentLabel),
      child = this.device(childLabel)
    const parentLedger = parent.replica?.ledger.ledger ?? this.l0.ledger.ledger
    const request = await createEnrollRequest(nodeCrypto, nodePki, { kind: 'phone', name: child.name })
    const rekey = rekeyChild(
      nodeCrypto,
      parentLedger,
      { cn: parent.cn, ledgerSeed: parent.ledgerSeed },
      child.cn,
      request.request,
      this.clock.now(),
      notAfter,
    )
    await this.submitAs(parent, [rekey])
    const accepted = acceptRekey(nodeCrypto, rekey.bytes, request.request, this.l0.fleet)
    const ca = new FleetCa({
      crypto: nodeCrypto,
      rootCertPem: this.l0.rootPem,
      rootKeyPem: this.l0Home.readText('caKey'),
      ledger: {
        ledger: this.l0.ledger.ledger,
        append: () => Promise.reject(new KinError('INTERNAL', "the miner writes L0's ledger")),
      },
    })
    const certificate = await ca.issueForRekey({
      rekeyId: rekey.idHex,
      csrPem: await createEnrollCsr(accepted, request.secrets),
      now: this.clock.now(),
    })
    // Recorded as L0's CA service records what it issues: the miner admits certified events for these only.
    this.l0.issued.record(certificate, this.clock.now())
    // The child is revoked, so L0 no longer admits its old keys: the parent hands it the rekey event, as it hands
    // a new device its authorize event; the child records its certificate, then logs in with its new keys.
    await child.follower?.close()
    await child.endpoint?.close()
    child.endpoint = undefined
    const childLedger = child.replica!.ledger.ledger
    // It also needs what it missed while L0 refused it (its parent's own rekey, say): L0's lineage, as at enrollment.
    const missed = this.l0.ledger.ledger.state.log.filter(e => !childLedger.state.has(e.idHex))
    if (missed.length > 0) await child.replica!.replica.appendLocal(missed)
    if (!childLedger.state.has(rekey.idHex))
      throw new KinError('ENROLL_STATE', `${childLabel} could not take the rekey into its ledger`)
    const recorded = recordCertificate(
      nodeCrypto,
      nodePki,
      childLedger,
      accepted,
      request.secrets,
      certificate.pem,
      child.identity.rootPem,
      this.clock.now(),
    )
    await child.replica!.replica.appendLocal([recorded.certified])
    const home = new Home(child.dir)
    home.writeSecret('tlsKey', request.secrets.tls.privateKeyPem)
    home.writePublic('cert', recorded.certificate.pem)
    home.writeLedgerKey(request.secrets.ledgerSeed)
    child.identity = { ...child.identity, certPem: recorded.certificate.pem, keyPem: request.secrets.tls.privateKeyPem }
    child.ledgerSeed = request.secrets.ledgerSeed
    // As after enrollment (docs/PAIRING.md step 7): the first session with the new certificate may only submit, and
    // hands L0 the certified event that restores full standing; then the device follows the ledger again.
    const session = await connectDevice(
      nodeTransport,
      { url: this.url, cn: child.cn, ...child.identity, l0Cn: this.l0.cn },
      { timeoutMs: STEP_MS },
    )
    try {
      await submitEvents(session, this.l0.fleet, child.cn, [recorded.certified])
    } finally {
      await session.close()
    }
    this.resume(child)
    await child.follower!.waitCovered([recorded.certified.idHex], STEP_MS)
    this.log({ source: childLabel, event: 'rekeyed', by: parentLabel })
  }

  /**
   * `peer` asks `target` for `action` over mutual TLS, as `kin access` asks `kin serve`: the peer checks the
   * target's identity first, the target decides on the peer's certificate with its own ledger.
   */
  async access(peerLabel: string, targetLabel: string, action: string): Promise<Decision> {
    return (await this.ask(peerLabel, targetLabel, action)).decision
  }

  /**
   * `access`, saying whose engine made the decision: the target's answer, or the requester's own server identity
   * check refusing the target before anything was sent (a requester whose replica lacks the target's lineage — a
   * revoked device that L0 no longer lets follow the ledger, say — fails closed on its side, and the target never
   * decides).
   */
  async ask(peerLabel: string, targetLabel: string, action: string): Promise<AccessAnswered> {
    const peer = this.device(peerLabel)
    return this.askAs(peer.identity, peer.session, targetLabel, action)
  }

  /** The access endpoint of `label` (mutual TLS on loopback), started on first use. */
  async endpoint(label: string): Promise<AccessEndpoint> {
    const target = this.device(label)
    target.endpoint ??= await startAccessEndpoint({
      ...target.identity,
      session: target.session,
      host: '127.0.0.1',
      port: 0,
    })
    return target.endpoint
  }

  /**
   * `access` with any TLS identity as the requester (the simulator's attacks present forged certificates): `checker`
   * runs the requester's server identity check on the target's certificate before the request is sent.
   */
  async accessAs(
    identity: TlsIdentity,
    checker: AccessSession,
    targetLabel: string,
    action: string,
  ): Promise<Decision> {
    return (await this.askAs(identity, checker, targetLabel, action)).decision
  }

  private async askAs(
    identity: TlsIdentity,
    checker: AccessSession,
    targetLabel: string,
    action: string,
  ): Promise<AccessAnswered> {
    const endpoint = await this.endpoint(targetLabel)
    const outcome = await requestAccess({
      ...identity,
      host: '127.0.0.1',
      port: endpoint.port,
      action,
      checkServer: der => checker.checkServer(der),
    })
    if (outcome.answer === undefined) return { decision: outcome.server, decidedBy: 'requester' }
    return { decision: decisionOfAnswer(outcome.answer), decidedBy: 'target' }
  }

  /** Stops L0 and starts it again on the same home and port (a crash and restart of the home PC). */
  async restartL0(): Promise<void> {
    await this.l0Client?.close()
    this.l0Client = undefined
    await this.loopback.restart({ changes: { onTopic: this.onTopic, sealIntervalMs: this.sealIntervalMs } })
  }

  /** Stops everything: endpoints, followers, replicas, L0. */
  async close(): Promise<void> {
    for (const d of this.devices.values()) {
      await d.endpoint?.close().catch(() => undefined)
      await d.follower?.close().catch(() => undefined)
      await d.replica?.close().catch(() => undefined)
    }
    await this.l0Client?.close().catch(() => undefined)
    await this.loopback.stop()
  }
}
