/** @module `kin broker --no-broker`: L0's services (miner, CA, invites, sync) as an MQTT client of an existing broker such as Mosquitto. */
import mqtt, { type MqttClient } from 'mqtt'
import { KinError } from '../agent/errors.ts'
import type { FleetTopics } from '../agent/gossip/topics.ts'
import type { PersistentLedger } from '../agent/ledger/persistent.ts'
import type { BlockHead } from '../agent/ledger/head.ts'
import { tlsClientPolicy } from '../runtime/node/tls-policy.ts'
import { SUBACK_TIMEOUT_MS } from '../runtime/node/transport.ts'
import { filterCovers } from './acl.ts'
import { openL0Home } from './home.ts'
import { makeLogger, type LogSink } from './log.ts'
import type { MinerService } from './miner-service.ts'
import { startServices, type ServiceBus } from './services.ts'
import { refreshNats } from './nats.ts'
import { servicesIdentity, type ServicesIdentity } from './services-identity.ts'
import type { QuotaOptions } from '../agent/ledger/quota.ts'

/** Options of startL0Client. */
export interface L0ClientOptions {
  /** L0's home (made by `kin init`). */
  home: string
  /**
   * The broker, `mqtts://HOST:PORT`, or several (the nodes of a cluster, or a comma list): each must present a
   * certificate for L0's CN from the fleet root (see docs/BROKERS.md). The client fails over between them in turn.
   */
  broker: string | readonly string[]
  /**
   * MQTT client id of the services (default: their CN, `services.<L0 CN>`, which a broker that makes the user name
   * the client id sets anyway; L0's own CLI logs in as L0's CN and never meets this session).
   */
  clientId?: string
  /** A `kin broker --export-nats` directory: its users file is refreshed and every node reloaded when bindings change. */
  natsDir?: string
  /** How long a subscription refused with SUBACK 0x80 is retried before it counts as ACL_DENIED (ms, default 30 s). */
  subscribeRetryMs?: number
  log?: LogSink
  /** The clock, in seconds since the epoch. */
  now?: () => number
  sealIntervalMs?: number
  /** Per-submitter budgets at the miner over DEFAULT_QUOTAS (agent/ledger/quota.ts), and their clock (ms). */
  quota?: Partial<QuotaOptions>
  /** How long the first connection may take (ms, default 10 s). */
  connectTimeoutMs?: number
}

/** L0's services running as a client of another broker. */
export interface L0ClientServices {
  readonly cn: string
  readonly fleet: string
  readonly topics: FleetTopics
  readonly ledger: PersistentLedger
  readonly miner: MinerService
  readonly clientId: string
  /** The broker URL of the current (or last) connection: with several, the node the services use now. */
  broker(): string
  /** Signs a head over every durable event now (if any is new) and publishes it. */
  seal(): Promise<BlockHead | undefined>
  /** Stops taking messages, waits for work in progress, seals, disconnects, closes the ledger. */
  close(): Promise<void>
}

/** The brokers of `--broker`: each argument may be a comma list; at least one, each `mqtts://HOST:PORT`. */
export function parseBrokerUrls(urls: string | readonly string[]): Array<{ url: string; host: string; port: number }> {
  const list = (typeof urls === 'string' ? [urls] : urls)
    .flatMap(u => u.split(','))
    .map(u => u.trim())
    .filter(u => u !== '')
  if (list.length === 0) throw new KinError('BAD_ARGUMENT', '--broker expects mqtts://HOST:PORT (one or more)')
  return list.map(url => ({ url, ...parseBrokerUrl(url) }))
}

function parseBrokerUrl(url: string): { host: string; port: number } {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new KinError('BAD_ARGUMENT', `--broker expects mqtts://HOST:PORT, got "${url}"`)
  }
  if (u.protocol !== 'mqtts:' || u.hostname === '')
    throw new KinError('BAD_ARGUMENT', `--broker expects mqtts://HOST:PORT (TLS only), got "${url}"`)
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port === '' ? 8883 : Number(u.port) }
}

/**
 * A ServiceBus over one mqtt.js session. Messages that a persistent session delivers before the services have
 * registered their handler (the broker replays what it queued while L0 was away) are held, then handed over.
 */
class ClientBus implements ServiceBus {
  private readonly client: MqttClient
  private readonly handlers: Array<{ filter: string; deliver: (topic: string, payload: Uint8Array) => void }> = []
  private held: Array<{ topic: string; payload: Uint8Array }> = []
  private stopped = false
  private readonly retryMs: number

  constructor(client: MqttClient, retryMs: number) {
    this.client = client
    this.retryMs = retryMs
    // [MQTT-4.3.3] a QoS 1 message not acknowledged is sent again: once stopping, L0 leaves new ones to its next session.
    client.handleMessage = (_packet, callback) => {
      if (!this.stopped) callback()
    }
    client.on('message', (topic, payload) => {
      if (this.stopped) return
      const bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.length)
      const h = this.handlers.find(x => filterCovers(x.filter, topic))
      if (h === undefined) {
        if (this.held.length < 10_000) this.held.push({ topic, payload: bytes })
        return
      }
      h.deliver(topic, bytes)
    })
  }

  async subscribe(filter: string, deliver: (topic: string, payload: Uint8Array) => void): Promise<void> {
    await this.subscribeOnce(filter)
    this.handlers.push({ filter, deliver })
    const held = this.held
    this.held = []
    for (const m of held) {
      if (filterCovers(filter, m.topic)) deliver(m.topic, m.payload)
      else this.held.push(m)
    }
  }

  /**
   * Subscribes `filter` at QoS 1. A cluster that lost a node answers SUBACK 0x80 for a while (its session state
   * moves to another node), and a subscribe sent while the connection drops gets no answer: both are retried with
   * backoff (250 ms doubling to 4 s) for `retryMs`. Only a refusal that lasts that long is ACL_DENIED.
   */
  async subscribeOnce(filter: string): Promise<void> {
    const deadline = Date.now() + this.retryMs
    let wait = 250
    let last: KinError | undefined
    for (;;) {
      const denied = () =>
        new KinError(
          'ACL_DENIED',
          `the broker's ACL does not let L0's services subscribe to ${filter}: give their CN the service rights (kin broker --export-mosquitto or --export-nats)`,
        )
      // A SUBSCRIBE a cluster leaves unanswered on a connection that stays up is asked again, like a refusal.
      let timer: ReturnType<typeof setTimeout> | undefined
      const unanswered = new Promise<KinError>(resolve => {
        timer = setTimeout(
          () =>
            resolve(
              new KinError(
                'BROKER_TIMEOUT',
                `the broker did not answer L0's subscription to ${filter} within ${SUBACK_TIMEOUT_MS} ms`,
              ),
            ),
          SUBACK_TIMEOUT_MS,
        )
      })
      const answered = this.client.subscribeAsync(filter, { qos: 1 }).then(
        granted => (granted.some(g => g.qos === 128) ? denied() : undefined),
        (err: unknown) => {
          // mqtt.js rejects a SUBACK holding 0x80 (the packet still says so); anything else is a lost connection.
          const granted = (err as { packet?: { granted?: Array<number | { qos: number }> } }).packet?.granted
          if (granted?.some(g => (typeof g === 'number' ? g : g.qos) === 128)) return denied()
          return new KinError(
            'BROKER_REFUSED',
            `the broker refused L0's subscription to ${filter}: ${(err as Error).message}`,
            { cause: err },
          )
        },
      )
      last = await Promise.race([answered, unanswered])
      clearTimeout(timer)
      if (last === undefined) return
      if (this.stopped || Date.now() + wait > deadline) throw last
      await new Promise(r => setTimeout(r, wait))
      wait = Math.min(wait * 2, 4000)
    }
  }

  /** Subscribes every filter again (after a reconnect), retrying as subscribeOnce does; resolves false if one failed. */
  async resubscribe(): Promise<KinError | undefined> {
    for (const h of this.handlers) {
      try {
        await this.subscribeOnce(h.filter)
      } catch (err) {
        return err as KinError
      }
    }
    return undefined
  }

  /** Takes no more messages (and acknowledges none), so what arrives from now on waits in the broker for L0's next session. */
  stop(): void {
    this.stopped = true
  }

  async publish(topic: string, payload: Uint8Array, opts: { retain?: boolean } = {}): Promise<void> {
    if (!this.client.connected)
      throw new KinError('BROKER_CLOSED', `not connected to the broker; ${topic} not published`)
    await this.client.publishAsync(topic, Buffer.from(payload), { qos: 1, retain: opts.retain === true })
  }
}

/**
 * Waits for the first CONNACK. With one broker a closed connection fails at once; with several, mqtt.js tries the
 * next in turn, and only a close of every one of them (or the deadline) fails.
 */
function connectFirst(client: MqttClient, timeoutMs: number, urls: readonly string[]): Promise<void> {
  const url = urls.join(', ')
  let closes = 0
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => done(new KinError('BROKER_TIMEOUT', `no CONNACK from ${url} within ${timeoutMs} ms`)),
      timeoutMs,
    )
    const done = (err?: KinError) => {
      clearTimeout(timer)
      client.off('connect', onConnect)
      client.off('error', onError)
      client.off('close', onClose)
      if (err === undefined) resolve()
      else reject(err)
    }
    const onConnect = () => done()
    // mqtt.js reports a refused or reset connection by closing, not by an error: at startup that is a failure to report.
    const onClose = () => {
      if (++closes >= urls.length)
        done(
          new KinError(
            'BROKER_UNREACHABLE',
            `L0 could not reach ${url}: the connection closed before CONNACK (nothing listening, or the TLS handshake failed)`,
          ),
        )
    }
    const onError = (err: Error & { code?: unknown }) => {
      const refused = typeof err.code === 'number'
      // A refusal by one node of several may be transient (a cluster moving sessions after a node loss): try the others.
      if (refused && ++closes < urls.length) return
      done(
        new KinError(
          refused ? 'BROKER_REFUSED' : 'BROKER_UNREACHABLE',
          `L0 could not log in to ${url}: ${err.message}`,
          { cause: err, detail: refused ? { connack: err.code } : undefined },
        ),
      )
    }
    client.on('connect', onConnect)
    client.on('error', onError)
    client.on('close', onClose)
  })
}

/** Event types that change which devices a broker's users file or ACL must grant. */
const BINDING_EVENTS: ReadonlySet<string> = new Set(['authorize', 'certified', 'revoke', 'rekey'])

/**
 * How long after a reload L0's services log in again. NATS 2.9.10 keeps sessions open across a reload, but their
 * subscriptions deliver nothing more (publishing still works); a new login subscribes under the reloaded
 * configuration. The delay lets every node finish its reload first.
 */
const RELOGIN_AFTER_RELOAD_MS = 1500

/** Refreshes the NATS users file from L0's ledger in memory and reloads the nodes; logs, never throws. */
function natsRefresher(
  home: string,
  dir: string,
  ledger: PersistentLedger,
  now: () => number,
  log: ReturnType<typeof makeLogger>,
  reloaded: () => void,
): () => void {
  return () => {
    try {
      const r = refreshNats(home, dir, { now: now(), state: ledger.ledger.state })
      if (r.changed) log('info', 'broker.users', { dir, devices: r.devices.length, reloaded: r.reloaded })
      if (r.reloaded.length > 0) reloaded()
    } catch (err) {
      log('error', 'broker.error', {
        dir,
        code: (err as KinError).code ?? 'STORAGE_IO',
        message: (err as Error).message,
      })
    }
  }
}

/**
 * Runs L0's services as a client of the broker at `opts.broker` (or the first of several that answers): logs in
 * with the services' own certificate (services-identity.ts; the broker's ACL grants their CN the service topics), checks that the broker presents a certificate for L0's CN from the fleet
 * root, and keeps a persistent session (clean = false), so submissions made while L0 is away wait in the broker.
 * No aedes runs: logins, ACLs and revocation (the CRL) are the broker's. Reconnects on its own; each reconnect
 * republishes the latest head, retained.
 */
export async function startL0Client(opts: L0ClientOptions): Promise<L0ClientServices> {
  const log = makeLogger(opts.log)
  const now = opts.now ?? (() => Math.floor(Date.now() / 1000))
  const servers = parseBrokerUrls(opts.broker)
  const urls = servers.map(s => s.url)
  const l0 = await openL0Home(opts.home, log)
  let identity: ServicesIdentity
  try {
    identity = await servicesIdentity(l0, now(), l0.issued)
  } catch (err) {
    await l0.close()
    throw err
  }
  const clientId = opts.clientId ?? identity.cn
  const client = mqtt.connect({
    ...tlsClientPolicy(),
    protocol: 'mqtts',
    host: servers[0]!.host,
    port: servers[0]!.port,
    protocolVersion: 4,
    clientId,
    clean: false,
    reconnectPeriod: 1000,
    connectTimeout: opts.connectTimeoutMs ?? 10_000,
    // Several brokers: mqtt.js moves to the next one at each reconnect. Subscriptions are renewed by resubscribe() below.
    ...(servers.length > 1
      ? { servers: servers.map(s => ({ host: s.host, port: s.port, protocol: 'mqtts' as const })) }
      : {}),
    resubscribe: false,
    cert: identity.certPem,
    key: identity.keyPem,
    ca: l0.rootPem,
    servername: l0.cn,
    rejectUnauthorized: true,
  })
  let services: Awaited<ReturnType<typeof startServices>>
  const bus = new ClientBus(client, opts.subscribeRetryMs ?? 30_000)
  let relogin: ReturnType<typeof setTimeout> | undefined
  const refresh =
    opts.natsDir === undefined
      ? undefined
      : natsRefresher(opts.home, opts.natsDir, l0.ledger, now, log, () => {
          clearTimeout(relogin)
          relogin = setTimeout(() => {
            // Dropping the connection (not end()) keeps mqtt.js's stores: QoS 1 messages in flight are resent on the new
            // one, and the persistent session on the broker side is untouched.
            if (client.connected && !closing) client.stream.destroy()
          }, RELOGIN_AFTER_RELOAD_MS)
        })
  let closing = false
  try {
    await connectFirst(client, opts.connectTimeoutMs ?? 10_000, urls)
    refresh?.()
    services = await startServices({
      l0,
      log,
      now,
      sealIntervalMs: opts.sealIntervalMs,
      quota: opts.quota,
      bus,
      ledgerChanged: accepted => {
        if (accepted.some(e => BINDING_EVENTS.has(e.event.type))) refresh?.()
      },
    })
  } catch (err) {
    await client.endAsync(true).catch(() => undefined)
    await l0.close()
    throw err
  }
  let connected = true
  const where = () => `mqtts://${client.options.host}:${client.options.port}`
  client.on('connect', () => {
    connected = true
    log('info', 'broker.connected', { broker: where(), clientId, again: true })
    // Renewed on every reconnect: another node of a cluster may not hold the session's subscriptions yet.
    void bus.resubscribe().then(err => {
      if (err !== undefined) log('error', 'broker.error', { broker: where(), code: err.code, message: err.message })
    })
    void services.miner.republishHead()
  })
  client.on('close', () => {
    if (connected) log('warn', 'broker.disconnected', { broker: where(), clientId })
    connected = false
  })
  client.on('error', err =>
    log('warn', 'broker.error', { broker: where(), code: 'BROKER_REFUSED', message: err.message }),
  )
  log('info', 'broker.connected', {
    broker: where(),
    clientId,
    cn: l0.cn,
    fleet: l0.fleet,
    events: l0.ledger.ledger.size,
    height: services.miner.miner.latestHead()?.height,
  })

  let closed: Promise<void> | undefined
  return {
    cn: l0.cn,
    fleet: l0.fleet,
    topics: services.topics,
    ledger: l0.ledger,
    miner: services.miner,
    clientId,
    broker: where,
    seal: () => services.miner.sealNow(),
    close: () => {
      closed ??= (async () => {
        closing = true
        clearTimeout(relogin)
        bus.stop()
        // Handlers in progress still publish their answers; then the final seal, then goodbye.
        await services.stop()
        await client.endAsync().catch(() => undefined)
        await l0.close()
        log('info', 'broker.closed', { broker: urls.join(','), cn: l0.cn })
      })()
      return closed
    },
  }
}
