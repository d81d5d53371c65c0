/** @module Connections a TLS listener accepted but has not authenticated yet: a deadline each, and a cap with the oldest out first. */
import type { Socket } from 'node:net'
import { KinError } from '../../agent/errors.ts'

/** Default connections a listener keeps open before they authenticate; the next one closes the oldest. */
export const DEFAULT_MAX_PENDING_CONNECTIONS = 128
/** Default time (ms) from accept to authentication (TLS handshake, and the login where one follows). */
export const DEFAULT_AUTH_DEADLINE_MS = 10_000

/** Why a pending connection was closed before it authenticated: its deadline, a newer one past the cap, a failed TLS handshake. */
export type PendingCloseReason = 'deadline' | 'evicted' | 'handshake'

/** Settings of a PendingConnections. */
export interface PendingConnectionsOptions {
  /** Connections kept before authentication (default DEFAULT_MAX_PENDING_CONNECTIONS). */
  max?: number
  /** Milliseconds from accept to authentication (default DEFAULT_AUTH_DEADLINE_MS). */
  deadlineMs?: number
  /** Told of every connection closed here, after it was destroyed. */
  onClosed?: (reason: PendingCloseReason, remote: string | undefined, pending: number) => void
}

/** What identifies one TCP connection of a listener, on the raw socket and on the TLS socket over it alike. */
type PeerKey = string

function peerKey(socket: Pick<Socket, 'remoteAddress' | 'remotePort'>): PeerKey | undefined {
  return socket.remoteAddress === undefined ? undefined : `${socket.remoteAddress}|${socket.remotePort}`
}

interface Pending {
  readonly socket: Socket
  readonly remote: string | undefined
  readonly timer: ReturnType<typeof setTimeout>
}

/** Positive integer setting `name` or its default; BAD_ARGUMENT otherwise. */
function positive(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback
  if (!Number.isSafeInteger(v) || v < 1)
    throw new KinError('BAD_ARGUMENT', `"${name}" expected a positive integer, got ${v}`)
  return v
}

/**
 * The raw sockets of one listener between accept and authentication. Node's `handshakeTimeout` only reports a
 * stalled handshake (tlsClientError) and leaves the socket open, and nothing bounds how many handshakes may be in
 * flight: a peer that opens connections and sends nothing, or half a ClientHello, would hold a file descriptor each
 * until L0 or the device can accept no one else. Here each accepted socket gets a deadline, and past `max` the
 * oldest pending one is closed: a flood only ever evicts its own older sockets, and a device that completes its
 * login in time is never among them.
 */
export class PendingConnections {
  readonly max: number
  readonly deadlineMs: number
  /** Connections closed at their deadline, evicted by newer ones, or after a failed handshake, since the listener started. */
  readonly closed: Record<PendingCloseReason, number> = { deadline: 0, evicted: 0, handshake: 0 }
  readonly #pending = new Map<PeerKey, Pending>()
  readonly #onClosed: PendingConnectionsOptions['onClosed']

  constructor(options: PendingConnectionsOptions = {}) {
    this.max = positive('maxPendingConnections', options.max, DEFAULT_MAX_PENDING_CONNECTIONS)
    this.deadlineMs = positive('authDeadlineMs', options.deadlineMs, DEFAULT_AUTH_DEADLINE_MS)
    this.#onClosed = options.onClosed
  }

  /** Connections open and not yet authenticated. */
  get size(): number {
    return this.#pending.size
  }

  /** Tracks a socket the listener just accepted (its `connection` event); evicts the oldest beyond `max`. */
  accepted(socket: Socket): void {
    const key = peerKey(socket)
    // Already gone (reset before the event ran): nothing to hold.
    if (key === undefined) return
    const remote = socket.remoteAddress
    const timer = setTimeout(() => this.#close(key, 'deadline'), this.deadlineMs)
    timer.unref()
    this.#pending.set(key, { socket, remote, timer })
    socket.once('close', () => {
      if (this.#pending.get(key)?.socket === socket) this.#forget(key)
    })
    while (this.#pending.size > this.max) this.#close(this.#pending.keys().next().value!, 'evicted')
  }

  /** The connection of `socket` (the raw socket or the TLS socket over it) authenticated: no longer counted nor bound by the deadline. */
  authenticated(socket: Pick<Socket, 'remoteAddress' | 'remotePort'>): void {
    const key = peerKey(socket)
    if (key !== undefined) this.#forget(key)
  }

  /**
   * The TLS handshake of `socket`'s connection failed or timed out (tlsClientError): closes it, since Node leaves
   * such a socket open when the event has a listener.
   */
  handshakeFailed(socket: Socket): void {
    const key = peerKey(socket)
    if (key !== undefined && this.#pending.has(key)) this.#close(key, 'handshake')
    socket.destroy()
  }

  /** Whether the connection of `socket` is still waiting to authenticate. */
  has(socket: Pick<Socket, 'remoteAddress' | 'remotePort'>): boolean {
    const key = peerKey(socket)
    return key !== undefined && this.#pending.has(key)
  }

  /** Closes every pending connection (listener shutdown). */
  closeAll(): void {
    for (const key of [...this.#pending.keys()]) this.#forget(key)?.socket.destroy()
  }

  #forget(key: PeerKey): Pending | undefined {
    const p = this.#pending.get(key)
    if (p === undefined) return undefined
    clearTimeout(p.timer)
    this.#pending.delete(key)
    return p
  }

  #close(key: PeerKey, reason: PendingCloseReason): void {
    const p = this.#forget(key)
    if (p === undefined) return
    this.closed[reason]++
    p.socket.destroy()
    try {
      this.#onClosed?.(reason, p.remote, this.#pending.size)
    } catch {
      /* a log sink's failure is not the peer's */
    }
  }
}
