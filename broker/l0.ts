/** @module startL0: L0's services in one process — aedes over mutual TLS, login and ACLs, the fleet CA, invites, the miner. */
import { createServer, type TLSSocket } from 'node:tls'
import type { AddressInfo, Socket } from 'node:net'
import { Aedes, type AedesPublishPacket, type Client } from 'aedes'
import type { KinError } from '../agent/errors.ts'
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { nodePki } from '../runtime/node/pki.ts'
import { tlsServerPolicy } from '../runtime/node/tls-policy.ts'
import { PendingConnections } from '../runtime/node/pending-connections.ts'
import { MAX_PAYLOAD_BYTES, type FleetTopics } from '../agent/gossip/topics.ts'
import type { BlockHead } from '../agent/ledger/head.ts'
import type { PersistentLedger } from '../agent/ledger/persistent.ts'
import { guardedConnection } from './frame-guard.ts'
import { installHooks, type TopicObserver, payloadTooLarge } from './hooks.ts'
import { openL0Home, type L0Home } from './home.ts'
import { describeIdentity } from './identity.ts'
import type { InviteBook } from './invites.ts'
import type { IssuedRegistry } from './issued.ts'
import { deviceStanding, isCertified, pairingStanding } from './login.ts'
import { makeLogger, type LogSink } from './log.ts'
import type { MinerService } from './miner-service.ts'
import { Sessions, type L0Session } from './sessions.ts'
import { startServices, type RunningServices } from './services.ts'
import type { QuotaOptions } from '../agent/ledger/quota.ts'
import { serverCertificates, type ServerCertificate } from './server-certificates.ts'
import { serverNames, type ServerNames } from './server-names.ts'

/**
 * Largest MQTT packet (Remaining Length) a connection may announce before it is closed. Payloads between
 * MAX_PAYLOAD_BYTES and this are received, acknowledged, dropped and logged; beyond it reading on would only
 * make L0 buffer an attacker's bytes.
 */
export const MAX_FRAME_BYTES = 4 * MAX_PAYLOAD_BYTES
/** Shortest interval (ms) between two log lines about connections closed before they logged in, or failed handshakes. */
export const PENDING_LOG_INTERVAL_MS = 10_000
/** How often (ms) L0 rechecks open sessions against the clock (expiry, revocations that take effect later) and purges invites. */
export const SWEEP_INTERVAL_MS = 30_000
/**
 * How long (ms) a session whose identity was revoked stays open, read-only (acl.ts leavingAllows), before L0 closes
 * it: the next head (sealed within the seal interval) reaches it first, so the device reads its own revocation in
 * its verified ledger instead of only losing L0 (a refused CONNACK cannot say why: MQTT 3.1.1 has code 5 only).
 */
export const REVOKED_GRACE_MS = 5_000

/** Options of startL0. */
export interface L0Options {
  /** L0's home (made by `kin init`). */
  home: string
  /** Address to listen on (default 127.0.0.1). */
  host?: string
  /** Port (default 8883, the MQTT-over-TLS port; 0 = chosen by the OS). */
  port?: number
  /** Receives one object per log record (default: JSON lines on stderr). */
  log?: LogSink
  /** The clock, in seconds since the epoch (default: the system clock). */
  now?: () => number
  /** Longest wait (ms) before accepted events are covered by a signed head (default 200). */
  sealIntervalMs?: number
  /** Connections accepted but not yet logged in that the listener keeps; the next closes the oldest (default DEFAULT_MAX_PENDING_CONNECTIONS). */
  maxPendingConnections?: number
  /** Milliseconds a connection has from accept to an accepted login — TLS handshake and MQTT CONNECT (default DEFAULT_AUTH_DEADLINE_MS). */
  loginDeadlineMs?: number
  /** Per-submitter budgets at the miner over DEFAULT_QUOTAS (agent/ledger/quota.ts), and their clock (ms). */
  quota?: Partial<QuotaOptions>
  /** How long a revoked identity's session stays open, read-only, before L0 closes it (default REVOKED_GRACE_MS). */
  revokedGraceMs?: number
  /**
   * Host names and addresses L0's server certificates name beside its CN (default: serverNames for the listen
   * address); the certificates are made anew when these change.
   */
  serverNames?: ServerNames
  /** Told every topic a session publishes on and every filter it subscribes to, before the ACL decides (audits, tests). */
  onTopic?: TopicObserver
}

/** L0's running services. */
export interface L0Services {
  readonly host: string
  readonly port: number
  /** L0's CN (its MQTT client id when its own CLI connects). */
  readonly cn: string
  /** The fleet domain `F`. */
  readonly fleet: string
  readonly topics: FleetTopics
  /** L0's ledger: the miner's log, durable. Read it; writes go through `miner`. */
  readonly ledger: PersistentLedger
  /** The miner: submit events, seal, and its signed heads (`miner.miner`). */
  readonly miner: MinerService
  readonly invites: InviteBook
  /** Certificates the CA issued, with their serials (ca/issued.json). */
  readonly issued: IssuedRegistry
  readonly rootPem: string
  /** What L0's server certificates name beside its CN (standard MQTT clients check the host they dialled against it). */
  readonly serverNames: ServerNames
  /** Open device sessions by CN. */
  clientsByCn(): Map<string, L0Session>
  /** Open pairing sessions by invite id. */
  pairingSessions(): Map<string, L0Session>
  /** Connections accepted and not yet logged in, and how many were closed at the deadline, evicted by newer ones, or after a failed handshake. */
  pendingConnections(): { open: number; deadline: number; evicted: number; handshake: number }
  /** Publishes as L0's services (past the client ACLs), QoS 1. */
  publish(topic: string, payload: Uint8Array, opts?: { retain?: boolean }): Promise<void>
  /** Runs the periodic checks now: purges old invites, closes sessions whose identity no longer stands, renews server certificates due. */
  sweep(): void
  /** Signs a head over every durable event now (if any is new) and publishes it; resolves with it. */
  seal(): Promise<BlockHead | undefined>
  /** Closes every session, stops listening, waits for work in progress, closes the ledger file. */
  close(): Promise<void>
}

function asBytes(payload: string | Buffer): Uint8Array {
  return typeof payload === 'string'
    ? new TextEncoder().encode(payload)
    : new Uint8Array(payload.buffer, payload.byteOffset, payload.length)
}

/**
 * Closes sessions whose identity no longer stands and purges old invites (the aedes broker's periodic check). A
 * session ended by a revocation leaves read-only for `graceMs` first (REVOKED_GRACE_MS); `stop` cancels those closes.
 */
function sweeper(
  l0: L0Home,
  sessions: Sessions<Client>,
  now: () => number,
  log: ReturnType<typeof makeLogger>,
  graceMs: number,
): { sweep: () => void; stop: () => void } {
  const closing = new Set<ReturnType<typeof setTimeout>>()
  const end = (client: Client, session: L0Session, reason: KinError): void => {
    // Out of the book first: its will and anything in flight are no longer authorized.
    if (sessions.remove(client) === undefined) return
    log('warn', 'session.closed', {
      clientId: session.clientId,
      ...describeIdentity(session.identity),
      code: reason.code,
      message: reason.message,
    })
    client.close()
  }
  const sweep = (): void => {
    const t = now()
    try {
      for (const i of l0.invites.purge(t))
        log('info', 'invite.purged', { inviteId: i.inviteId, parentCn: i.parentCn, state: i.state, expires: i.expires })
    } catch (err) {
      log('error', 'broker.error', { code: 'STORAGE_IO', message: (err as Error).message })
    }
    const state = l0.ledger.ledger.state
    for (const [client, session] of sessions.entries()) {
      const id = session.identity
      const reason = id.kind === 'device' ? deviceStanding(id, state, t) : pairingStanding(id, state, l0.invites, t)
      if (reason === undefined || sessions.isLeaving(client)) continue
      if (
        id.kind !== 'device' ||
        (reason.code !== 'ACCESS_REVOKED' && reason.code !== 'ACCESS_ANCESTOR_REVOKED') ||
        graceMs <= 0
      ) {
        end(client, session, reason)
        continue
      }
      sessions.markLeaving(client)
      log('warn', 'session.leaving', {
        clientId: session.clientId,
        ...describeIdentity(id),
        code: reason.code,
        message: reason.message,
        closeInMs: graceMs,
      })
      const timer = setTimeout(() => {
        closing.delete(timer)
        end(client, session, reason)
      }, graceMs)
      closing.add(timer)
    }
  }
  return {
    sweep,
    stop: () => {
      for (const timer of closing) clearTimeout(timer)
      closing.clear()
    },
  }
}

/**
 * The TLS listener: both server certificates side by side (OpenSSL presents the one the client's signature
 * algorithms and suites allow: ECDSA to most clients, RSA to an RSA-only one such as Espruino's mbedTLS), client
 * certificates asked for and judged by `authenticate`.
 */
function tlsServer(l0: L0Home, certificates: readonly ServerCertificate[]): ReturnType<typeof createServer> {
  return createServer({
    ...tlsServerOptions(l0, certificates),
    handshakeTimeout: 10_000,
    // Pairing sessions have no certificate yet: the handshake lets them through and `authenticate` decides.
    requestCert: true,
    rejectUnauthorized: false,
  })
}

/** The secure-context part of the listener's options: policy, both certificates, the fleet root for client certificates. */
function tlsServerOptions(l0: L0Home, certificates: readonly ServerCertificate[]) {
  return {
    ...tlsServerPolicy(),
    cert: certificates.map(c => c.certPem),
    key: certificates.map(c => c.keyPem),
    ca: [l0.rootPem],
  }
}

/**
 * Starts L0's services on the home made by `kin init`: the miner over L0's ledger (refusing to start, with
 * HEAD_INCONSISTENT, when its heads file contradicts the ledger), then aedes over mutual TLS with L0's login and
 * ACLs. The latest head is retained on `ledger/head` before the first client can connect.
 */
export async function startL0(opts: L0Options): Promise<L0Services> {
  const log = makeLogger(opts.log)
  const now = opts.now ?? (() => Math.floor(Date.now() / 1000))
  const host = opts.host ?? '127.0.0.1'
  // Checked before anything opens: SERVER_NAME or SERVER_ADDRESS leave no file behind.
  const names = opts.serverNames ?? serverNames({ listen: [host] })
  // A flood closes many connections: the first is logged, then one summary line per interval at most.
  let lastClosedLog = -Infinity
  const pending = new PendingConnections({
    max: opts.maxPendingConnections,
    deadlineMs: opts.loginDeadlineMs,
    onClosed: (reason, remote, open) => {
      const t = Date.now()
      if (t - lastClosedLog < PENDING_LOG_INTERVAL_MS) return
      lastClosedLog = t
      log('warn', 'connection.closed', {
        code: reason === 'evicted' ? 'CONNECTION_EVICTED' : 'CONNECTION_DEADLINE',
        reason,
        remote,
        pending: open,
        closed: { ...pending.closed },
      })
    },
  })
  const l0 = await openL0Home(opts.home, log)
  const sessions = new Sessions<Client>()
  const sockets = new WeakMap<Client, TLSSocket>()
  const openSockets = new Set<TLSSocket>()
  const { sweep, stop: stopSweeps } = sweeper(l0, sessions, now, log, opts.revokedGraceMs ?? REVOKED_GRACE_MS)

  let aedes: Aedes
  try {
    aedes = await Aedes.createBroker({ connectTimeout: 10_000, drainTimeout: 30_000 })
  } catch (err) {
    await l0.close()
    throw err
  }

  const publish = (topic: string, payload: Uint8Array, o: { retain?: boolean } = {}): Promise<void> =>
    new Promise((resolve, reject) => {
      aedes.publish(
        { cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: o.retain === true, dup: false },
        err => (err ? reject(err) : resolve()),
      )
    })

  installHooks(aedes, {
    sessions,
    sockets,
    log,
    ...(opts.onTopic === undefined ? {} : { onTopic: opts.onTopic }),
    acl: {
      fleet: l0.fleet,
      ownsInvite: (cn, inviteId) => l0.invites.ownedBy(cn, inviteId),
      isCertified: id => isCertified(id, l0.ledger.ledger.state),
    },
    loginContext: () => ({
      root: l0.root,
      state: l0.ledger.ledger.state,
      pki: nodePki,
      crypto: nodeCrypto,
      invites: l0.invites,
      now: now(),
    }),
  })
  aedes.on('clientDisconnect', client => {
    sessions.remove(client)
  })
  // Logged in (authenticate accepted it): off the pending count and past the login deadline.
  aedes.on('client', client => {
    const socket = sockets.get(client)
    if (socket !== undefined) pending.authenticated(socket)
  })

  let services: RunningServices
  try {
    services = await startServices({
      l0,
      log,
      now,
      sealIntervalMs: opts.sealIntervalMs,
      quota: opts.quota,
      bus: {
        publish,
        // aedes's delivery must not wait on the services' fsyncs: acknowledge at once, the services run detached.
        subscribe: (filter, deliver) =>
          new Promise(resolve => {
            aedes.subscribe(
              filter,
              (packet: AedesPublishPacket, cb: () => void) => {
                cb()
                if (payloadTooLarge(packet.payload)) return
                deliver(packet.topic, asBytes(packet.payload))
              },
              resolve,
            )
          }),
      },
      // A revoke or rekey may end open sessions.
      ledgerChanged: () => sweep(),
    })
  } catch (err) {
    await new Promise<void>(resolve => aedes.close(() => resolve()))
    await l0.close()
    throw err
  }
  const topics = services.topics

  let server: ReturnType<typeof createServer>
  // Issues what is missing, stale or about to expire; says so on stderr; returns the certificates and when to renew.
  const certificates = async (): Promise<{ certificates: readonly ServerCertificate[]; renewAt: number }> => {
    const made = await serverCertificates(l0, names, now(), l0.issued)
    for (const r of made.reissued)
      log('info', 'server.certificate', {
        keyType: r.keyType,
        reason: r.reason,
        dns: [...names.dns],
        ips: [...names.ips],
        message:
          r.reason === 'names'
            ? "L0's server certificate named other hosts or addresses: issued anew"
            : `L0's server certificate issued (${r.reason})`,
      })
    return { certificates: made.certificates, renewAt: Math.min(...made.certificates.map(c => c.renewAt)) }
  }
  let renewAt: number
  try {
    const made = await certificates()
    renewAt = made.renewAt
    server = tlsServer(l0, made.certificates)
  } catch (err) {
    await new Promise<void>(resolve => aedes.close(() => resolve()))
    await services.stop()
    await l0.close()
    throw err
  }
  // Counted from accept, before any TLS byte: a peer that never finishes its handshake is closed at the deadline.
  server.on('connection', (raw: Socket) => pending.accepted(raw))
  server.on('secureConnection', (socket: TLSSocket) => {
    // MQTT is small request/response packets: Nagle plus delayed ACKs would add ~40 ms to each exchange.
    socket.setNoDelay(true)
    // A client certificate naming the fleet root as issuer but signed by another key fails OpenSSL's signature check
    // in the handshake (let through: authenticate decides) and leaves that error on OpenSSL's per-thread queue; the
    // socket's next read took it for its own and dropped the connection before the login was refused or logged. Node
    // clears the queue on return from getPeerCertificate: read it here, before any MQTT byte.
    socket.getPeerCertificate(false)
    openSockets.add(socket)
    socket.once('close', () => openSockets.delete(socket))
    const conn = guardedConnection(socket, MAX_FRAME_BYTES, announced => {
      log('warn', 'payload.dropped', {
        code: 'PAYLOAD_TOO_LARGE',
        bytes: announced,
        limit: MAX_FRAME_BYTES,
        remote: socket.remoteAddress,
        action: 'connection closed',
      })
    })
    const client = aedes.handle(conn)
    sockets.set(client, socket)
    conn.once('close', () => {
      sessions.remove(client)
    })
  })
  // A flood of failed handshakes is summarised like the closures: the first, then one line per interval with the count.
  let lastTlsLog = -Infinity
  let tlsErrors = 0
  server.on('tlsClientError', (err, socket) => {
    tlsErrors++
    const t = Date.now()
    if (t - lastTlsLog >= PENDING_LOG_INTERVAL_MS) {
      lastTlsLog = t
      log('warn', 'tls.error', { message: err.message, remote: socket.remoteAddress, failedHandshakes: tlsErrors })
    }
    pending.handshakeFailed(socket)
  })

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(opts.port ?? 8883, host, () => {
        server.off('error', reject)
        resolve()
      })
    })
  } catch (err) {
    await new Promise<void>(resolve => aedes.close(() => resolve()))
    await services.stop()
    await l0.close()
    throw err
  }
  server.on('error', err => log('error', 'broker.error', { code: 'INTERNAL', message: err.message }))
  const port = (server.address() as AddressInfo).port
  // A broker that runs for most of a year renews its server certificates in place: new handshakes get the new ones.
  let renewing = false
  const renewServerCertificates = async (): Promise<void> => {
    if (renewing || now() < renewAt) return
    renewing = true
    try {
      const made = await certificates()
      server.setSecureContext(tlsServerOptions(l0, made.certificates))
      renewAt = made.renewAt
    } catch (err) {
      log('error', 'broker.error', {
        code: 'INTERNAL',
        message: `renewing the server certificates: ${(err as Error).message}`,
      })
    } finally {
      renewing = false
    }
  }
  const sweepAndRenew = (): void => {
    sweep()
    void renewServerCertificates()
  }
  const timer = setInterval(sweepAndRenew, SWEEP_INTERVAL_MS)
  timer.unref()
  sweep()
  log('info', 'broker.listening', {
    host,
    port,
    cn: l0.cn,
    fleet: l0.fleet,
    events: l0.ledger.ledger.size,
    invites: l0.invites.list().length,
    height: services.miner.miner.latestHead()?.height,
  })

  let closed: Promise<void> | undefined
  const close = (): Promise<void> => {
    closed ??= (async () => {
      clearInterval(timer)
      stopSweeps()
      const stopped = new Promise<void>(resolve => server.close(() => resolve()))
      await new Promise<void>(resolve => aedes.close(() => resolve()))
      // Connections that never logged in are not aedes clients yet.
      for (const s of openSockets) s.destroy()
      pending.closeAll()
      await stopped
      await services.stop()
      await l0.close()
      log('info', 'broker.closed', { host, port, cn: l0.cn })
    })()
    return closed
  }

  return {
    host,
    port,
    cn: l0.cn,
    fleet: l0.fleet,
    topics,
    ledger: l0.ledger,
    miner: services.miner,
    invites: l0.invites,
    issued: l0.issued,
    rootPem: l0.rootPem,
    serverNames: names,
    clientsByCn: () => sessions.clientsByCn(),
    pairingSessions: () => sessions.pairingSessions(),
    pendingConnections: () => ({ open: pending.size, ...pending.closed }),
    publish,
    sweep: sweepAndRenew,
    close,
    seal: () => services.miner.sealNow(),
  }
}
