/** @module An in-memory Transport for gossip-client tests: one bus, MQTT topic filters, QoS 1 acknowledged at once. */
import { KinError } from '../../agent/errors.ts'
import type { ConnectOptions, SessionStatus, Transport, TransportSession } from '../../agent/ports/transport.ts'

/** [MQTT-4.7.1] `+` matches one level, a trailing `#` the rest (and the parent level). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/'),
    t = topic.split('/')
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true
    if (i >= t.length) return false
    if (f[i] !== '+' && f[i] !== t[i]) return false
  }
  return f.length === t.length
}

/** One memory session. */
export class MemorySession implements TransportSession {
  readonly bus: MemoryBus
  readonly options: ConnectOptions
  readonly filters: string[] = []
  private readonly messageListeners = new Set<(topic: string, payload: Uint8Array) => void>()
  private readonly statusListeners = new Set<(status: SessionStatus, error: KinError | undefined) => void>()
  connected = true

  constructor(bus: MemoryBus, options: ConnectOptions) {
    this.bus = bus
    this.options = options
  }

  async publish(topic: string, payload: Uint8Array): Promise<void> {
    if (!this.connected) throw new KinError('BROKER_CLOSED', 'closed')
    this.bus.published.push({ from: this.options.clientId, topic, payload })
    for (const s of this.bus.sessions)
      if (s.connected && s.filters.some(f => topicMatches(f, topic))) s.receive(topic, payload)
  }

  async subscribe(filters: string[]): Promise<void> {
    const refused = filters.filter(f => this.bus.refuse.has(f))
    if (refused.length > 0) throw new KinError('BROKER_REFUSED', `refused ${refused.join(', ')}`)
    this.filters.push(...filters)
  }

  receive(topic: string, payload: Uint8Array): void {
    queueMicrotask(() => {
      for (const l of [...this.messageListeners]) l(topic, payload.slice())
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

  /** Simulates the broker dropping the session for good. */
  drop(error: KinError): void {
    this.connected = false
    for (const l of [...this.statusListeners]) l('closed', error)
  }

  peerCertificate(): Uint8Array | undefined {
    return this.bus.peerCertificate
  }

  async end(): Promise<void> {
    if (!this.connected) return
    this.connected = false
    for (const l of [...this.statusListeners]) l('closed', undefined)
  }
}

/** The shared bus; `refuse` lists filters whose subscription is refused, `connectError` fails every connect. */
export class MemoryBus implements Transport {
  readonly sessions: MemorySession[] = []
  readonly published: Array<{ from: string; topic: string; payload: Uint8Array }> = []
  readonly refuse = new Set<string>()
  connectError: KinError | undefined = undefined
  peerCertificate: Uint8Array | undefined = undefined

  async connect(options: ConnectOptions): Promise<TransportSession> {
    if (this.connectError !== undefined) throw this.connectError
    const s = new MemorySession(this, options)
    this.sessions.push(s)
    return s
  }
}
