/** @module The gossip client: one broker session, messages queued per topic, waits with deadlines and coded timeouts. */
import { KinError, type KinErrorCode } from '../errors.ts'
import type { ConnectOptions, SessionStatus, Transport, TransportSession } from '../ports/transport.ts'
import { MAX_PAYLOAD_BYTES } from './topics.ts'

/** How long to wait for a message, and the coded error that says what did not arrive. */
export interface WaitOptions {
  timeoutMs: number
  code: KinErrorCode
  message: string
}

interface Waiter {
  accept: (payload: Uint8Array) => unknown
  resolve: (value: unknown) => void
  reject: (err: unknown) => void
  timer: ReturnType<typeof setTimeout>
}

// Messages nobody waits for yet are kept, so a reply that beats its wait is not lost; a chatty topic cannot grow memory.
const QUEUE_LIMIT = 32

/**
 * A session with the fleet's broker as the agent uses it. Messages are queued by exact topic from the moment
 * they arrive; `waitFor` takes the first queued or later message its `accept` function maps to a value, leaving
 * the others to other waits.
 * A session closed for good rejects every pending wait with the transport's coded error.
 */
export class GossipClient {
  readonly session: TransportSession
  private readonly queues = new Map<string, Uint8Array[]>()
  private readonly waiters = new Map<string, Waiter[]>()
  private closedWith: KinError | undefined = undefined
  private readonly stopMessages: () => void
  private readonly stopStatus: () => void

  constructor(session: TransportSession) {
    this.session = session
    this.stopMessages = session.onMessage((topic, payload) => this.deliver(topic, payload))
    this.stopStatus = session.onStatus((status, error) => {
      if (status === 'closed')
        this.failAll(error ?? new KinError('BROKER_CLOSED', 'the session with the broker closed'))
    })
  }

  /** Connects through `transport` and wraps the session. */
  static async connect(transport: Transport, options: ConnectOptions): Promise<GossipClient> {
    return new GossipClient(await transport.connect(options))
  }

  /** Subscribes (QoS 1); ACL_DENIED when the broker's ACL says no. */
  subscribe(filters: string[]): Promise<void> {
    return this.session.subscribe(filters)
  }

  /** Publishes (QoS 1) and resolves on the broker's acknowledgement. */
  publish(topic: string, payload: Uint8Array): Promise<void> {
    if (payload.length > MAX_PAYLOAD_BYTES)
      return Promise.reject(
        new KinError(
          'BAD_ARGUMENT',
          `message for ${topic} is ${payload.length} bytes, over the fleet limit of ${MAX_PAYLOAD_BYTES}`,
        ),
      )
    return this.session.publish(topic, payload)
  }

  /** Calls `listener` when the session goes offline, comes back, or closes. */
  onStatus(listener: (status: SessionStatus, error: KinError | undefined) => void): () => void {
    return this.session.onStatus(listener)
  }

  /**
   * Waits for the first message on `topic` that `accept` maps to a value other than undefined. A message it maps
   * to undefined is left for other waits on the topic (several invites share one inbox). An exception from
   * `accept` (a forged or malformed message) ends the wait with it, and the message is consumed.
   */
  waitFor<T>(topic: string, accept: (payload: Uint8Array) => T | undefined, wait: WaitOptions): Promise<T> {
    if (this.closedWith !== undefined) return Promise.reject(this.closedWith)
    const queued = this.queues.get(topic)
    for (let i = 0; queued !== undefined && i < queued.length; i++) {
      try {
        const value = accept(queued[i]!)
        if (value === undefined) continue
        queued.splice(i, 1)
        return Promise.resolve(value)
      } catch (err) {
        queued.splice(i, 1)
        return Promise.reject(err)
      }
    }
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter = {
        accept,
        resolve: resolve as (v: unknown) => void,
        reject,
        timer: setTimeout(
          () => {
            this.removeWaiter(topic, waiter)
            reject(new KinError(wait.code, wait.message, { detail: { topic, timeoutMs: wait.timeoutMs } }))
          },
          Math.max(0, wait.timeoutMs),
        ),
      }
      const list = this.waiters.get(topic)
      if (list === undefined) this.waiters.set(topic, [waiter])
      else list.push(waiter)
    })
  }

  /** The next message on `topic`, whatever it holds. */
  next(topic: string, wait: WaitOptions): Promise<Uint8Array> {
    return this.waitFor(topic, p => p, wait)
  }

  /** Ends the session; pending waits are rejected with BROKER_CLOSED. */
  async close(): Promise<void> {
    this.failAll(new KinError('BROKER_CLOSED', 'the session with the broker was closed by this device'))
    this.stopMessages()
    this.stopStatus()
    await this.session.end()
  }

  private deliver(topic: string, payload: Uint8Array): void {
    if (payload.length > MAX_PAYLOAD_BYTES) return
    const list = this.waiters.get(topic)
    for (const waiter of list === undefined ? [] : [...list]) {
      let value: unknown
      try {
        value = waiter.accept(payload)
      } catch (err) {
        this.removeWaiter(topic, waiter)
        clearTimeout(waiter.timer)
        waiter.reject(err)
        return
      }
      if (value === undefined) continue
      this.removeWaiter(topic, waiter)
      clearTimeout(waiter.timer)
      waiter.resolve(value)
      return
    }
    let queue = this.queues.get(topic)
    if (queue === undefined) this.queues.set(topic, (queue = []))
    if (queue.length >= QUEUE_LIMIT) queue.shift()
    queue.push(payload)
  }

  private removeWaiter(topic: string, waiter: Waiter): void {
    const list = this.waiters.get(topic)
    if (list === undefined) return
    const i = list.indexOf(waiter)
    if (i >= 0) list.splice(i, 1)
    if (list.length === 0) this.waiters.delete(topic)
  }

  private failAll(error: KinError): void {
    if (this.closedWith !== undefined) return
    this.closedWith = error
    for (const list of this.waiters.values()) {
      for (const w of list) {
        clearTimeout(w.timer)
        w.reject(error)
      }
    }
    this.waiters.clear()
  }
}
