/** @module LedgerFollower: one device following L0's ledger over MQTT — heads verified, events applied, gaps synced, own events submitted. */
import { KinError, isKinError } from '../errors.ts'
import { toHex } from '../codec/bytes.ts'
import type { Clock, CryptoProvider } from '../ports/platform.ts'
import type { Transport } from '../ports/transport.ts'
import { decodeHead, type BlockHead } from '../ledger/head.ts'
import type { Refusal } from '../ledger/ledger.ts'
import { decodeSyncResponse, encodeSyncRequest } from '../ledger/sync.ts'
import type { Replica, SyncOutcome } from '../ledger/replica.ts'
import type { EncodedEvent } from '../ledger/types.ts'
import { alarmOf, isAlarm, type AlarmSource, type HeadAlarm } from './alarm.ts'
import { backoffDelay, type BackoffOptions } from './backoff.ts'
import { fetchBundle, type FetchedBundle } from './bundle-request.ts'
import type { GossipClient } from './client.ts'
import { decodeLedgerResponse } from './ledger-wire.ts'
import { connectDevice, type DeviceLogin } from './login.ts'
import { submissionBatches } from './submit-batches.ts'
import { encodeSubmission, staleOwnEvents } from './submit.ts'
import { fleetTopics, type FleetTopics } from './topics.ts'
import { ownRevocation, type RevocationNotice } from './revocation-notice.ts'

/*
 * What the follower does with each topic (DESIGN.md "MQTT topics", docs/BROKERS.md "Ledger topics"):
 *   ledger/events       the miner's announcement of a new head with its events (a sync response built for holders of
 *                       the previous head): Replica.applySyncResponse; a gap (events that start past what this device
 *                       holds) asks for a sync.
 *   ledger/head         the retained latest head: Replica.applyHead; a head whose events the device lacks asks for a
 *                       sync and stays pending until a sync answered after it arrived says what became of it.
 *   ledger/sync/CN/resp answers to this device's sync requests (applied as they come), and bundles (bundle-request.ts).
 * Any refusal that shows the miner contradicting itself (alarm.ts) raises `onAlarm`; the replica keeps its old head.
 *
 * Every verdict on a head is the replica's (Replica.rootContradiction: HEAD_ROOT_MISMATCH; Replica.rollbackOf:
 * HEAD_ROLLBACK); the follower only knows when to ask: a head over no more events than the device verified is
 * checked against its tree at once, and a head the miner's own sync answer never reaches, when that answer was built
 * after the head arrived (the request left after it), is a rollback. Answers are matched to requests by order (the
 * miner answers one device's requests in order); when a request went unanswered that order is unknown, and this
 * check waits for the next connection rather than guess.
 */

/** Default time to open a session (TLS and CONNACK), ms. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000
/** Default time the miner has to answer one sync request, ms. */
export const DEFAULT_SYNC_ROUND_TIMEOUT_MS = 5_000
/** A session that stayed up this long resets the backoff: a broker that accepts and drops at once is not "back". */
export const STABLE_SESSION_MS = 10_000
/** Sync rounds one catch-up may take (256 events each): ~260 000 events. */
const MAX_SYNC_ROUNDS = 1024
/** Answers in a row that do not fit the replica before a catch-up gives up. */
const MAX_UNFIT_ANSWERS = 4

/** Where the follower stands with the broker. */
export type FollowerStatus = 'connecting' | 'online' | 'offline' | 'closed'

/** A head this device adopted. */
export interface AdoptedHead {
  head: BlockHead
  headId: string
  /** What brought it: the head topic, an announcement on the events topic, or a sync answer. */
  via: 'head' | 'events' | 'sync'
  /** Events of the miner's log newly written to the ledger file. */
  added: number
  /** Whether the ledger file was rewritten into miner order. */
  rewritten: boolean
  /** Local events dropped because the miner's log refused them. */
  dropped: Refusal[]
}

/** Settings of a follower. */
export interface FollowerOptions {
  transport: Transport
  /** How this device logs in: its certificate, the fleet root, L0's CN, the broker URL. */
  login: DeviceLogin
  /** The fleet domain `F` of the topics. */
  fleet: string
  /** The device's replica (agent/gossip/replica-files.ts); its owner closes it after the follower. */
  replica: Replica
  clock: Clock
  /** The fleet's miner key (default: the one the replica's genesis names). */
  minerKey?: Uint8Array
  connectTimeoutMs?: number
  syncRoundTimeoutMs?: number
  /**
   * While a session is up, one sync round this often (default DEFAULT_PROBE_INTERVAL_MS; 0: never): a session whose
   * broker takes publishes but has silently stopped delivering (NATS 2.9 after a configuration reload) answers no
   * round, and the follower then logs in again instead of missing every head from then on.
   */
  probeIntervalMs?: number
  backoff?: BackoffOptions
  /** Random numbers in [0, 1) for the backoff jitter (default Math.random). */
  random?: () => number
  /** A head refused as forged, forking or rolled back; the old head was kept. */
  onAlarm?: (alarm: HeadAlarm) => void
  /** A newer head adopted. */
  onHead?: (adopted: AdoptedHead) => void
  onStatus?: (status: FollowerStatus, error: KinError | undefined) => void
  /** Something that went wrong without being the miner's fault: a dropped message, a lost connection, a failed submit. */
  onError?: (error: KinError, context: string) => void
  /**
   * This device's own identity is revoked in its replica (itself, or an ancestor with its subtree): told once, at
   * `start` when the replica already records it, else as soon as a head or answer brings it. The follower goes on
   * until its owner closes it: what to stop is the owner's call.
   */
  onRevoked?: (notice: RevocationNotice) => void
}

/** What `syncOnce` found. */
export interface SyncReport {
  head: BlockHead | undefined
  headId: string | undefined
  /** Events covered by the head (the miner-ordered prefix of the ledger file). */
  covered: number
  /** Events the ledger holds beyond it: this device's own, not yet sealed. */
  pending: number
  /** Events of the miner's log written to the ledger file during this call. */
  added: number
  rewritten: boolean
  dropped: Refusal[]
  /** Heads refused during this call. */
  alarms: HeadAlarm[]
  /** Own events handed to the miner during this call. */
  submitted: number
  /** TIME_TOO_OLD naming own events signed too long ago for the miner to take (they must be signed again), if any. */
  stale: KinError | undefined
}

/** What `submit` did. */
export interface SubmitOutcome {
  accepted: EncodedEvent[]
  refused: Refusal[]
  pending: EncodedEvent[]
  /** Whether the accepted events reached the broker (PUBACK); if not, they go out after the next (re)connect. */
  sent: boolean
}

interface PendingHead {
  bytes: Uint8Array
  head: BlockHead
  idHex: string
  /** Tick at arrival. */
  arrival: number
}

interface Round {
  resolve: (answer: { outcome: SyncOutcome; inOrder: boolean }) => void
  reject: (err: unknown) => void
}

function asKinError(err: unknown, context: string): KinError {
  if (err instanceof KinError) return err
  return new KinError('INTERNAL', `${context}: ${(err as Error)?.message ?? String(err)}`, { cause: err })
}

/** How often a follower checks, with one sync round, that its broker still delivers to its session (5 minutes). */
export const DEFAULT_PROBE_INTERVAL_MS = 5 * 60_000

function deadlineError(what: string, ms: number): KinError {
  return new KinError('BROKER_TIMEOUT', `${what} did not finish within ${ms} ms`, { detail: { timeoutMs: ms } })
}

/**
 * One device following its fleet's ledger. `start()` keeps a session with L0's broker open (reconnecting with
 * exponential backoff and jitter); each session subscribes to the head, events and this device's sync answers,
 * catches up (sync), then resubmits the device's own uncovered events. `syncOnce` is `kin sync`; `submit`,
 * `waitCovered` and `requestBundle` serve `kin revoke`, `kin serve` and the missing-proof path.
 */
export class LedgerFollower {
  readonly replica: Replica
  readonly cn: string
  readonly fleet: string
  readonly topics: FleetTopics
  readonly crypto: CryptoProvider
  readonly #o: FollowerOptions
  readonly #minerKey: Uint8Array
  #status: FollowerStatus = 'offline'
  #client: GossipClient | undefined = undefined
  #loop: Promise<void> | undefined = undefined
  #closing = false
  #wake: (() => void) | undefined = undefined
  #lastError: KinError | undefined = undefined
  #tick = 0
  /** Ticks of the sync requests sent on this session and not answered yet, oldest first (answers come in that order). */
  #requests: number[] = []
  /** False once a request went unanswered in time: its late answer would be taken for the next one's. */
  #orderKnown = true
  /** Tick of the latest request whose answer is known to be in order: heads that arrived before it are settled. */
  #inOrderSince = 0
  #round: Round | undefined = undefined
  readonly #ending = new WeakMap<GossipClient, Promise<void>>()
  /** Per session: rejects when it closes, so a publish the lost connection will never acknowledge does not hang. */
  readonly #lost = new WeakMap<GossipClient, Promise<never>>()
  #running: Promise<void> | undefined = undefined
  #queued: Promise<void> | undefined = undefined
  readonly #pending = new Map<string, PendingHead>()
  readonly #alarmed = new Set<string>()
  readonly #work = new Set<Promise<unknown>>()
  readonly #listeners = new Set<() => void>()
  #revokedTold = false
  #stats = {
    added: 0,
    rewritten: false,
    dropped: [] as Refusal[],
    alarms: [] as HeadAlarm[],
    submitted: 0,
    stale: undefined as KinError | undefined,
  }

  constructor(options: FollowerOptions) {
    this.#o = options
    this.replica = options.replica
    this.crypto = options.replica.crypto
    this.cn = options.login.cn
    this.fleet = options.fleet
    this.topics = fleetTopics(options.fleet)
    const genesis = options.replica.ledger.ledger.state.genesis
    const minerKey = options.minerKey ?? genesis?.body.minerKey
    if (minerKey === undefined)
      throw new KinError('NO_GENESIS', 'the replica holds no genesis: the follower cannot know the miner key')
    this.#minerKey = Uint8Array.from(minerKey)
  }

  /** Where the follower stands with the broker. */
  get status(): FollowerStatus {
    return this.#status
  }

  /** Why the last connection attempt or session ended, if it did. */
  get lastError(): KinError | undefined {
    return this.#lastError
  }

  /** Time (seconds) of the last verified head: the ledger's freshness for policy maxHeadAge. */
  lastHeadTime(): number | undefined {
    return this.replica.head?.time
  }

  /** This device's own revocation as its replica records it at the clock's time; undefined while it stands. */
  revocation(): RevocationNotice | undefined {
    return ownRevocation(this.replica.ledger.ledger.state, this.cn, this.#o.clock.now())
  }

  /** Starts following (idempotent): connect, subscribe, catch up, resubmit; reconnects until `close`. */
  start(): void {
    if (this.#loop !== undefined || this.#closing) return
    this.#checkRevoked()
    this.#loop = this.#connectLoop()
  }

  /** Stops following: ends the session, waits for work in progress. The replica stays open (its owner closes it). */
  async close(): Promise<void> {
    this.#closing = true
    this.#wake?.()
    const client = this.#client
    if (client !== undefined) await this.#end(client)
    await this.#loop
    while (this.#work.size > 0) await Promise.allSettled([...this.#work])
    this.#setStatus('closed', undefined)
  }

  /**
   * Catches up once (`kin sync`): starts following if needed, waits for a session, runs a sync that starts now
   * (so it sees the retained head and whatever the miner holds at this moment), settles heads that arrived before
   * it, and hands the miner this device's uncovered events. Rejects with the connection's coded error (BROKER_*)
   * or BROKER_TIMEOUT after `deadlineMs`; refused heads do not reject: they are in `alarms`.
   */
  async syncOnce(deadlineMs: number): Promise<SyncReport> {
    const end = Date.now() + deadlineMs
    const left = () => Math.max(0, end - Date.now())
    this.#stats = { added: 0, rewritten: false, dropped: [], alarms: [], submitted: 0, stale: undefined }
    this.start()
    await this.waitOnline(left())
    try {
      await this.#withDeadline(this.sync(), left(), 'catching up with the miner')
    } catch (err) {
      // A miner that has not signed its first head yet has nothing to sync: the report says so (head undefined).
      if (!isKinError(err, 'HEAD_MISSING')) throw err
    }
    // Heads that came in while that sync ran are settled by one more round, asked after them.
    for (let i = 0; i < 3 && this.#pending.size > 0 && left() > 0; i++)
      await this.#withDeadline(this.sync(), left(), 'catching up with the miner')
    await this.#withDeadline(this.resubmit(), left(), "submitting this device's events")
    const held = this.replica
    return {
      head: held.head,
      headId: held.headId,
      covered: held.coveredSize,
      pending: held.pendingOwnEvents().length,
      added: this.#stats.added,
      rewritten: this.#stats.rewritten,
      dropped: this.#stats.dropped,
      alarms: this.#stats.alarms,
      submitted: this.#stats.submitted,
      stale: this.#stats.stale,
    }
  }

  /**
   * Resolves once a session is up. Rejects at once when the broker refused this device or is not L0 (retrying will
   * not help), else after `deadlineMs` with the last connection error (or BROKER_TIMEOUT).
   */
  waitOnline(deadlineMs: number): Promise<void> {
    if (this.#status === 'online') return Promise.resolve()
    if (this.#closing) return Promise.reject(new KinError('BROKER_CLOSED', 'the follower is closed'))
    this.start()
    const refused = (): boolean => this.#lastError !== undefined && !isConnectionError(this.#lastError)
    return this.#waitFor(() => this.#status === 'online' || this.#closing || refused(), deadlineMs).then(
      () => {
        if (this.#closing) throw new KinError('BROKER_CLOSED', 'the follower is closed')
        if (this.#status !== 'online') throw this.#lastError!
      },
      () => {
        throw (
          this.#lastError ??
          new KinError('BROKER_TIMEOUT', `no session with the broker at ${this.#o.login.url} within ${deadlineMs} ms`)
        )
      },
    )
  }

  /**
   * Appends this device's own events to its ledger (validated, durable) and hands the accepted ones to the miner.
   * Events that do not reach the broker now stay in the ledger beyond the covered prefix and go out after the
   * next (re)connect.
   */
  async submit(inputs: Array<Uint8Array | EncodedEvent>): Promise<SubmitOutcome> {
    const result = await this.replica.appendLocal(inputs, { now: this.#o.clock.now() })
    let sent = false
    if (result.accepted.length > 0) {
      try {
        sent = await this.#publishOwn(result.accepted)
      } catch (err) {
        this.#report(asKinError(err, 'submit'), 'submit')
      }
    }
    return { ...result, sent }
  }

  /** Hands the miner every event of the ledger not covered by a head yet; resolves with how many went out. */
  async resubmit(): Promise<number> {
    const pending = this.replica.pendingOwnEvents()
    if (pending.length === 0) return 0
    // Still sent: the miner's clock, not this one, decides; but the device hears why they will not be sealed.
    const stale = staleOwnEvents(pending, this.#o.clock.now())
    if (stale !== undefined) {
      this.#stats.stale = stale
      this.#report(stale, 'resubmit')
    }
    return (await this.#publishOwn(pending)) ? pending.length : 0
  }

  /** Resolves once a verified head covers every event id given (hex); rejects with BROKER_TIMEOUT after `deadlineMs`. */
  waitCovered(idHexes: string[], deadlineMs: number): Promise<void> {
    const wanted = new Set(idHexes)
    const covered = (): boolean => {
      const log = this.replica.ledger.ledger.state.log
      let found = 0
      for (let i = 0; i < this.replica.coveredSize && found < wanted.size; i++) if (wanted.has(log[i]!.idHex)) found++
      return found === wanted.size
    }
    return this.#waitFor(covered, deadlineMs).catch(() => {
      throw deadlineError(`waiting for a head that covers ${wanted.size} event(s)`, deadlineMs)
    })
  }

  /**
   * Asks the miner for `cn`'s proof bundle (DESIGN.md "Access decision" step 5) and verifies it against the fleet's
   * miner key, genesis and this device's head (a bundle whose head contradicts it raises an alarm). Waits for a
   * session within the same deadline. With `knownTreeSize`, the bundle proves consistency from that size (a verifier's).
   */
  async requestBundle(cn: string, deadlineMs: number, knownTreeSize?: number): Promise<FetchedBundle> {
    const end = Date.now() + deadlineMs
    await this.waitOnline(deadlineMs)
    const client = this.#client
    if (client === undefined)
      throw this.#lastError ?? new KinError('BROKER_CLOSED', 'the session with the broker closed')
    const genesis = this.replica.ledger.ledger.state.genesis
    const held = this.replica.head
    try {
      return await fetchBundle(client, {
        crypto: this.crypto,
        fleet: this.fleet,
        selfCn: this.cn,
        cn,
        now: this.#o.clock.now(),
        timeoutMs: Math.max(1, end - Date.now()),
        anchor: { minerKey: this.#minerKey, genesisId: genesis?.event.idHex, knownHead: held },
        ...(knownTreeSize === undefined ? {} : { knownTreeSize }),
      })
    } catch (err) {
      if (isAlarm(err)) this.#alarm(err, 'bundle', undefined)
      throw err
    }
  }

  /**
   * Catches up with the miner: sync requests until the replica holds the miner's latest head with all its events.
   * One catch-up runs at a time; a call while one runs gets the next one (so it starts after the call).
   */
  sync(): Promise<void> {
    if (this.#running === undefined) {
      const run = this.#runSync().finally(() => {
        if (this.#running === run) this.#running = undefined
      })
      this.#running = run
      return run
    }
    this.#queued ??= this.#running
      .catch(() => undefined)
      .then(() => {
        this.#queued = undefined
        return this.sync()
      })
    return this.#queued
  }

  // ---- session ---------------------------------------------------------------------------------------------

  async #connectLoop(): Promise<void> {
    let attempt = 0
    while (!this.#closing) {
      this.#setStatus('connecting', undefined)
      let upSince: number | undefined
      try {
        const client = await connectDevice(this.#o.transport, this.#o.login, {
          timeoutMs: this.#o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
          reconnect: false,
        })
        if (this.#closing) {
          await this.#end(client)
          break
        }
        upSince = Date.now()
        await this.#attach(client)
      } catch (err) {
        this.#lastError = asKinError(err, 'connecting to the broker')
        this.#report(this.#lastError, 'connect')
        this.#notify()
      }
      if (this.#closing) break
      this.#setStatus('offline', this.#lastError)
      if (upSince !== undefined && Date.now() - upSince >= STABLE_SESSION_MS) attempt = 0
      await this.#sleep(backoffDelay(attempt, this.#o.backoff, this.#o.random))
      attempt++
    }
  }

  /** Runs one session until it closes. */
  async #attach(client: GossipClient): Promise<void> {
    this.#client = client
    this.#requests = []
    this.#orderKnown = true
    let closedWith: KinError | undefined
    let lost: (err: KinError) => void = () => undefined
    const lostPromise = new Promise<never>((_, reject) => {
      lost = reject
    })
    lostPromise.catch(() => undefined)
    this.#lost.set(client, lostPromise)
    const closed = new Promise<void>(resolve => {
      client.onStatus((status, error) => {
        if (status !== 'closed') return
        closedWith = error
        lost(error ?? new KinError('BROKER_CLOSED', 'the session with the broker closed'))
        resolve()
      })
    })
    const stop = client.session.onMessage((topic, payload) => this.#dispatch(topic, payload))
    let probe: ReturnType<typeof setInterval> | undefined
    try {
      await client.subscribe([this.topics.head, this.topics.events, this.topics.syncResp(this.cn)])
      this.#lastError = undefined
      this.#setStatus('online', undefined)
      // Catch up first, then hand over what the miner still lacks (most of it may have come back in the sync).
      await this.sync().catch(err => this.#report(asKinError(err, 'sync'), 'sync'))
      await this.resubmit().catch(err => this.#report(asKinError(err, 'resubmit'), 'resubmit'))
      probe = this.#probe(client)
      await closed
      if (closedWith !== undefined) this.#lastError = closedWith
    } finally {
      if (probe !== undefined) clearInterval(probe)
      stop()
      if (this.#client === client) this.#client = undefined
      this.#round?.reject(closedWith ?? new KinError('BROKER_CLOSED', 'the session with the broker closed'))
      this.#round = undefined
      await this.#end(client)
    }
  }

  /**
   * Every probeIntervalMs, one sync round on `client`: when the broker answers none in time (BROKER_TIMEOUT) while the
   * session still looks up, the session is ended (SESSION_SILENT reported) and the connect loop logs in again.
   */
  #probe(client: GossipClient): ReturnType<typeof setInterval> | undefined {
    const every = this.#o.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS
    if (every <= 0) return undefined
    const timer = setInterval(() => {
      if (this.#client !== client || this.#running !== undefined) return
      this.sync().catch(err => {
        const e = asKinError(err, 'probe')
        if (e.code !== 'BROKER_TIMEOUT' || this.#client !== client) return
        this.#report(
          new KinError(
            'SESSION_SILENT',
            `the broker answered no sync round within the deadline on a session that looks up: logging in again (${e.message})`,
            { cause: e },
          ),
          'probe',
        )
        void this.#end(client)
      })
    }, every)
    timer.unref?.()
    return timer
  }

  /** Ends a session once, however many paths ask for it. */
  #end(client: GossipClient): Promise<void> {
    let ending = this.#ending.get(client)
    if (ending === undefined) {
      ending = client.close().catch(() => undefined)
      this.#ending.set(client, ending)
    }
    return ending
  }

  #dispatch(topic: string, payload: Uint8Array): void {
    const job =
      topic === this.topics.head
        ? this.#onHead(payload)
        : topic === this.topics.events
          ? this.#onAnnouncement(payload)
          : topic === this.topics.syncResp(this.cn)
            ? this.#onAnswer(payload)
            : undefined
    if (job === undefined) return
    const tracked = job.catch(err => this.#report(asKinError(err, topic), topic))
    this.#work.add(tracked)
    void tracked.finally(() => this.#work.delete(tracked))
  }

  // ---- topics ----------------------------------------------------------------------------------------------

  async #onHead(bytes: Uint8Array): Promise<void> {
    const arrival = ++this.#tick
    const now = this.#o.clock.now()
    let outcome
    try {
      outcome = await this.replica.applyHead(bytes, this.#minerKey, now)
    } catch (err) {
      if (isAlarm(err)) {
        this.#alarm(err, 'head', bytes)
        return
      }
      throw err
    }
    if (outcome.status === 'advanced') {
      this.#adopted('head', { added: 0, rewritten: false, dropped: [] })
      return
    }
    if (outcome.status !== 'need-sync') {
      this.#notify()
      return
    }
    const head = decodeHead(bytes)
    if (this.#rootContradicts(head, bytes)) return
    const idHex = toHex(this.crypto.sha256(bytes))
    this.#pending.set(idHex, { bytes, head, idHex, arrival })
    await this.sync()
  }

  async #onAnnouncement(bytes: Uint8Array): Promise<void> {
    const outcome = await this.#applyResponse(bytes, 'events')
    if (outcome === undefined) return
    if (outcome.status === 'need-sync' || outcome.status === 'partial') await this.sync()
  }

  async #onAnswer(bytes: Uint8Array): Promise<void> {
    let reply
    try {
      reply = decodeLedgerResponse(bytes)
    } catch (err) {
      this.#report(asKinError(err, 'sync answer'), 'sync answer')
      return
    }
    // Bundles are for fetchBundle's wait, on the same topic.
    if (reply.kind === 'bundle' || (reply.kind === 'error' && reply.request === 'bundle')) return
    const sent = this.#requests.shift()
    if (sent === undefined) this.#orderKnown = false
    // Answers come in the order of the requests (the miner handles one device's requests in turn).
    const inOrder = this.#orderKnown && sent !== undefined
    const round = this.#round
    if (reply.kind === 'error') {
      this.#round = undefined
      round?.reject(
        new KinError(
          reply.code === 'HEAD_MISSING' ? 'HEAD_MISSING' : 'BROKER_REFUSED',
          `the miner refused the sync request: ${reply.code}: ${reply.message}`,
          { detail: { minerCode: reply.code } },
        ),
      )
      return
    }
    let outcome: SyncOutcome | undefined
    try {
      outcome = await this.#applyResponse(bytes, 'sync')
    } catch (err) {
      if (this.#round === round) this.#round = undefined
      round?.reject(err)
      throw err
    }
    if (this.#round === round) this.#round = undefined
    if (outcome === undefined)
      round?.reject(new KinError('SYNC_MISMATCH', "the miner's sync answer was refused (see the alarm)"))
    else round?.resolve({ outcome, inOrder })
    if (inOrder) this.#inOrderSince = Math.max(this.#inOrderSince, sent!)
  }

  /** Applies a sync response or announcement; undefined when it raised an alarm. */
  async #applyResponse(bytes: Uint8Array, source: AlarmSource): Promise<SyncOutcome | undefined> {
    let outcome: SyncOutcome
    try {
      outcome = await this.replica.applySyncResponse(bytes, this.#minerKey, this.#o.clock.now())
    } catch (err) {
      if (isAlarm(err)) {
        let offered: Uint8Array | undefined
        try {
          offered = decodeSyncResponse(bytes).headBytes
        } catch {
          offered = undefined
        }
        this.#alarm(err, source, offered)
        return undefined
      }
      throw err
    }
    if (outcome.status === 'advanced') this.#adopted(source === 'events' ? 'events' : 'sync', outcome)
    else this.#notify()
    return outcome
  }

  // ---- catching up -----------------------------------------------------------------------------------------

  async #runSync(): Promise<void> {
    const client = this.#client
    if (client === undefined) throw this.#lastError ?? new KinError('BROKER_CLOSED', 'no session with the broker')
    let unfit = 0
    for (let rounds = 0; ; rounds++) {
      if (rounds >= MAX_SYNC_ROUNDS)
        throw new KinError('SYNC_MISMATCH', `catching up took more than ${MAX_SYNC_ROUNDS} rounds`)
      const { outcome } = await this.#syncRound(client)
      if (outcome.status === 'need-sync') {
        if (++unfit >= MAX_UNFIT_ANSWERS)
          throw new KinError(
            'SYNC_MISMATCH',
            `${MAX_UNFIT_ANSWERS} sync answers in a row did not fit this device's ledger`,
          )
        continue
      }
      unfit = 0
      if (!outcome.more && outcome.status !== 'partial') break
    }
    await this.#settlePending()
    // Heads that arrived during this catch-up are settled by the next one (when answers can be matched to requests).
    if (this.#orderKnown && [...this.#pending.values()].some(p => p.arrival >= this.#inOrderSince))
      void this.sync().catch(() => undefined)
  }

  #syncRound(client: GossipClient): Promise<{ outcome: SyncOutcome; inOrder: boolean }> {
    const timeoutMs = this.#o.syncRoundTimeoutMs ?? DEFAULT_SYNC_ROUND_TIMEOUT_MS
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.#round === round) this.#round = undefined
        // The answer may still come, out of step with the next request: stop matching answers to requests.
        this.#orderKnown = false
        reject(
          new KinError('BROKER_TIMEOUT', `the miner did not answer a sync request within ${timeoutMs} ms`, {
            detail: { timeoutMs },
          }),
        )
      }, timeoutMs)
      const round: Round = {
        resolve: v => {
          clearTimeout(timer)
          resolve(v)
        },
        reject: e => {
          clearTimeout(timer)
          reject(e)
        },
      }
      this.#round?.reject(new KinError('INTERNAL', 'a sync round was replaced'))
      this.#round = round
      const sent = ++this.#tick
      this.#requests.push(sent)
      this.#publish(client, this.topics.syncReq(this.cn), encodeSyncRequest(this.replica.syncRequest())).catch(err => {
        this.#requests.pop()
        if (this.#round === round) this.#round = undefined
        round.reject(err)
      })
    })
  }

  /** Settles heads that need a sync, once an in-order answer to a request sent after them was applied. */
  async #settlePending(): Promise<void> {
    for (const p of [...this.#pending.values()]) {
      if (p.arrival >= this.#inOrderSince) continue
      this.#pending.delete(p.idHex)
      let outcome
      try {
        outcome = await this.replica.applyHead(p.bytes, this.#minerKey, this.#o.clock.now())
      } catch (err) {
        if (isAlarm(err)) {
          this.#alarm(err, 'head', p.bytes)
          continue
        }
        throw err
      }
      if (outcome.status === 'advanced') this.#adopted('head', { added: 0, rewritten: false, dropped: [] })
      if (outcome.status !== 'need-sync' || this.#rootContradicts(p.head, p.bytes)) continue
      this.#alarm(this.replica.rollbackOf(p.head), 'head', p.bytes)
    }
  }

  /** The replica's verdict on a head's root (Replica.rootContradiction): true, with an alarm, when it contradicts. */
  #rootContradicts(head: BlockHead, bytes: Uint8Array): boolean {
    const contradiction = this.replica.rootContradiction(head)
    if (contradiction === undefined) return false
    this.#alarm(contradiction, 'head', bytes)
    return true
  }

  // ---- helpers ---------------------------------------------------------------------------------------------

  async #publishOwn(events: EncodedEvent[]): Promise<boolean> {
    const client = this.#client
    if (client === undefined || this.#status !== 'online') return false
    for (const batch of submissionBatches(events)) {
      await this.#publish(client, this.topics.submit(this.cn), encodeSubmission(batch))
      this.#stats.submitted += batch.length
    }
    return true
  }

  /** Publishes on a session; rejects when the session closes before the broker acknowledged. */
  #publish(client: GossipClient, topic: string, payload: Uint8Array): Promise<void> {
    const lost = this.#lost.get(client)
    const sent = client.publish(topic, payload)
    return lost === undefined ? sent : Promise.race([sent, lost])
  }

  #adopted(via: AdoptedHead['via'], outcome: { added: number; rewritten: boolean; dropped: Refusal[] }): void {
    const head = this.replica.head
    if (head === undefined) return
    this.#stats.added += outcome.added
    this.#stats.rewritten ||= outcome.rewritten
    this.#stats.dropped.push(...outcome.dropped)
    for (const p of [...this.#pending.values()])
      if (p.head.height <= head.height && p.idHex === this.replica.headId) this.#pending.delete(p.idHex)
    this.#o.onHead?.({
      head,
      headId: this.replica.headId!,
      via,
      added: outcome.added,
      rewritten: outcome.rewritten,
      dropped: outcome.dropped,
    })
    this.#checkRevoked()
    this.#notify()
  }

  /** Tells the owner, once, that the replica now records this device's own revocation. */
  #checkRevoked(): void {
    if (this.#revokedTold || this.#o.onRevoked === undefined) return
    const notice = this.revocation()
    if (notice === undefined) return
    this.#revokedTold = true
    this.#o.onRevoked(notice)
  }

  #alarm(err: KinError, source: AlarmSource, offered: Uint8Array | undefined): void {
    const alarm = alarmOf(err, source, this.#o.clock.now(), { held: this.replica.headBytes, offered })
    const key = `${alarm.code}:${alarm.offeredHead ?? err.message}`
    if (this.#alarmed.has(key)) return
    this.#alarmed.add(key)
    this.#stats.alarms.push(alarm)
    this.#o.onAlarm?.(alarm)
  }

  #report(err: KinError, context: string): void {
    this.#o.onError?.(err, context)
  }

  #setStatus(status: FollowerStatus, error: KinError | undefined): void {
    if (this.#status === status) return
    this.#status = status
    this.#o.onStatus?.(status, error)
    this.#notify()
  }

  #notify(): void {
    for (const l of [...this.#listeners]) l()
  }

  /** Resolves when `check` holds (checked now and after every state change); rejects after `ms`. */
  #waitFor(check: () => boolean, ms: number): Promise<void> {
    if (check()) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const listener = (): void => {
        if (!check()) return
        done()
        resolve()
      }
      const timer = setTimeout(
        () => {
          done()
          reject(deadlineError('waiting', ms))
        },
        Math.max(0, ms),
      )
      const done = (): void => {
        clearTimeout(timer)
        this.#listeners.delete(listener)
      }
      this.#listeners.add(listener)
    })
  }

  #withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(deadlineError(what, ms)), Math.max(0, ms))
      work.then(
        v => {
          clearTimeout(timer)
          resolve(v)
        },
        e => {
          clearTimeout(timer)
          reject(e)
        },
      )
    })
  }

  #sleep(ms: number): Promise<void> {
    return new Promise(resolve => {
      const timer = setTimeout(() => {
        this.#wake = undefined
        resolve()
      }, ms)
      this.#wake = () => {
        clearTimeout(timer)
        this.#wake = undefined
        resolve()
      }
    })
  }
}

/** Whether `err` is the kind of failure a follower retries by reconnecting (the broker away, a session lost). */
export function isConnectionError(err: unknown): boolean {
  return (
    isKinError(err) &&
    (err.code === 'BROKER_UNREACHABLE' || err.code === 'BROKER_CLOSED' || err.code === 'BROKER_TIMEOUT')
  )
}
