/** @module aedes hooks of L0's broker: login (authenticate), topic ACLs (authorizePublish/Subscribe), payload limit (authorizeForward). */
import type { TLSSocket } from 'node:tls'
import type { Aedes, AuthenticateError, Client } from 'aedes'
import { KinError, VerificationError } from '../agent/errors.ts'
import { MAX_PAYLOAD_BYTES, isOldSchemeTopic } from '../agent/gossip/topics.ts'
import { leavingAllows, publishAllowed, subscribeAllowed, type AclContext } from './acl.ts'
import { PAIR_USERNAME_PREFIX, describeIdentity, type SessionIdentity } from './identity.ts'
import { connackFor, deviceLogin, pairingLogin, type LoginContext } from './login.ts'
import type { L0Logger } from './log.ts'
import type { Sessions } from './sessions.ts'

/** What the hooks read. */
export interface HookContext {
  readonly sessions: Sessions<Client>
  /** The TLS socket under each aedes client (the certificate lives there). */
  readonly sockets: WeakMap<Client, TLSSocket>
  readonly acl: AclContext
  /** A fresh login context (current ledger state and clock) per login. */
  loginContext(): LoginContext
  readonly log: L0Logger
  /** Told every topic and filter a session asks to use, before the ACL decides. */
  readonly onTopic?: TopicObserver
}

/** Sees what sessions ask of the broker: a topic published on or a filter subscribed to, and by which client id. */
export type TopicObserver = (use: { op: 'publish' | 'subscribe'; clientId: string; topic: string }) => void

function payloadLength(payload: string | Buffer | undefined): number {
  if (payload === undefined) return 0
  return typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length
}

function peerCertificateDer(socket: TLSSocket | undefined): Uint8Array | undefined {
  const peer = socket?.getPeerCertificate(false)
  // An empty object means the client sent no certificate.
  if (peer === undefined || peer === null || peer.raw === undefined) return undefined
  return new Uint8Array(peer.raw.buffer, peer.raw.byteOffset, peer.raw.length)
}

function authenticate(
  ctx: HookContext,
  client: Client,
  username: string | undefined,
  password: Buffer | undefined,
): SessionIdentity | Promise<SessionIdentity> {
  const socket = ctx.sockets.get(client)
  const der = peerCertificateDer(socket)
  const login = ctx.loginContext()
  // A presented certificate decides, whatever else comes with it: a foreign certificate is never waved through on a code.
  if (der !== undefined) return deviceLogin(der, client.id, login)
  if (typeof username === 'string' && username.startsWith(PAIR_USERNAME_PREFIX))
    return pairingLogin(username, password, client.id, login)
  throw new VerificationError(
    'LOGIN_NO_CREDENTIALS',
    'log in with a fleet certificate, or with a pairing code (user name pair:<inviteId>)',
  )
}

// A device built before dotless topics: told apart from an ACL refusal so its operator knows to update it.
const OLD_SCHEME_MESSAGE =
  'kinship topics hold no dots: kin/<fleet domain with . as _>/…, devices by their 16-character label (update the device)'

/** Installs the hooks on an aedes instance. */
export function installHooks(aedes: Aedes, ctx: HookContext): void {
  aedes.authenticate = (client, username, password, done) => {
    const remote = ctx.sockets.get(client)?.remoteAddress
    const refuse = (err: unknown): void => {
      const code = err instanceof KinError ? err.code : 'INTERNAL'
      const connack = connackFor(code)
      ctx.log('warn', 'login.refused', {
        clientId: client.id,
        code,
        message: (err as Error).message,
        connack,
        remote,
        ...(typeof username === 'string' && username.startsWith(PAIR_USERNAME_PREFIX) ? { username } : {}),
      })
      const refusal = Object.assign(new Error(`${code}: ${(err as Error).message}`), {
        returnCode: connack,
      }) as AuthenticateError
      done(refusal, false)
    }
    const accept = (identity: SessionIdentity): void => {
      // Gone while its code was being used up durably: aedes drops the answer, the book keeps no session for it.
      if (client.closed) return done(null, false)
      try {
        ctx.sessions.add(client, { clientId: client.id, identity, since: Date.now(), remote })
        const provisional = identity.kind === 'device' && !ctx.acl.isCertified(identity)
        ctx.log('info', 'login.accepted', {
          clientId: client.id,
          ...describeIdentity(identity),
          remote,
          ...(provisional ? { provisional: true } : {}),
        })
      } catch (err) {
        return refuse(err)
      }
      done(null, true)
    }
    let identity: SessionIdentity | Promise<SessionIdentity>
    try {
      identity = authenticate(ctx, client, username, password)
    } catch (err) {
      return refuse(err)
    }
    // A pairing login waits for its code's durable use (a group commit); a device login answers at once.
    if (identity instanceof Promise) identity.then(accept, refuse)
    else accept(identity)
  }

  aedes.authorizePublish = (client, packet, done) => {
    // A will of a session L0 already ended (client gone from the book) is not published.
    const identity = client === null ? undefined : ctx.sessions.identityOf(client)
    if (client === null || identity === undefined) return done(new Error('no session'))
    ctx.onTopic?.({ op: 'publish', clientId: client.id, topic: packet.topic })
    if (isOldSchemeTopic(packet.topic)) {
      ctx.log('warn', 'acl.refused', {
        op: 'publish',
        clientId: client.id,
        ...describeIdentity(identity),
        topic: packet.topic,
        code: 'TOPIC_OLD_SCHEME',
        message: OLD_SCHEME_MESSAGE,
      })
      return done(new Error(`TOPIC_OLD_SCHEME: ${client.id} published on ${packet.topic}: ${OLD_SCHEME_MESSAGE}`))
    }
    const leaving =
      identity.kind === 'device' &&
      ctx.sessions.isLeaving(client) &&
      !leavingAllows(identity.cn, packet.topic, ctx.acl.fleet)
    if (leaving || !publishAllowed(identity, packet.topic, ctx.acl)) {
      ctx.log('warn', 'acl.refused', {
        op: 'publish',
        clientId: client.id,
        ...describeIdentity(identity),
        topic: packet.topic,
        code: 'ACL_DENIED',
      })
      // [MQTT-3.3.5-2] MQTT 3.1.1 has no negative PUBACK: the broker closes the connection.
      return done(new Error(`ACL_DENIED: ${client.id} may not publish on ${packet.topic}`))
    }
    // Only L0's services keep retained messages; a device's retained payload would outlive its session.
    packet.retain = false
    const bytes = payloadLength(packet.payload)
    if (bytes > MAX_PAYLOAD_BYTES) {
      // Acknowledged but never delivered: authorizeForward and the services drop it (see payloadTooLarge).
      ctx.log('warn', 'payload.dropped', {
        clientId: client.id,
        ...describeIdentity(identity),
        topic: packet.topic,
        code: 'PAYLOAD_TOO_LARGE',
        bytes,
        limit: MAX_PAYLOAD_BYTES,
      })
    }
    done(null)
  }

  aedes.authorizeSubscribe = (client, sub, done) => {
    const identity = ctx.sessions.identityOf(client)
    if (identity === undefined) return done(new Error('no session'))
    ctx.onTopic?.({ op: 'subscribe', clientId: client.id, topic: sub.topic })
    if (isOldSchemeTopic(sub.topic)) {
      ctx.log('warn', 'acl.refused', {
        op: 'subscribe',
        clientId: client.id,
        ...describeIdentity(identity),
        topic: sub.topic,
        code: 'TOPIC_OLD_SCHEME',
        message: OLD_SCHEME_MESSAGE,
      })
      return done(null, null)
    }
    // A leaving session keeps the subscriptions it had; it takes no new ones.
    const leaving = ctx.sessions.isLeaving(client)
    if (leaving || !subscribeAllowed(identity, sub.topic, ctx.acl)) {
      // Two refusals are part of the protocol, and say so: a session L0 is closing, and a new device's first
      // session asking before L0's miner recorded its certified event (it asks again until admitted).
      const provisional = identity.kind === 'device' && !ctx.acl.isCertified(identity)
      ctx.log('warn', 'acl.refused', {
        op: 'subscribe',
        clientId: client.id,
        ...describeIdentity(identity),
        topic: sub.topic,
        code: 'ACL_DENIED',
        ...(leaving ? { leaving: true } : {}),
        ...(provisional ? { provisional: true } : {}),
      })
      // [MQTT-3.9.3] the SUBACK carries 0x80 (failure) for this filter; the session goes on.
      return done(null, null)
    }
    done(null, sub)
  }

  aedes.authorizeForward = (client, packet) => {
    const identity = ctx.sessions.identityOf(client)
    if (identity === undefined) return null
    if (
      identity.kind === 'device' &&
      ctx.sessions.isLeaving(client) &&
      !leavingAllows(identity.cn, packet.topic, ctx.acl.fleet)
    )
      return null
    if (payloadTooLarge(packet.payload)) return null
    return packet
  }
}

/** True for a payload the broker accepted from a client but must not deliver (over MAX_PAYLOAD_BYTES). */
export function payloadTooLarge(payload: string | Buffer | undefined): boolean {
  return payloadLength(payload) > MAX_PAYLOAD_BYTES
}
