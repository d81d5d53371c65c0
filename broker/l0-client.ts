/** @module `kin broker --no-broker`: L0's services (miner, CA, invites, sync) as an MQTT client of an existing broker such as Mosquitto. */
import mqtt, { type MqttClient } from 'mqtt'
import { KinError } from '../agent/errors.ts'
import type { FleetTopics } from '../agent/gossip/topics.ts'
import type { PersistentLedger } from '../agent/ledger/persistent.ts'
import type { BlockHead } from '../agent/ledger/head.ts'
import { tlsClientPolicy } from '../firmware-shims/node/tls-policy.ts'
import { filterCovers } from './acl.ts'
import { openL0Home } from './home.ts'
import { makeLogger, type LogSink } from './log.ts'
import type { MinerService } from './miner-service.ts'
import { startServices, type ServiceBus } from './services.ts'
import type { QuotaOptions } from '../agent/ledger/quota.ts'

/** Options of startL0Client. */
export interface L0ClientOptions {
  /** L0's home (made by `kin init`). */
  home: string
  /** The broker, `mqtts://HOST:PORT`: it must present a certificate for L0's CN from the fleet root (see docs/BROKERS.md). */
  broker: string
  /** MQTT client id of the services (default `services.<L0 CN>`, so L0's own CLI can log in as its CN meanwhile). */
  clientId?: string
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
  /** Signs a head over every durable event now (if any is new) and publishes it. */
  seal(): Promise<BlockHead | undefined>
  /** Stops taking messages, waits for work in progress, seals, disconnects, closes the ledger. */
  close(): Promise<void>
}

function parseBrokerUrl(url: string): { host: string; port: number } {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new KinError('BAD_ARGUMENT', `--broker expects mqtts://HOST:PORT, got "${url}"`)
  }
  if (u.protocol !== 'mqtts:' || u.hostname === '') throw new KinError('BAD_ARGUMENT', `--broker expects mqtts://HOST:PORT (TLS only), got "${url}"`)
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

  constructor(client: MqttClient) {
    this.client = client
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
    const granted = await this.client.subscribeAsync(filter, { qos: 1 }).catch((err: unknown) => {
      throw new KinError('BROKER_REFUSED', `the broker refused L0's subscription to ${filter}: ${(err as Error).message}`, { cause: err })
    })
    if (granted.some(g => g.qos === 128)) throw new KinError('ACL_DENIED', `the broker's ACL does not let L0 subscribe to ${filter}: give L0's CN the service rights (kin broker --export-mosquitto)`)
    this.handlers.push({ filter, deliver })
    const held = this.held
    this.held = []
    for (const m of held) {
      if (filterCovers(filter, m.topic)) deliver(m.topic, m.payload)
      else this.held.push(m)
    }
  }

  /** Takes no more messages (and acknowledges none), so what arrives from now on waits in the broker for L0's next session. */
  stop(): void {
    this.stopped = true
  }

  async publish(topic: string, payload: Uint8Array, opts: { retain?: boolean } = {}): Promise<void> {
    if (!this.client.connected) throw new KinError('BROKER_CLOSED', `not connected to the broker; ${topic} not published`)
    await this.client.publishAsync(topic, Buffer.from(payload), { qos: 1, retain: opts.retain === true })
  }
}

function connectFirst(client: MqttClient, timeoutMs: number, url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new KinError('BROKER_TIMEOUT', `no CONNACK from ${url} within ${timeoutMs} ms`)), timeoutMs)
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
    const onClose = () => done(new KinError('BROKER_UNREACHABLE', `L0 could not reach ${url}: the connection closed before CONNACK (nothing listening, or the TLS handshake failed)`))
    const onError = (err: Error & { code?: unknown }) => {
      const refused = typeof err.code === 'number'
      done(new KinError(refused ? 'BROKER_REFUSED' : 'BROKER_UNREACHABLE', `L0 could not log in to ${url}: ${err.message}`, { cause: err, detail: refused ? { connack: err.code } : undefined }))
    }
    client.on('connect', onConnect)
    client.on('error', onError)
    client.on('close', onClose)
  })
}

/**
 * Runs L0's services as a client of the broker at `opts.broker`: logs in with L0's own certificate (the broker's
 * ACL grants its CN the service topics), checks that the broker presents a certificate for L0's CN from the fleet
 * root, and keeps a persistent session (clean = false), so submissions made while L0 is away wait in the broker.
 * No aedes runs: logins, ACLs and revocation (the CRL) are the broker's. Reconnects on its own; each reconnect
 * republishes the latest head, retained.
 */
export async function startL0Client(opts: L0ClientOptions): Promise<L0ClientServices> {
  const log = makeLogger(opts.log)
  const now = opts.now ?? (() => Math.floor(Date.now() / 1000))
  const { host, port } = parseBrokerUrl(opts.broker)
  const l0 = await openL0Home(opts.home, log)
  const clientId = opts.clientId ?? `services.${l0.cn}`
  const client = mqtt.connect({
    ...tlsClientPolicy(), protocol: 'mqtts', host, port, protocolVersion: 4, clientId, clean: false, reconnectPeriod: 1000, connectTimeout: opts.connectTimeoutMs ?? 10_000,
    cert: l0.certPem, key: l0.tlsKeyPem, ca: l0.rootPem, servername: l0.cn, rejectUnauthorized: true,
  })
  let services: Awaited<ReturnType<typeof startServices>>
  const bus = new ClientBus(client)
  try {
    await connectFirst(client, opts.connectTimeoutMs ?? 10_000, opts.broker)
    services = await startServices({ l0, log, now, sealIntervalMs: opts.sealIntervalMs, quota: opts.quota, bus })
  } catch (err) {
    await client.endAsync(true).catch(() => undefined)
    await l0.close()
    throw err
  }
  let connected = true
  client.on('connect', () => {
    connected = true
    log('info', 'broker.connected', { broker: opts.broker, clientId, again: true })
    void services.miner.republishHead()
  })
  client.on('close', () => {
    if (connected) log('warn', 'broker.disconnected', { broker: opts.broker, clientId })
    connected = false
  })
  client.on('error', err => log('warn', 'broker.error', { broker: opts.broker, code: 'BROKER_REFUSED', message: err.message }))
  log('info', 'broker.connected', { broker: opts.broker, clientId, cn: l0.cn, fleet: l0.fleet, events: l0.ledger.ledger.size, height: services.miner.miner.latestHead()?.height })

  let closed: Promise<void> | undefined
  return {
    cn: l0.cn, fleet: l0.fleet, topics: services.topics, ledger: l0.ledger, miner: services.miner, clientId,
    seal: () => services.miner.sealNow(),
    close: () => {
      closed ??= (async () => {
        bus.stop()
        // Handlers in progress still publish their answers; then the final seal, then goodbye.
        await services.stop()
        await client.endAsync().catch(() => undefined)
        await l0.close()
        log('info', 'broker.closed', { broker: opts.broker, cn: l0.cn })
      })()
      return closed
    },
  }
}
