/** @module The publish/subscribe session through which a device reaches its fleet's broker (MQTT on Node). */
import type { KinError } from '../errors.ts'

/** A device session: mutual TLS with the device's fleet certificate. */
export interface CertificateLogin {
  kind: 'certificate'
  /** The device certificate (PEM) presented to the broker. */
  certPem: string
  /** Its RSA private key (PEM). */
  keyPem: string
}

/** A pairing session: no client certificate; user name and password derived from a one-time code (docs/PAIRING.md step 2). */
export interface PairingLogin {
  kind: 'pairing'
  username: string
  password: string
}

/**
 * How the broker's TLS certificate is checked.
 * - `fleet`: it must chain to the fleet root and its CN (and SAN DNS entry) must be `serverCn`, L0's CN. Every
 *   session of an enrolled device uses this.
 * - `deferred`: the handshake accepts any certificate; the caller checks `peerCertificate()` once it has the
 *   fleet root. Only an enrolling device uses this, before it knows the root (see agent/gossip/enroll-session.ts).
 */
export type ServerCheck = { kind: 'fleet'; rootPem: string; serverCn: string } | { kind: 'deferred' }

/** Everything a session needs to connect. */
export interface ConnectOptions {
  /** Broker address, `mqtts://HOST:PORT`, or a comma list of them (a cluster's nodes: tried in turn, and failed over between). */
  url: string
  /** MQTT client identifier [MQTT-3.1.3-1]: a device's CN, or `pair-<inviteId>`. */
  clientId: string
  login: CertificateLogin | PairingLogin
  server: ServerCheck
  /** Give up connecting (TLS and CONNACK) after this many milliseconds. */
  connectTimeoutMs: number
  /**
   * Reconnect and resubscribe after a lost connection (device sessions that wait a long time). Never for a
   * pairing login: the code is used up by its first login, so a second one is refused.
   */
  reconnect?: boolean
}

/** Session state changes after connecting: `offline` (lost, reconnecting), `online` (back), `closed` (for good). */
export type SessionStatus = 'offline' | 'online' | 'closed'

/** One open session with the broker. Every publish and subscribe is QoS 1 [MQTT-4.3.2]. */
export interface TransportSession {
  /** Publishes and resolves once the broker acknowledged (PUBACK); rejects with a coded KinError. */
  publish(topic: string, payload: Uint8Array, options?: { retain?: boolean }): Promise<void>
  /** Subscribes to topic filters; rejects with ACL_DENIED when the broker refuses any of them (SUBACK 0x80), after the session's retries. */
  subscribe(filters: string[]): Promise<void>
  /** Calls `listener` for every message received; returns a function that removes it. */
  onMessage(listener: (topic: string, payload: Uint8Array) => void): () => void
  /** Calls `listener` on status changes; `error` says why a session went offline or closed. */
  onStatus(listener: (status: SessionStatus, error: KinError | undefined) => void): () => void
  /** DER of the certificate the broker presented in the TLS handshake, when there was one. */
  peerCertificate(): Uint8Array | undefined
  /** Whether the session is connected right now. */
  readonly connected: boolean
  /** Closes the session (sending DISCONNECT when still connected). */
  end(): Promise<void>
}

/** Opens sessions with a broker. Connect failures reject with a coded KinError (BROKER_*). */
export interface Transport {
  connect(options: ConnectOptions): Promise<TransportSession>
}

/** The CONNACK return code of a refused login [MQTT-3.2.2.3], carried in `detail.returnCode` of BROKER_REFUSED. */
export const CONNACK = {
  unacceptableProtocol: 1,
  identifierRejected: 2,
  serverUnavailable: 3,
  badUsernameOrPassword: 4,
  notAuthorized: 5,
} as const
