/** @module A device's access endpoint over mutual TLS on Node, and the requesting side: one JSON line each way. */
import { constants } from 'node:crypto'
import { connect, createSecureContext, createServer, type SecureContext, type Server, type TLSSocket } from 'node:tls'
import type { AddressInfo, Socket } from 'node:net'
import { DecodeError, KinError, isKinError } from '../../agent/errors.ts'
import { certificateLayout } from '../../agent/pki/layout.ts'
import { checkPublicKeyParameters } from '../../agent/pki/key-parameters.ts'
import { isPem, pemToDer } from '../../agent/pki/pem.ts'
import { tlsClientPolicy, tlsServerPolicy } from './tls-policy.ts'
import { checkActionName, SERVE_ACTION, type AccessSession } from '../../agent/access/session.ts'
import type { AccessAnswer, Decision } from '../../agent/access/types.ts'
import { fromHex, toHex } from '../../agent/codec/bytes.ts'
import type { BlockHead } from '../../agent/ledger/head.ts'
import { statementOf, type HeadStatement } from '../../agent/ledger/offline-proof.ts'
import { DEFAULT_MAX_PENDING_CONNECTIONS, PendingConnections, type PendingCloseReason } from './pending-connections.ts'

/*
 * WIRE (docs/PROTOCOL.md §12.2)
 *   device → requester, first, when the endpoint states its head (`heldHead`, as kin serve does): one line
 *     {"head": {"treeSize": N, "root": "<hex>"}} ({"treeSize": 0, "root": null} without a head), at most
 *     MAX_STATEMENT_BYTES with its newline; the requester reads it before it writes (DESIGN.md "Offline proofs are
 *     negotiated, not guessed")
 *   requester → device: one line, JSON {"action": "<name>"}, {"action": "<name>", "proof": "<base64>"} (an offline proof
 *     for the stated head, agent/ledger/proof-encoding.ts) or {"action": "<name>", "bundle": "<base64>"} (a standalone
 *     bundle of at most MAX_LINE_BUNDLE_BYTES), at most MAX_REQUEST_BYTES with its newline, within the request timeout
 *   device → requester: one line, JSON {allow, code, reason, path, commonAncestor, hops, peer, action, time}; then close
 * PROOF OF POSSESSION. The server asks for a client certificate (requestCert) but does not let OpenSSL refuse one
 * (rejectUnauthorized: false), so that a certificate from another CA gets a coded deny (CERT_CHAIN) from the engine
 * instead of a bare handshake failure. That switch only relaxes chain validation: OpenSSL still checks the client's
 * CertificateVerify signature over the handshake transcript with the certificate's key (RFC 5246 §7.4.8, RFC 8446
 * §4.4.3) and aborts with decrypt_error when it fails, so a completed handshake proves the client holds the private
 * key of the certificate it presented (test/serve/endpoint.test.ts presents a real certificate signed for with another key over a bare TLS 1.2 client).
 * A client that presents no certificate completes the handshake and is denied ACCESS_NO_CERTIFICATE.
 * On the requesting side the same holds for the server (ServerKeyExchange or CertificateVerify signature), and the
 * server's certificate goes through the engine's server identity check before the request is written.
 */

/** Largest request line the endpoint reads, newline included. */
export const MAX_REQUEST_BYTES = 48 * 1024
/** Largest answer line the requester reads. */
export const MAX_ANSWER_BYTES = 16384
/** Largest head statement line the requester reads, newline included. */
export const MAX_STATEMENT_BYTES = 256
/** Largest offline proof a request line may carry, decoded (a larger one is still read, and refused PROOF_OVERSIZE). */
export const MAX_LINE_PROOF_BYTES = 32 * 1024
/** Default time a peer has to send its request once the handshake is done, and a requester to get its answer. */
export const DEFAULT_ACCESS_TIMEOUT_MS = 5000

/** The answer line: a decision as the requester sees it (no undefined fields). */
export type { AccessAnswer }

/** The answer line's content for a decision. */
export function answerOf(decision: Decision): AccessAnswer {
  return {
    allow: decision.allow,
    code: decision.code,
    reason: decision.reason,
    path: decision.path,
    commonAncestor: decision.commonAncestor ?? null,
    hops: decision.hops ?? null,
    peer: decision.peer ?? null,
    action: decision.action,
    time: decision.time,
  }
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every(x => typeof x === 'string')
}

/** Parses an answer line from an untrusted server; DecodeError DECODE_SHAPE when it is not one. */
export function parseAccessAnswer(line: string): AccessAnswer {
  let v: unknown
  try {
    v = JSON.parse(line)
  } catch (cause) {
    throw new DecodeError('DECODE_SHAPE', 'the answer is not JSON', { cause })
  }
  const a = v as Record<string, unknown>
  const ok =
    typeof a === 'object' &&
    a !== null &&
    typeof a['allow'] === 'boolean' &&
    typeof a['code'] === 'string' &&
    typeof a['reason'] === 'string' &&
    isStringArray(a['path']) &&
    (a['commonAncestor'] === null || typeof a['commonAncestor'] === 'string') &&
    (a['hops'] === null || Number.isInteger(a['hops'])) &&
    (a['peer'] === null || typeof a['peer'] === 'string') &&
    typeof a['action'] === 'string' &&
    Number.isInteger(a['time'])
  // An allow must say so twice: a server cannot answer {"allow": true, "code": "POLICY_ROLE"} and be believed.
  if (!ok || a['allow'] !== (a['code'] === 'ALLOW'))
    throw new DecodeError(
      'DECODE_SHAPE',
      'the answer is not an access decision {allow, code, reason, path, commonAncestor, hops, peer, action, time}',
    )
  return {
    allow: a['allow'] as boolean,
    code: a['code'] as string,
    reason: a['reason'] as string,
    path: a['path'] as string[],
    commonAncestor: a['commonAncestor'] as string | null,
    hops: a['hops'] as number | null,
    peer: a['peer'] as string | null,
    action: a['action'] as string,
    time: a['time'] as number,
  }
}

/** A device's TLS identity: its certificate and private key, and the fleet root it trusts. */
export interface TlsIdentity {
  certPem: string
  keyPem: string
  rootPem: string
}

/** Where a decision came from, for logs. */
export interface PeerAddress {
  address: string
  port: number
}

/** Settings of an access endpoint. */
export interface AccessEndpointOptions extends TlsIdentity {
  session: AccessSession
  host?: string
  /** 0 (default) lets the OS choose. */
  port?: number
  requestTimeoutMs?: number
  /**
   * Connections kept open before they authenticate (a finished handshake whose certificate chains to the fleet root);
   * the next one closes the oldest (default DEFAULT_MAX_PENDING_CONNECTIONS). Each also has `requestTimeoutMs` from
   * accept to authenticate.
   */
  maxPendingConnections?: number
  /** Told of every connection closed before it authenticated: at its deadline, evicted by a newer one, or its handshake failed. */
  onPendingClosed?: (reason: PendingCloseReason, from: PeerAddress) => void
  /** Told of every decision, after the answer was written. */
  onDecision?: (decision: Decision, from: PeerAddress) => void
  /** Told of every handshake that failed (no decision was made: e.g. a failed proof of possession). */
  onHandshakeError?: (error: Error, from: PeerAddress) => void
  /**
   * Decides in place of `session.decide` — e.g. with the proof bundle the peer presented, or one fetched from the
   * miner when the ledger lacks a proof. Must not throw for a refusal; a throw becomes an INTERNAL deny.
   */
  decide?: (certificateDer: Uint8Array, request: AccessLine) => Decision | Promise<Decision>
  /**
   * The head this device holds, read once per connection: when given, the endpoint states it as its first line, and
   * the request carries it on as `stated` (what an offline proof must start from).
   */
  heldHead?: () => BlockHead | undefined
}

/** What a requester asks: the action, and optionally its own proof (base64 in the line, at most 32 KiB decoded). */
export interface AccessLine {
  action: string
  /** A standalone proof bundle (agent/ledger/bundle.ts). */
  bundle?: Uint8Array
  /** An offline proof for the head this endpoint stated (agent/ledger/offline-proof.ts). */
  proof?: Uint8Array
  /** The head this endpoint stated on this connection ('none' when it states none). */
  stated?: BlockHead | undefined | 'none'
}

/** The statement line's content for a head statement. */
export function statementLine(statement: HeadStatement): string {
  return JSON.stringify({
    head: { treeSize: statement.treeSize, root: statement.root === undefined ? null : toHex(statement.root) },
  })
}

/** Parses a head statement line from an untrusted device; DecodeError DECODE_SHAPE when it is not one. */
export function parseStatementLine(line: string): HeadStatement {
  let v: unknown
  try {
    v = JSON.parse(line)
  } catch (cause) {
    throw new DecodeError('DECODE_SHAPE', 'the head statement is not JSON', { cause })
  }
  const head = (v as Record<string, unknown> | null)?.['head'] as Record<string, unknown> | undefined
  const treeSize = head?.['treeSize'],
    root = head?.['root']
  const ok =
    typeof head === 'object' &&
    head !== null &&
    Number.isSafeInteger(treeSize) &&
    (treeSize as number) >= 0 &&
    (treeSize === 0 ? root === null : typeof root === 'string' && /^[0-9a-f]{64}$/.test(root))
  if (!ok)
    throw new DecodeError('DECODE_SHAPE', 'the head statement is not {"head": {"treeSize": N, "root": HEX | null}}')
  return { treeSize: treeSize as number, root: root === null ? undefined : fromHex(root as string) }
}

/** Largest proof bundle a request line may carry. */
export const MAX_LINE_BUNDLE_BYTES = 32 * 1024

/** A listening access endpoint. */
export interface AccessEndpoint {
  readonly host: string
  readonly port: number
  readonly server: Server
  /** Connections not yet authenticated, and those closed at their deadline, evicted, or after a failed handshake. */
  pending(): { open: number; deadline: number; evicted: number; handshake: number }
  /** Stops accepting, ends open connections, resolves when the server is closed. */
  close(): Promise<void>
}

function addressOf(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): PeerAddress {
  return { address: socket.remoteAddress ?? '?', port: socket.remotePort ?? 0 }
}

function parseRequest(line: string): AccessLine {
  let v: unknown
  try {
    v = JSON.parse(line)
  } catch (cause) {
    throw new DecodeError('DECODE_SHAPE', 'the request is not JSON; send one line {"action": "<name>"}', { cause })
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new DecodeError('DECODE_SHAPE', 'the request must be a JSON object {"action": "<name>"}')
  const o = v as Record<string, unknown>
  const action = checkActionName(o['action'])
  if (o['bundle'] !== undefined && o['proof'] !== undefined)
    throw new DecodeError('DECODE_SHAPE', 'a request carries a "proof" or a "bundle", not both')
  if (o['proof'] !== undefined) {
    // Refused by the verifier with its own code (PROOF_OVERSIZE) when over its limit; over the line's, refused here.
    const proof = base64Field(o['proof'], 'proof')
    if (proof.length > MAX_LINE_PROOF_BYTES)
      throw new DecodeError('DECODE_OVERSIZE', `the offered proof is over ${MAX_LINE_PROOF_BYTES} bytes`)
    return { action, proof }
  }
  if (o['bundle'] === undefined) return { action }
  const bundle = base64Field(o['bundle'], 'bundle')
  if (bundle.length > MAX_LINE_BUNDLE_BYTES)
    throw new DecodeError('DECODE_OVERSIZE', `the presented bundle is over ${MAX_LINE_BUNDLE_BYTES} bytes`)
  return { action, bundle }
}

function base64Field(value: unknown, name: string): Uint8Array {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value))
    throw new DecodeError('DECODE_FIELD', `"${name}" must be base64 text`)
  return new Uint8Array(Buffer.from(value, 'base64'))
}

// The first certificate of a PEM chain as DER; empty bytes (left to OpenSSL to refuse) when it is not one.
function ownCertificateDer(certPem: string): Uint8Array {
  try {
    return isPem(certPem) ? pemToDer(certPem, 'CERTIFICATE', 'CERT_PARSE') : new Uint8Array(0)
  } catch {
    return new Uint8Array(0)
  }
}

/** The RSA_KEY_SIZE / RSA_EXPONENT refusal of a certificate's key, if any; unparsable certificates are left to the decision (CERT_PARSE). */
function rsaParameterRefusal(certificateDer: Uint8Array, whose = "the peer's certificate"): KinError | undefined {
  let spki: Uint8Array
  try {
    spki = certificateLayout(certificateDer).spki
  } catch {
    return undefined
  }
  try {
    checkPublicKeyParameters(spki, `${whose} key`)
    return undefined
  } catch (e) {
    if (isKinError(e, 'RSA_KEY_SIZE') || isKinError(e, 'RSA_EXPONENT')) return e
    return undefined
  }
}

/**
 * The DER of the peer's leaf certificate, undefined when it presented none. getPeerCertificate(false) costs about a
 * third of getPeerX509Certificate, whose X509Certificate object Node builds at 150-250 µs a connection (measured on
 * Node 20); the leaf's `raw` is all the engine reads, and the engine parses and checks it itself.
 */
function peerCertificateDer(socket: TLSSocket): Uint8Array | undefined {
  const raw = (socket.getPeerCertificate(false) as { raw?: Buffer } | null)?.raw
  return raw === undefined ? undefined : new Uint8Array(raw.buffer, raw.byteOffset, raw.length)
}

// One connection: read one request line, decide, write one answer line, close. `settle` runs at most once.
function serveConnection(socket: TLSSocket, options: AccessEndpointOptions, timeoutMs: number): void {
  const { session } = options
  const from = addressOf(socket)
  // Read at once, before any other TLS operation on the socket: a client certificate that names the fleet root as
  // issuer (its name, even its key identifier) but was signed by another key fails OpenSSL's signature check during the
  // handshake, which rejectUnauthorized lets through but leaves on OpenSSL's per-thread error queue; the socket's next
  // read then took that stale error for its own and reset the connection, with no decision and nothing in the audit.
  // Node clears the queue on return from getPeerCertificate, so the engine gets to refuse the certificate with its code.
  const der = peerCertificateDer(socket)
  // The statement opens the exchange; the head it names is the one an offline proof on this connection must extend.
  let stated: AccessLine['stated']
  if (options.heldHead !== undefined) {
    const head = options.heldHead()
    stated = head ?? 'none'
    socket.write(statementLine(statementOf(head)) + '\n')
  }
  const chunks: Buffer[] = []
  let size = 0
  let done = false
  const settle = (decision: Decision): void => {
    if (done) return
    done = true
    socket.setTimeout(0)
    socket.end(JSON.stringify(answerOf(decision)) + '\n')
    options.onDecision?.(decision, from)
  }
  const decideOn = (line: string): void => {
    let request: AccessLine
    try {
      request = parseRequest(line)
      if (stated !== undefined) request.stated = stated
    } catch (e) {
      settle(session.refuse((e as KinError).code ?? 'DECODE_SHAPE', (e as Error).message, '?'))
      return
    }
    const { action } = request
    if (der === undefined) {
      // TLS 1.3 signs CertificateVerify with RSA-PSS, which a key under 528 bits cannot make: such a client sends an
      // empty Certificate message, and no server can tell it from one that has no certificate at all.
      settle(
        session.refuse(
          'ACCESS_NO_CERTIFICATE',
          'the peer presented no certificate in the TLS handshake (a client whose key TLS cannot sign with, e.g. RSA under 528 bits in TLS 1.3, sends none); connect with the device certificate and key',
          action,
        ),
      )
      return
    }
    // OpenSSL lets a small RSA key through here (its security-level verdict, EE_KEY_TOO_SMALL, reaches Node as
    // authorizationError 'UNSPECIFIED'), so the key's parameters are judged first, as every kinship verifier does.
    const keyRefusal = rsaParameterRefusal(der)
    if (keyRefusal !== undefined) {
      settle(session.refuse(keyRefusal.code, keyRefusal.message, action))
      return
    }
    if (options.decide === undefined) {
      settle(session.decide(der, action))
      return
    }
    // Fail closed: a decider that throws denies.
    Promise.resolve()
      .then(() => options.decide!(der, request))
      .then(settle, (e: Error) => settle(session.refuse('INTERNAL', `decision failed: ${e?.message ?? e}`, action)))
  }
  socket.setTimeout(timeoutMs, () => {
    settle(session.refuse('ACCESS_TIMEOUT', `no request line within ${timeoutMs} ms`, '?'))
  })
  socket.on('data', (chunk: Buffer) => {
    if (done) return
    const newline = chunk.indexOf(0x0a)
    const take = newline < 0 ? chunk : chunk.subarray(0, newline)
    chunks.push(take)
    size += take.length
    if (size >= MAX_REQUEST_BYTES) {
      settle(session.refuse('DECODE_OVERSIZE', `the request line is longer than ${MAX_REQUEST_BYTES - 1} bytes`, '?'))
    } else if (newline >= 0) {
      decideOn(Buffer.concat(chunks).toString('utf8'))
    }
  })
  // A requester that half-closes after its line without a newline still gets its answer; one that leaves without
  // a byte asked nothing (e.g. it refused this device in its server identity check), so nothing is decided.
  socket.on('end', () => {
    if (done) return
    if (size === 0) {
      done = true
      socket.end()
      return
    }
    decideOn(Buffer.concat(chunks).toString('utf8'))
  })
  socket.on('error', () => socket.destroy())
}

// One client context per TLS identity, kept across calls: building one parses the key and the certificate again (a
// new context on every call was a measurable share of an access). Kept only for an identity whose own key passed its
// parameter check, which depends on the certificate alone. A few identities at most per process, found by comparing
// their two PEMs (no key string built out of them on every call).
// The context trusts no CA (`ca: []`, not Node's default public roots either): the requester's chain check is the engine's server identity check (fleet root, validity,
// key usage, binding, lineage), which alone decides whether the request goes out. With the root as CA, OpenSSL would
// verify the chain a second time for a verdict nobody reads (rejectUnauthorized is off), and on success Node builds
// getPeerCertificate(true)'s object tree for checkServerIdentity: together about 470 µs an access, measured on Node
// 20, against 80 µs for the leaf's DER alone. Proof of possession does not depend on it: the server's handshake
// signature is checked against its certificate's key whatever the trust anchors.
interface ClientIdentity {
  readonly certPem: string
  readonly keyPem: string
  readonly context: SecureContext
}
const clientIdentities: ClientIdentity[] = []
const MAX_CLIENT_CONTEXTS = 8

/** The kept client context of `id`, or the KinError refusing this device's own key (RSA_KEY_SIZE, RSA_EXPONENT). */
function clientContextOf(id: { certPem: string; keyPem: string }): SecureContext | KinError {
  const held = clientIdentities.find(c => c.certPem === id.certPem && c.keyPem === id.keyPem)
  if (held !== undefined) return held.context
  // This device's own key first: OpenSSL would refuse to load a small one (ERR_SSL_EE_KEY_TOO_SMALL) or, loaded at a
  // lower security level, TLS 1.3 would send no certificate at all and the server could only say ACCESS_NO_CERTIFICATE.
  const ownRefusal = rsaParameterRefusal(ownCertificateDer(id.certPem), "this device's certificate")
  if (ownRefusal !== undefined) return ownRefusal
  const context = createSecureContext({ ...tlsClientPolicy(), cert: id.certPem, key: id.keyPem, ca: [] })
  if (clientIdentities.length >= MAX_CLIENT_CONTEXTS) clientIdentities.pop()
  clientIdentities.unshift({ certPem: id.certPem, keyPem: id.keyPem, context })
  return context
}

/** Starts a device's access endpoint: mutual TLS, one decision per connection. */
export function startAccessEndpoint(options: AccessEndpointOptions): Promise<AccessEndpoint> {
  const timeoutMs = options.requestTimeoutMs ?? DEFAULT_ACCESS_TIMEOUT_MS
  const policy = tlsServerPolicy()
  const server = createServer({
    ...policy,
    // No stateless session tickets: a requester never resumes (each access proves possession of its key in a full
    // handshake), and sealing the session with the peer's certificate into two tickets per connection cost about a
    // quarter of the endpoint's CPU per access (540 µs of 1920, measured on Node 20). Resumption stays impossible:
    // OpenSSL's stand-in stateful tickets name sessions that Node's server keeps in no cache.
    secureOptions: policy.secureOptions | constants.SSL_OP_NO_TICKET,
    cert: options.certPem,
    key: options.keyPem,
    ca: options.rootPem,
    requestCert: true,
    rejectUnauthorized: false,
    handshakeTimeout: timeoutMs,
    // A requester may half-close after its request; the answer must still go out. Every path ends the socket itself.
    allowHalfOpen: true,
  })
  // Raw sockets, so that close() also ends connections still in their handshake.
  const sockets = new Set<Socket>()
  const pending = new PendingConnections({
    max: options.maxPendingConnections ?? DEFAULT_MAX_PENDING_CONNECTIONS,
    deadlineMs: timeoutMs,
    onClosed: (reason, remote) => options.onPendingClosed?.(reason, { address: remote ?? '?', port: 0 }),
  })
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    pending.accepted(socket)
  })
  server.on('secureConnection', (socket: TLSSocket) => {
    // OpenSSL checked the chain to the fleet root (rejectUnauthorized only keeps it from refusing): a fleet device
    // is out of the pending count; anyone else stays in it, bounded, until its refusal is written and it closes.
    if (socket.authorized) pending.authenticated(socket)
    serveConnection(socket, options, timeoutMs)
  })
  server.on('tlsClientError', (error: Error, socket: TLSSocket) => {
    pending.handshakeFailed(socket)
    options.onHandshakeError?.(error, addressOf(socket))
  })
  return new Promise((resolve, reject) => {
    server.once('error', e =>
      reject(
        new KinError(
          'ACCESS_TRANSPORT',
          `cannot listen on ${options.host ?? '127.0.0.1'}:${options.port ?? 0}: ${e.message}`,
          { cause: e },
        ),
      ),
    )
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      // Once listening, a server error (e.g. out of file descriptors on accept) is reported, not thrown at the process.
      server.on('error', e => options.onHandshakeError?.(e, { address: '?', port: 0 }))
      const address = server.address() as AddressInfo
      resolve({
        host: address.address,
        port: address.port,
        server,
        pending: () => ({ open: pending.size, ...pending.closed }),
        close: () =>
          new Promise<void>(done => {
            server.close(() => done())
            for (const s of sockets) s.destroy()
          }),
      })
    })
  })
}

/** What the requesting side needs. */
export interface AccessRequestOptions extends TlsIdentity {
  host: string
  port: number
  action: string
  /** The server identity check on the server's certificate DER (an AccessSession's `checkServer`). */
  checkServer: (certificateDer: Uint8Array) => Decision
  timeoutMs?: number
  /** This device's proof bundle, for a server that may lack its proofs (offline). */
  bundle?: Uint8Array
  /**
   * Negotiation (DESIGN.md "Offline proofs are negotiated"): wait for the server's head statement, then send what this
   * answers for it — an offline proof, a bundle, or nothing. Its time counts against `timeoutMs`; a throw sends nothing.
   */
  proofFor?: (statement: HeadStatement) => Promise<OfferedProof>
}

/** What a requester sends with its action for a stated head. */
export interface OfferedProof {
  proof?: Uint8Array
  bundle?: Uint8Array
}

/** What came of a request: the server identity check, and the server's answer when the request was sent. */
export interface AccessOutcome {
  server: Decision
  /** Undefined when the server failed its identity check: then nothing was sent. */
  answer: AccessAnswer | undefined
  /** The head the server stated, when the request negotiated. */
  statement?: HeadStatement
  /** What went with the action: an offline proof, a bundle or nothing (bytes before base64). */
  sent?: { kind: 'proof' | 'bundle' | 'none'; bytes: number }
}

/**
 * Asks a device for `action` over mutual TLS. The server's certificate is checked by the engine before anything
 * is sent; a server that fails it gets nothing (outcome.answer undefined). Throws ACCESS_TRANSPORT when no TLS
 * session comes about (unreachable, handshake refused), ACCESS_TIMEOUT, or DECODE_SHAPE for a malformed answer.
 */
export function requestAccess(options: AccessRequestOptions): Promise<AccessOutcome> {
  const action = checkActionName(options.action)
  const timeoutMs = options.timeoutMs ?? DEFAULT_ACCESS_TIMEOUT_MS
  const target = `${options.host}:${options.port}`
  let context: SecureContext | KinError
  try {
    context = clientContextOf(options)
  } catch (e) {
    // The key or certificate PEM OpenSSL would not load: a coded refusal, never a bare OpenSSL error.
    return Promise.reject(
      new KinError('ACCESS_TRANSPORT', `cannot use this device's TLS identity: ${(e as Error).message}`, { cause: e }),
    )
  }
  if (context instanceof KinError) return Promise.reject(context)
  const secureContext = context
  return new Promise((resolve, reject) => {
    let server: Decision | undefined
    let received = ''
    let settled = false
    // With negotiation, the first line is the server's head statement; the request goes once it is answered.
    let statement: HeadStatement | undefined
    let awaitingStatement = options.proofFor !== undefined
    let sent: AccessOutcome['sent']
    const finish = (error: KinError | undefined, outcome?: AccessOutcome): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      if (error !== undefined) reject(error)
      else
        resolve({
          ...outcome!,
          ...(statement === undefined ? {} : { statement }),
          ...(sent === undefined ? {} : { sent }),
        })
    }
    const send = (offered: OfferedProof): void => {
      if (settled) return
      const line: Record<string, string> = { action }
      if (offered.proof !== undefined) line['proof'] = Buffer.from(offered.proof).toString('base64')
      else if (offered.bundle !== undefined) line['bundle'] = Buffer.from(offered.bundle).toString('base64')
      sent =
        offered.proof !== undefined
          ? { kind: 'proof', bytes: offered.proof.length }
          : offered.bundle !== undefined
            ? { kind: 'bundle', bytes: offered.bundle.length }
            : { kind: 'none', bytes: 0 }
      socket.write(JSON.stringify(line) + '\n')
    }
    const onStatement = (line: string): void => {
      awaitingStatement = false
      try {
        statement = parseStatementLine(line)
      } catch (e) {
        finish(e as KinError)
        return
      }
      options.proofFor!(statement).then(send, (e: Error) =>
        finish(
          isKinError(e)
            ? e
            : new KinError('INTERNAL', `building the proof for ${target} failed: ${e?.message ?? e}`, { cause: e }),
        ),
      )
    }
    // Device certificates name devices (CN and SAN dNSNames of the fleet), not the address dialled, so the usual
    // hostname check cannot apply: it is switched off here, and the engine's server identity check (fleet root,
    // ledger binding, lineage) runs on the certificate in its place before any byte of the request is written.
    // rejectUnauthorized is off for the same reason as on the server: a foreign certificate gets its coded refusal
    // (and the context trusts no CA, see clientContextOf: OpenSSL's verdict is always off and never read).
    let socket: TLSSocket
    try {
      socket = connect({
        host: options.host,
        port: options.port,
        secureContext,
        rejectUnauthorized: false,
        checkServerIdentity: () => undefined,
      })
    } catch (e) {
      // Options node:tls would not take: a coded refusal, never a bare error.
      reject(
        new KinError('ACCESS_TRANSPORT', `cannot use this device's TLS identity: ${(e as Error).message}`, {
          cause: e,
        }),
      )
      return
    }
    const timer = setTimeout(
      () => finish(new KinError('ACCESS_TIMEOUT', `no answer from ${target} within ${timeoutMs} ms`)),
      timeoutMs,
    )
    socket.once('secureConnect', () => {
      const der = peerCertificateDer(socket)
      if (der === undefined) {
        finish(undefined, { server: options.checkServer(new Uint8Array(0)), answer: undefined })
        return
      }
      server = options.checkServer(der)
      if (server.action !== SERVE_ACTION)
        server = {
          ...server,
          allow: false,
          code: 'INTERNAL',
          reason: 'the server check did not run the server identity check',
        }
      if (!server.allow) {
        finish(undefined, { server, answer: undefined })
        return
      }
      if (!awaitingStatement) send(options.bundle === undefined ? {} : { bundle: options.bundle })
    })
    const answerWith = (line: string): void => {
      try {
        finish(undefined, { server: server!, answer: parseAccessAnswer(line) })
      } catch (e) {
        finish(e as KinError)
      }
    }
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      if (server === undefined || !server.allow) return
      received += chunk
      if (awaitingStatement) {
        const end = received.indexOf('\n')
        if (end < 0) {
          if (received.length > MAX_STATEMENT_BYTES)
            finish(
              new DecodeError(
                'DECODE_OVERSIZE',
                `the head statement from ${target} is longer than ${MAX_STATEMENT_BYTES} bytes`,
              ),
            )
          return
        }
        const line = received.slice(0, end)
        received = received.slice(end + 1)
        onStatement(line)
        if (received.length === 0) return
      }
      const newline = received.indexOf('\n')
      if (newline >= 0) answerWith(received.slice(0, newline))
      else if (received.length > MAX_ANSWER_BYTES)
        finish(new DecodeError('DECODE_OVERSIZE', `the answer from ${target} is longer than ${MAX_ANSWER_BYTES} bytes`))
    })
    socket.on('end', () => {
      if (server !== undefined && server.allow && !awaitingStatement && received.length > 0) answerWith(received)
      else
        finish(
          new KinError(
            'ACCESS_TRANSPORT',
            `${target} closed the connection without an answer (did the TLS handshake fail, or was this device's certificate refused?)`,
          ),
        )
    })
    socket.on('error', (e: Error) => {
      finish(new KinError('ACCESS_TRANSPORT', `connection to ${target} failed: ${e.message}`, { cause: e }))
    })
  })
}
