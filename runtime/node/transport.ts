/** @module Node transport: MQTT 3.1.1 over TLS with mqtt.js, checking the broker's certificate against the fleet root. */
import { checkServerIdentity, type PeerCertificate, type TLSSocket } from 'node:tls'
import { connect, type IClientOptions, type MqttClient } from 'mqtt'
import { KinError } from '../../agent/errors.ts'
import { tlsClientPolicy } from './tls-policy.ts'
import type { ConnectOptions, SessionStatus, Transport, TransportSession } from '../../agent/ports/transport.ts'

// OpenSSL and Node codes of a broker certificate that does not chain to the trusted root or names another host.
const IDENTITY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_PURPOSE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'KIN_BROKER_IDENTITY',
])
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EADDRNOTAVAIL',
])
const RECONNECT_PERIOD_MS = 500
/**
 * How long a subscription refused with SUBACK 0x80 is retried when the session was given several brokers (a
 * cluster's nodes): a cluster that lost a node refuses for a while as it moves session state (docs/BROKERS.md). A
 * refusal that lasts longer is the ACL's, reported as ACL_DENIED. A single broker's refusal is steady at once.
 */
export const SUBSCRIBE_RETRY_MS = 30_000
const SUBSCRIBE_BACKOFF_FIRST_MS = 250
const SUBSCRIBE_BACKOFF_MAX_MS = 4000
/**
 * How long a SUBSCRIBE waits for its SUBACK. A cluster recovering from a node loss may leave one unanswered on a
 * session that otherwise looks up; the caller gets BROKER_TIMEOUT and logs in again instead of waiting for ever.
 */
export const SUBACK_TIMEOUT_MS = 15_000
/** How long `end` lets publishes and subscriptions in flight be answered before it cuts the connection. */
const END_GRACE_MS = 2000
/** How often `end` looks whether what was in flight has been answered. */
const END_POLL_MS = 25

function asBytes(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.length).slice()
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.length)
}

/**
 * Parses `mqtts://HOST:PORT`, or a comma list of them (the nodes of a cluster), checking every one; returns the
 * first. Device sessions are always TLS.
 */
export function parseBrokerUrl(url: string): { host: string; port: number } {
  return parseBrokerUrls(url)[0]!
}

/** Every broker of a comma list `mqtts://HOST:PORT,mqtts://HOST:PORT…`, in order. */
export function parseBrokerUrls(list: string): Array<{ host: string; port: number }> {
  const urls = list
    .split(',')
    .map(u => u.trim())
    .filter(u => u !== '')
  if (urls.length === 0)
    throw new KinError('BAD_ARGUMENT', `broker address "${list}" is empty; expected mqtts://HOST:PORT`)
  return urls.map(parseOneBrokerUrl)
}

function parseOneBrokerUrl(url: string): { host: string; port: number } {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new KinError('BAD_ARGUMENT', `broker address "${url}" is not a URL; expected mqtts://HOST:PORT`)
  }
  if (u.protocol !== 'mqtts:')
    throw new KinError(
      'BAD_ARGUMENT',
      `broker address "${url}" must use mqtts:// (kinship talks to its broker over TLS only)`,
    )
  const port = u.port === '' ? 8883 : Number(u.port)
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1')
  if (host === '' || !Number.isInteger(port) || port <= 0 || port > 65535)
    throw new KinError(
      'BAD_ARGUMENT',
      `broker address "${url}" needs a host and a port, e.g. mqtts://192.168.1.10:8883`,
    )
  return { host, port }
}

/**
 * The broker must present a certificate whose CN is L0's and whose SAN holds it as a DNS name (RFC 6125 §6.4);
 * the chain to the fleet root is checked by TLS itself (`ca` = the root only, so no public CA is trusted).
 */
function fleetServerIdentity(serverCn: string): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    const cn = cert.subject?.CN
    if (cn !== serverCn)
      return Object.assign(new Error(`the broker's certificate names "${String(cn)}", not L0 (${serverCn})`), {
        code: 'KIN_BROKER_IDENTITY',
      })
    return checkServerIdentity(serverCn, cert)
  }
}

function clientOptions(
  o: ConnectOptions,
  host: string,
  port: number,
  others: Array<{ host: string; port: number }>,
): IClientOptions {
  const base: IClientOptions = {
    ...tlsClientPolicy(),
    protocol: 'mqtts',
    host,
    port,
    clientId: o.clientId,
    protocolVersion: 4,
    clean: true,
    keepalive: 30,
    reconnectPeriod: o.reconnect === true ? RECONNECT_PERIOD_MS : 0,
    connectTimeout: o.connectTimeoutMs,
    resubscribe: true,
    // Several brokers (a cluster's nodes): each reconnect moves to the next, starting after the one that answered.
    ...(others.length > 0
      ? { servers: [{ host, port }, ...others].map(a => ({ ...a, protocol: 'mqtts' as const })) }
      : {}),
  }
  const login =
    o.login.kind === 'certificate'
      ? { cert: o.login.certPem, key: o.login.keyPem }
      : { username: o.login.username, password: o.login.password }
  // 'deferred': an enrolling device does not know the fleet root yet; it checks peerCertificate() once it does.
  const server =
    o.server.kind === 'fleet'
      ? {
          ca: o.server.rootPem,
          rejectUnauthorized: true,
          servername: o.server.serverCn,
          checkServerIdentity: fleetServerIdentity(o.server.serverCn),
        }
      : { rejectUnauthorized: false }
  return { ...base, ...login, ...server } as IClientOptions
}

function errorCode(err: unknown): unknown {
  return typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined
}

// MQTT exchanges are small request/answer pairs: with Nagle's algorithm on, each answer waits for the delayed ACK
// of the previous segment (about 40 ms on Linux). The broker turns it off on its side (broker/l0.ts); so do we.
function noDelay(client: MqttClient): void {
  const socket = client.stream as Partial<TLSSocket> | undefined
  if (typeof socket?.setNoDelay === 'function') socket.setNoDelay(true)
}

/** Turns an mqtt.js or TLS error into a coded KinError that says what to do. */
export function brokerError(err: unknown, url: string): KinError {
  if (err instanceof KinError) return err
  const code = errorCode(err)
  const message = err instanceof Error ? err.message : String(err)
  if (typeof code === 'number' && code >= 1 && code <= 5) {
    // [MQTT-3.2.2.3] CONNACK return codes of MQTT 3.1.1.
    return new KinError('BROKER_REFUSED', `the broker at ${url} refused the login: ${message}`, {
      cause: err,
      detail: { returnCode: code },
    })
  }
  if (typeof code === 'string' && IDENTITY_CODES.has(code)) {
    return new KinError(
      'BROKER_IDENTITY',
      `the broker at ${url} is not this fleet's L0 (${message}); check the address, or whether someone is impersonating L0`,
      { cause: err, detail: { tlsCode: code } },
    )
  }
  if (message === 'TLS not authorized') {
    return new KinError(
      'BROKER_IDENTITY',
      `the broker at ${url} presented a certificate this fleet's root does not vouch for`,
      { cause: err },
    )
  }
  if (typeof code === 'string' && UNREACHABLE_CODES.has(code)) {
    return new KinError(
      'BROKER_UNREACHABLE',
      `cannot reach the broker at ${url} (${code}); is 'kin broker' running there?`,
      { cause: err, detail: { netCode: code } },
    )
  }
  if (typeof code === 'string' && code.startsWith('ERR_SSL_')) {
    return new KinError(
      'BROKER_REFUSED',
      `the broker at ${url} refused the TLS handshake (${code}); its fleet may not know this device's certificate`,
      { cause: err, detail: { tlsCode: code } },
    )
  }
  return new KinError('BROKER_CLOSED', `the connection to the broker at ${url} failed: ${message}`, { cause: err })
}

class MqttSession implements TransportSession {
  private readonly client: MqttClient
  private readonly url: string
  private readonly reconnect: boolean
  private peer: Uint8Array | undefined = undefined
  private readonly statusListeners = new Set<(status: SessionStatus, error: KinError | undefined) => void>()
  // One mqtt.js listener fans out to ours: a parent waiting on many invites adds many, past EventEmitter's limit.
  private readonly messageListeners = new Set<(topic: string, payload: Uint8Array) => void>()
  private lastError: KinError | undefined = undefined
  private closed = false
  // QoS 1 publishes waiting for a PUBACK and subscriptions waiting for a SUBACK. mqtt.js keeps them for a resend
  // after a reconnect; when the session ends for good they are settled here, or a caller would wait for ever.
  private readonly unanswered = new Set<(err: KinError) => void>()
  // How long a SUBACK 0x80 is retried (0: the first refusal is final).
  private readonly subscribeRetryMs: number
  private readonly subackTimeoutMs: number

  constructor(
    client: MqttClient,
    url: string,
    reconnect: boolean,
    opts: { subscribeRetryMs?: number; subackTimeoutMs?: number } = {},
  ) {
    this.client = client
    this.url = url
    this.reconnect = reconnect
    this.subscribeRetryMs = opts.subscribeRetryMs ?? 0
    this.subackTimeoutMs = opts.subackTimeoutMs ?? SUBACK_TIMEOUT_MS
    this.capturePeer()
    noDelay(client)
    client.on('error', err => {
      this.lastError = brokerError(err, url)
    })
    client.on('message', (topic: string, payload: Buffer) => {
      const bytes = asBytes(payload)
      for (const l of [...this.messageListeners]) l(topic, bytes)
    })
    client.on('connect', () => {
      this.capturePeer()
      noDelay(client)
      this.emitStatus('online', undefined)
    })
    client.on('close', () => {
      if (this.closed) return
      if (this.reconnect && !client.disconnecting) this.emitStatus('offline', this.lastError)
      else this.finish(this.lastError ?? new KinError('BROKER_CLOSED', `the broker at ${url} closed the connection`))
    })
    client.on('end', () => this.finish(undefined))
  }

  get connected(): boolean {
    return this.client.connected
  }

  private capturePeer(): void {
    const socket = this.client.stream as Partial<TLSSocket> | undefined
    const cert = typeof socket?.getPeerCertificate === 'function' ? socket.getPeerCertificate(false) : undefined
    if (cert !== undefined && cert.raw !== undefined) this.peer = asBytes(cert.raw)
  }

  private emitStatus(status: SessionStatus, error: KinError | undefined): void {
    for (const l of [...this.statusListeners]) l(status, error)
  }

  private finish(error: KinError | undefined): void {
    if (this.closed) return
    this.closed = true
    const pending = [...this.unanswered]
    this.unanswered.clear()
    const reason =
      error ??
      new KinError('BROKER_CLOSED', `the session with the broker at ${this.url} closed before the broker answered`)
    for (const reject of pending) reject(reason)
    this.emitStatus('closed', error)
  }

  private ensureUsable(): void {
    if (this.closed || (!this.reconnect && !this.client.connected)) {
      throw this.lastError ?? new KinError('BROKER_CLOSED', `the session with the broker at ${this.url} is closed`)
    }
  }

  publish(topic: string, payload: Uint8Array, options: { retain?: boolean } = {}): Promise<void> {
    try {
      this.ensureUsable()
    } catch (err) {
      return Promise.reject(err)
    }
    return new Promise((resolve, reject) => {
      this.unanswered.add(reject)
      this.client.publish(topic, asBuffer(payload), { qos: 1, retain: options.retain === true }, err => {
        this.unanswered.delete(reject)
        if (err) reject(brokerError(err, this.url))
        else resolve()
      })
    })
  }

  /**
   * Subscribes at QoS 1. Filters refused with SUBACK 0x80 [MQTT-3.9.3-2] are asked again with backoff (250 ms doubling
   * to 4 s) for subscribeRetryMs while the session stays up; those still refused then are ACL_DENIED (the broker's
   * allow list lacks them), so a steady refusal ends in a coded error after a bounded number of attempts.
   */
  async subscribe(filters: string[]): Promise<void> {
    this.ensureUsable()
    const deadline = Date.now() + this.subscribeRetryMs
    let wait = SUBSCRIBE_BACKOFF_FIRST_MS
    let pending = filters
    for (let attempt = 1; ; attempt++) {
      pending = await this.subscribeOnce(pending)
      if (pending.length === 0) return
      if (this.closed || !this.client.connected || Date.now() + wait > deadline)
        throw new KinError(
          'ACL_DENIED',
          `the broker at ${this.url} refused the subscription to ${pending.join(', ')} (SUBACK 0x80, ${attempt} attempt${attempt === 1 ? '' : 's'}): its ACL or users file does not grant this device these topics`,
          { detail: { filters: pending, attempts: attempt } },
        )
      await new Promise(r => setTimeout(r, wait))
      wait = Math.min(wait * 2, SUBSCRIBE_BACKOFF_MAX_MS)
    }
  }

  /**
   * One SUBSCRIBE; resolves with the filters the SUBACK refused (0x80), rejects when the session failed, ended, or
   * gave no SUBACK within subackTimeoutMs (BROKER_TIMEOUT).
   */
  private subscribeOnce(filters: string[]): Promise<string[]> {
    return new Promise((resolve, reject) => {
      let settled = false
      const settle = (f: () => void): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        this.unanswered.delete(fail)
        f()
      }
      const fail = (err: KinError): void => settle(() => reject(err))
      const timer = setTimeout(
        () =>
          fail(
            new KinError(
              'BROKER_TIMEOUT',
              `the broker at ${this.url} did not answer the subscription to ${filters.join(', ')} within ${this.subackTimeoutMs} ms`,
              { detail: { filters, timeoutMs: this.subackTimeoutMs } },
            ),
          ),
        this.subackTimeoutMs,
      )
      this.unanswered.add(fail)
      this.client.subscribe(filters, { qos: 1 }, (err, granted, suback) =>
        settle(() => {
          // `granted` lists the filters mqtt.js sent (it skips those this session already holds); the SUBACK's codes
          // follow that list. mqtt.js reports a SUBACK holding 0x80 as an error that still carries the packet.
          const sent = granted ?? []
          const codes = suback?.granted.map(g => (typeof g === 'number' ? g : (g as { qos: number }).qos))
          if (codes === undefined) {
            if (err) reject(brokerError(err, this.url))
            else resolve([]) // nothing sent: the session holds every filter already
            return
          }
          if (codes.length !== sent.length) {
            reject(
              brokerError(
                err ?? new Error(`the broker answered ${sent.length} filters with ${codes.length} codes`),
                this.url,
              ),
            )
            return
          }
          resolve(sent.filter((_, i) => (codes[i]! & 0x80) !== 0).map(g => g.topic))
        }),
      )
    })
  }

  onMessage(listener: (topic: string, payload: Uint8Array) => void): () => void {
    this.messageListeners.add(listener)
    return () => {
      this.messageListeners.delete(listener)
    }
  }

  onStatus(listener: (status: SessionStatus, error: KinError | undefined) => void): () => void {
    this.statusListeners.add(listener)
    return () => {
      this.statusListeners.delete(listener)
    }
  }

  peerCertificate(): Uint8Array | undefined {
    return this.peer
  }

  /**
   * Ends the session: a DISCONNECT once what is in flight was answered, or, past END_GRACE_MS, the connection cut.
   * mqtt.js itself would wait for ever for an answer that does not come (an unforced end waits for every packet in
   * flight and takes a forced end meanwhile as already under way); what still waits is settled with BROKER_CLOSED.
   */
  async end(): Promise<void> {
    const client = this.client
    const inFlight = (): boolean => Object.keys(client.outgoing).length > 0
    const grace = Date.now() + END_GRACE_MS
    while (inFlight() && client.connected && Date.now() < grace) await new Promise(r => setTimeout(r, END_POLL_MS))
    const force = inFlight() || !client.connected
    await new Promise<void>(resolve => {
      const timer = setTimeout(() => {
        client.stream?.destroy()
        resolve()
      }, END_GRACE_MS)
      client.end(force, {}, () => {
        clearTimeout(timer)
        resolve()
      })
    })
    this.finish(undefined)
  }
}

/**
 * Whether `err` is a login the broker closed before any CONNACK, with no TLS or socket error: a broker shedding load
 * (L0 closes the oldest connection not yet logged in past its cap, and one past the login deadline) does that, and so
 * may one that does not accept the certificate; a CONNACK refusal (return code 1-5) is never this. Callers that know
 * the certificate is good may log in again, a bounded number of times.
 */
export function isClosedBeforeConnack(err: unknown): boolean {
  return err instanceof KinError && err.code === 'BROKER_REFUSED' && err.detail?.['closedBeforeConnack'] === true
}

/** The mqtt.js transport (MQTT 3.1.1, QoS 1, TLS only). */
export const nodeTransport: Transport = nodeTransportWith({})

/**
 * The mqtt.js transport with how long a cluster's SUBACK 0x80 is retried (default SUBSCRIBE_RETRY_MS) and how long a
 * SUBSCRIBE waits for its SUBACK (default SUBACK_TIMEOUT_MS); tests shorten them.
 */
export function nodeTransportWith(opts: { subscribeRetryMs?: number; subackTimeoutMs?: number }): Transport {
  const timing = {
    retryMs: opts.subscribeRetryMs ?? SUBSCRIBE_RETRY_MS,
    subackTimeoutMs: opts.subackTimeoutMs ?? SUBACK_TIMEOUT_MS,
  }
  return {
    /**
     * Logs in to the broker of `options.url`; with a comma list, to the first that accepts, trying them in turn (a node
     * of a cluster that is down, or refuses while the cluster recovers from a node loss, passes to the next). The
     * last one's refusal is the one reported.
     */
    async connect(options: ConnectOptions): Promise<TransportSession> {
      const addresses = parseBrokerUrls(options.url)
      let last: unknown
      for (let i = 0; i < addresses.length; i++) {
        try {
          return await connectOne(options, addresses[i]!, [...addresses.slice(i + 1), ...addresses.slice(0, i)], timing)
        } catch (err) {
          last = err
          // A broker that is not L0 (BROKER_IDENTITY) or a bad argument is no reason to try the next node.
          if (
            addresses.length === 1 ||
            (err instanceof KinError && (err.code === 'BROKER_IDENTITY' || err.code === 'BAD_ARGUMENT'))
          )
            throw err
        }
      }
      throw last
    },
  }
}

function connectOne(
  options: ConnectOptions,
  address: { host: string; port: number },
  others: Array<{ host: string; port: number }>,
  timing: { retryMs: number; subackTimeoutMs: number },
): Promise<TransportSession> {
  return new Promise((resolve, reject) => {
    const client = connect(clientOptions(options, address.host, address.port, others))
    let settled = false
    const fail = (err: KinError) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      client.end(true)
      reject(err)
    }
    const timer = setTimeout(() => {
      fail(
        new KinError(
          'BROKER_TIMEOUT',
          `no answer from the broker at ${options.url} within ${Math.round(options.connectTimeoutMs / 1000)} s; is 'kin broker' running there?`,
        ),
      )
    }, options.connectTimeoutMs)
    client.once('connect', () => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      client.removeListener('error', onError)
      client.removeListener('close', onClose)
      resolve(
        new MqttSession(client, options.url, options.reconnect === true, {
          subscribeRetryMs: others.length > 0 ? timing.retryMs : 0,
          subackTimeoutMs: timing.subackTimeoutMs,
        }),
      )
    })
    let firstError: unknown
    const onError = (err: unknown) => {
      firstError ??= err
      // A CONNACK refusal is final; a TLS or socket error is followed by 'close'.
      if (typeof errorCode(err) === 'number') fail(brokerError(err, options.url))
    }
    const onClose = () => {
      fail(
        firstError !== undefined
          ? brokerError(firstError, options.url)
          : new KinError(
              'BROKER_REFUSED',
              `the broker at ${options.url} closed the connection during login (it may not accept this device's certificate)`,
              { detail: { closedBeforeConnack: true } },
            ),
      )
    }
    client.on('error', onError)
    client.on('close', onClose)
  })
}
