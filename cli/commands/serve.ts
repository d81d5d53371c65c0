/** @module `kin serve`: a device's access endpoint over mutual TLS; one decision per connection, each audited and logged. */
import { DEFAULT_RENEW_AT, startAutoRenew } from '../auto-renew.ts'
import { tlsServerPolicy } from '../../runtime/node/tls-policy.ts'
import { KinError } from '../../agent/errors.ts'
import type { Decision } from '../../agent/access/types.ts'
import { answerOf, startAccessEndpoint, type AccessLine, type PeerAddress } from '../../runtime/node/tls-endpoint.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { DEFAULT_MAX_PENDING_CONNECTIONS } from '../../runtime/node/pending-connections.ts'
import { nodeSigning } from '../../runtime/node/signing.ts'
import type { TransportSession } from '../../agent/ports/transport.ts'
import { serveInboxChallenges, type InboxVerifier, type OpenAsk } from '../../agent/gossip/challenge-session.ts'
import type { LedgerFollower } from '../../agent/gossip/follower.ts'
import { decideWithProofs } from '../../agent/gossip/missing-proof.ts'
import { describeRevocation, ownRevocation, type RevocationNotice } from '../../agent/gossip/revocation-notice.ts'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { parseDurationMs, parseMaxPending, requireString, usageError, type CommandSpec } from '../args.ts'
import { Home } from '../../runtime/home.ts'
import { EXIT_REVOKED, isoTime } from '../output.ts'
import { describeDecision, openAccessHome, type AccessHome } from '../../runtime/access-home.ts'
import { followsBroker, headSummary, openFollowingHome, type FollowingHome } from '../../runtime/following-home.ts'
import { listenForCommands, nextStopSignal } from './sync.ts'
import type { ControlSocket } from '../control-socket.ts'
import { foreignInboxLog } from '../foreign-inbox-log.ts'

/** How long the miner has to hand over a missing proof during a request (DESIGN.md "Access decision" step 5: default 2 s). */
const PROOF_DEADLINE_MS = 2000
/** How often a serving device looks at its ledger file between requests (one lstat when nothing changed). */
const LEDGER_WATCH_MS = 1000

/**
 * The inbox challenge service of a serving home (PROTOCOL.md §12.4): the home's session decides, a retryable deny gets
 * a proof from the miner through the follower (DESIGN.md "Access decision" step 5), results are signed with the home's TLS key.
 */
function inboxServiceOf(
  device: AccessHome,
  json: boolean,
  onDecision: (decision: Decision, ask: OpenAsk) => void,
  follower: LedgerFollower,
  foreign: (sender: string | undefined, detail: string) => void,
): InboxVerifier {
  return serveInboxChallenges({
    fleet: device.config.fleet,
    self: device.cn,
    certificateDer: DeviceCertificate.from(device.certPem, { sha256: nodeCrypto.sha256 }).der,
    privateKeyPem: device.keyPem,
    signing: nodeSigning,
    randomBytes: nodeCrypto.randomBytes,
    clock: { now: () => Math.floor(Date.now() / 1000) },
    decider: device.session,
    onDecision,
    retry: async (certificate, action) => {
      const state = device.ledger.state()
      return (
        await decideWithProofs(device.session, certificate, action, {
          crypto: nodeCrypto,
          deadlineMs: PROOF_DEADLINE_MS,
          anchor: {
            minerKey: state.genesis?.body.minerKey ?? new Uint8Array(32),
            genesisId: state.genesis?.event.idHex,
            knownHead: device.heldHead(),
          },
          fetch: async (cn: string, ms: number) => (await follower.requestBundle(cn, ms)).bytes,
        })
      ).decision
    },
    onIgnored: (reason, detail, code, sender) => {
      if (reason === 'foreign') return foreign(sender, detail)
      line(
        json,
        { inboxIgnored: reason, detail, ...(code === undefined ? {} : { code }) },
        `${isoTime(Math.floor(Date.now() / 1000))} inbox: ignored a message (${reason}): ${detail}`,
      )
    },
  })
}

function portOf(text: string): number {
  const port = Number(text)
  if (!/^\d+$/.test(text) || port > 65535) throw usageError(`--port expects 0..65535 (0: any free port), got "${text}"`)
  return port
}

function line(json: boolean, value: object, text: string): void {
  process.stdout.write((json ? JSON.stringify(value) : text) + '\n')
}

/** Says, once and plainly, that this device was revoked: a coded line on stdout, and the same in audit.log. */
async function tellRevoked(json: boolean, device: AccessHome, notice: RevocationNotice): Promise<void> {
  const message = describeRevocation(notice)
  line(json, { revoked: true, code: 'IDENTITY_REVOKED', message, notice }, `IDENTITY_REVOKED: ${message}`)
  await device
    .audit!.appendLine(
      JSON.stringify({ time: Math.floor(Date.now() / 1000), alarm: 'IDENTITY_REVOKED', message, notice }),
    )
    .catch((e: Error) => process.stderr.write(`kin serve: audit.log: ${e.message}\n`))
}

function parseRenewAt(text: string): number {
  const f = Number(text)
  if (!/^0?\.\d+$/.test(text) || !(f > 0 && f < 1))
    throw usageError(`--renew-at expects a fraction between 0 and 1 such as 0.2, got "${text}"`)
  return f
}

/** The shortest --probe: each probe is one sync request to L0 per device. */
const MIN_PROBE_MS = 10_000

/** `kin serve`. */
export const serve: CommandSpec = {
  name: 'serve',
  usage:
    'kin serve --home DIR [--host 127.0.0.1] [--port N] [--timeout MS] [--max-pending N] [--renew-at 0.2] [--probe 5m] [--offline] [--json]',
  summary:
    "Run this device's access endpoint: mutual TLS with its certificate, the fleet root as CA. Each connection sends one line " +
    '{"action": "NAME"} and gets one line {allow, code, reason, path, commonAncestor, hops, peer, action, time}; every decision ' +
    'is appended to DIR/audit.log and printed (with --json: one JSON line per event, the first {"listening": true, host, port, cn}). ' +
    'Events appended to DIR/ledger.cbor while serving are seen by the next decision; a file that loses events already verified ' +
    '(an older copy put in its place) is an alarm, LEDGER_ROLLBACK, printed and kept in DIR/audit.log, and the verified state ' +
    'stays in force. When DIR/config.json names a broker (an ' +
    "enrolled device), it also follows L0's ledger as 'kin sync --follow' does, so a revocation is enforced as soon as it gossips, " +
    "and decisions read the verified head's time (policy maxHeadAge); with --json one line per new head or alarm. " +
    'On that same broker session it answers challenge-response asks on its inbox kin/<fid>/dev/<label>/inbox/+ (each from the sender its last level names; for requesters without TLS, ' +
    '\'kin access --inbox CN\'): the same decision, audited and printed alike (with --json {"decision": …, "via": "inbox"}), ' +
    'sent back signed with this device\'s TLS key; the first line says {"inbox": TOPIC} (null when not answering there). ' +
    'Anything else on the inbox (text from mosquitto_pub, say) is ignored and told, INBOX_FOREIGN, once per sender per minute. ' +
    'Stops cleanly on SIGINT or SIGTERM. A device whose own identity is revoked in its ledger (itself, or an ancestor with its ' +
    'subtree) — at start, or when the revocation arrives while it serves — prints one line IDENTITY_REVOKED (who revoked it, why, ' +
    `from when; with --json {"revoked": true, code, message, notice}), writes it to DIR/audit.log, stops, and exits ${EXIT_REVOKED} ` +
    '(not restarted by deploy/kin.service); enrolling it again brings it back. While it follows L0 it owns DIR: the only writer of its ledger and the ' +
    'only broker session under its CN; kin invite, revoke, renew, rekey, policy set, access, check, sync, status and ledger show/verify/bundle on DIR are carried out ' +
    'by it over the control socket DIR/agent.sock (0600; the first line says {"control": PATH}), with their own output and exit status. An enrolled ' +
    "device renews its certificate by itself ('kin renew') when less than --renew-at of its validity is left, looking once an hour; the endpoint " +
    'serves the new one at once. With --offline it does not reach L0 at all, as a device cut off from it: it decides on the ledger ' +
    'as it is, a requester whose events it lacks sends their proof for the head it states (PROTOCOL.md §11.7, §12.2), and other commands ' +
    'on DIR work directly.',
  options: {
    home: { type: 'string', help: 'the device home directory' },
    host: { type: 'string', help: 'address to listen on', default: '127.0.0.1' },
    port: { type: 'string', help: 'port to listen on; 0 picks a free one', default: '0' },
    timeout: {
      type: 'string',
      help: 'how long a peer has to finish its handshake, and then to send its request',
      default: '5s',
    },
    'renew-at': {
      type: 'string',
      help: 'renew the certificate when less than this fraction of its validity is left (0 < F < 1)',
      default: String(DEFAULT_RENEW_AT),
    },
    'max-pending': {
      type: 'string',
      help: 'connections not yet authenticated that the endpoint keeps; the next one closes the oldest',
      default: String(DEFAULT_MAX_PENDING_CONNECTIONS),
    },
    probe: {
      type: 'string',
      help: 'while following L0, one sync round this often on the open session: a broker that keeps a session up but stopped delivering to it (NATS after a reload, docs/BROKERS.md) is found out and left for a new login (at least 10s)',
      default: '5m',
    },
    offline: {
      type: 'boolean',
      help: "do not follow L0's broker even when config.json names one: decide on the ledger as it is (a device cut off from L0)",
    },
  },
  async run(args) {
    const dir = requireString(args, 'home', 'the device home to serve from, e.g. --home ./lock')
    const port = portOf(String(args.values.port))
    const timeout = parseDurationMs(String(args.values.timeout), 'timeout')
    const maxPending = parseMaxPending(String(args.values['max-pending']))
    const renewAt = parseRenewAt(String(args.values['renew-at']))
    const probeMs = parseDurationMs(String(args.values.probe), 'probe')
    if (probeMs < MIN_PROBE_MS)
      throw usageError(
        `--probe expects at least 10s (each probe is a sync request to L0), got "${String(args.values.probe)}"`,
      )
    const json = args.json
    // An enrolled device follows L0's ledger while it serves: revocations arrive by gossip, decisions see them at once.
    let following: FollowingHome | undefined
    let notFollowing: KinError | undefined
    // The follower tells of this device's own revocation as soon as its replica records it; serving stops then.
    let revokedNow: (notice: RevocationNotice) => void = () => undefined
    const revoked = new Promise<RevocationNotice>(resolve => {
      revokedNow = resolve
    })
    // The inbox service attaches to each broker session the follower opens (the first, and each after a reconnect).
    const config = new Home(dir).readConfig()
    const ownInbox = fleetTopics(config.fleet).inboxAll(config.cn)
    let inbox: InboxVerifier | undefined
    let lastSession: TransportSession | undefined
    const attachInbox = (session: TransportSession): void => {
      lastSession = session
      inbox?.attach(session).then(
        () => line(json, { inbox: 'listening', topic: ownInbox }, `answering challenges on ${ownInbox}`),
        (e: KinError) =>
          line(
            json,
            { inbox: 'unavailable', code: e.code, message: e.message },
            `inbox challenges unavailable on this session (${e.code}: ${e.message})`,
          ),
      )
    }
    const offline = args.values.offline === true
    // kin rekey carried out here replaced the home's certificate and key: the endpoint and the inbox answer with them.
    let useIdentity: (certPem: string, keyPem: string) => void = () => undefined
    if (!offline && followsBroker(config)) {
      try {
        following = await openFollowingHome(
          dir,
          {
            onHead: a =>
              line(
                json,
                { head: headSummary(a.head, a.headId), via: a.via, added: a.added },
                `${isoTime(a.head.time)} ledger head ${a.head.height} over ${a.head.treeSize} events (${a.added} new, via ${a.via})`,
              ),
            onAlarm: a =>
              line(json, { alarm: a }, `ALARM ${a.code} (${a.source}): ${a.message}; the old head was kept`),
            onRevoked: notice => revokedNow(notice),
            onStatus: (status, error) => {
              // A refused login cannot say why (CONNACK 5): this device's ledger tells of a revocation only once it holds it.
              const refused =
                error?.code === 'BROKER_REFUSED'
                  ? ": L0 refuses this device's login (revoked or expired while away?)"
                  : ''
              if (status === 'online' || status === 'offline')
                line(
                  json,
                  { broker: status, ...(error === undefined ? {} : { code: error.code }) },
                  status === 'online'
                    ? "following L0's ledger"
                    : `lost L0${error === undefined ? '' : ` (${error.code}${refused})`}; deciding on the ledger as it is, reconnecting`,
                )
            },
          },
          attachInbox,
          { lend: true, onIdentity: (certPem, keyPem) => useIdentity(certPem, keyPem), probeIntervalMs: probeMs },
        )
      } catch (e) {
        if (!(e instanceof KinError) || e.code !== 'STORAGE_BUSY') throw e
        // Another process (kin sync --follow) keeps the ledger in sync: serve from the file it writes.
        notFollowing = e
      }
    }
    const follower = following?.follower
    let device: AccessHome
    try {
      device = await openAccessHome(dir, {
        audit: true,
        needKey: true,
        ...(follower === undefined
          ? {}
          : {
              lastHeadTime: () => follower.lastHeadTime(),
              inMemory: { state: () => follower.replica.ledger.ledger.state, head: () => follower.replica.head },
            }),
      })
    } catch (e) {
      await following?.close()
      throw e
    }
    // A device already revoked in its ledger (the file, or a replica that learnt it last time) does not serve at all.
    const standing = (): RevocationNotice | undefined =>
      follower?.revocation() ?? ownRevocation(device.ledger.state(), device.cn, Math.floor(Date.now() / 1000))
    const revokedAtStart = standing()
    if (revokedAtStart !== undefined) {
      await tellRevoked(json, device, revokedAtStart)
      await following?.close()
      await device.close()
      return EXIT_REVOKED
    }
    let reportedLedgerError: string | undefined
    // A ledger file that stopped verifying leaves the last verified state in force; say so once per new error. A file
    // that went back (LEDGER_ROLLBACK) is an alarm: printed, and kept in audit.log next to the decisions it protects.
    const noteLedgerError = (): void => {
      const ledgerError = device.ledger.lastError
      if (ledgerError !== undefined && ledgerError.message !== reportedLedgerError) {
        if (ledgerError.code === 'LEDGER_ROLLBACK') {
          const now = Math.floor(Date.now() / 1000)
          line(
            json,
            { alarm: { code: ledgerError.code, source: 'ledger file', message: ledgerError.message } },
            `ALARM ${ledgerError.code} (ledger file): ${ledgerError.message}`,
          )
          device
            .audit!.appendLine(JSON.stringify({ time: now, alarm: ledgerError.code, message: ledgerError.message }))
            .catch((e: Error) => process.stderr.write(`kin serve: audit.log: ${e.message}\n`))
        } else {
          line(
            json,
            { ledgerError: ledgerError.code, message: ledgerError.message },
            `warning: ${device.home.path('ledger')} no longer verifies (${ledgerError.code}: ${ledgerError.message}); deciding on the last verified state`,
          )
        }
      }
      reportedLedgerError = ledgerError?.message
    }
    // `remote` is the peer's address (an inbox ask: its session's CN): refusals of unauthenticated peers are summarised per address.
    const report = (decision: Decision, from: string, remote: string, fields: Record<string, unknown>): void => {
      noteLedgerError()
      device
        .audit!.record(decision, remote)
        .catch((e: Error) => process.stderr.write(`kin serve: audit.log: ${e.message}\n`))
      line(
        json,
        { decision: answerOf(decision), ...fields },
        `${isoTime(decision.time)} ${from} ${describeDecision(decision)}`,
      )
    }
    const onDecision = (decision: Decision, from: PeerAddress): void =>
      report(decision, `${from.address}:${from.port}`, from.address, { from: `${from.address}:${from.port}` })
    const onHandshakeError = (error: Error, from: PeerAddress): void => {
      line(
        json,
        { handshakeFailed: error.message, from: `${from.address}:${from.port}` },
        `${isoTime(Math.floor(Date.now() / 1000))} ${from.address}:${from.port} TLS handshake failed (no decision): ${error.message}`,
      )
    }
    // Messages on the inbox that are none of kinship's are told (INBOX_FOREIGN), so a sender learns why nothing happened.
    const foreign = foreignInboxLog({
      l0Cn: typeof config['l0Cn'] === 'string' ? config['l0Cn'] : undefined,
      write: f =>
        line(
          json,
          { inboxIgnored: 'foreign', code: 'INBOX_FOREIGN', from: f.sender, detail: f.detail, untold: f.untold },
          `${isoTime(Math.floor(Date.now() / 1000))} inbox: INBOX_FOREIGN: ignored ${f.detail}${f.untold > 0 ? ` (and ${f.untold} more since the last line)` : ''}`,
        ),
    })
    // The inbox challenge service on the home's current certificate and key (made again after a rekey).
    const inboxOf = (f: LedgerFollower): InboxVerifier =>
      inboxServiceOf(
        device,
        json,
        (decision, ask) =>
          report(decision, `inbox:${ask.requesterCn}`, `inbox:${ask.requesterCn}`, {
            from: ask.requesterCn,
            via: 'inbox',
          }),
        f,
        foreign,
      )
    let endpoint: Awaited<ReturnType<typeof startAccessEndpoint>> | undefined
    let control: ControlSocket | undefined
    try {
      const home = device
      // DESIGN.md "Access decision" step 5: a missing proof comes from the bundle the peer presented, or from the miner (through this
      // device's follower) within the deadline; the decision is taken once more, and without a proof it is a deny.
      const decide = async (der: Uint8Array, request: AccessLine): Promise<Decision> => {
        const state = home.ledger.state()
        const proved = await decideWithProofs(home.session, der, request.action, {
          crypto: nodeCrypto,
          deadlineMs: PROOF_DEADLINE_MS,
          anchor: {
            minerKey: state.genesis?.body.minerKey ?? new Uint8Array(32),
            genesisId: state.genesis?.event.idHex,
            knownHead: home.heldHead(),
          },
          ...(request.bundle === undefined ? {} : { presented: request.bundle }),
          // The offline proof answers the head stated on this connection (runtime/node/tls-endpoint.ts).
          ...(request.proof === undefined
            ? {}
            : { offered: request.proof, stated: request.stated === 'none' ? undefined : request.stated }),
          ...(follower === undefined
            ? {}
            : { fetch: async (cn: string, ms: number) => (await follower.requestBundle(cn, ms)).bytes }),
        })
        return proved.decision
      }
      endpoint = await startAccessEndpoint({
        certPem: device.certPem,
        keyPem: device.keyPem,
        rootPem: device.rootPem,
        session: device.session,
        host: String(args.values.host),
        port,
        requestTimeoutMs: timeout,
        maxPendingConnections: maxPending,
        onDecision,
        onHandshakeError,
        decide,
        heldHead: () => home.heldHead(),
      })
      // The agent owns the home it follows: other commands on it are carried out here (DESIGN.md "The device runtime").
      if (following !== undefined) control = await listenForCommands(following)
      if (follower !== undefined) {
        inbox = inboxOf(follower)
        if (lastSession !== undefined) attachInbox(lastSession)
      }
    } catch (e) {
      await control?.close()
      await endpoint?.close()
      await following?.close()
      await device.close()
      throw e
    }
    useIdentity = (certPem, keyPem) => {
      device.certPem = certPem
      device.keyPem = keyPem
      endpoint!.server.setSecureContext({ ...tlsServerPolicy(), cert: certPem, key: keyPem, ca: device.rootPem })
      if (inbox !== undefined && follower !== undefined) {
        inbox.close()
        inbox = inboxOf(follower)
        if (lastSession !== undefined) attachInbox(lastSession)
      }
      const cert = DeviceCertificate.from(certPem, { sha256: nodeCrypto.sha256 })
      line(
        json,
        { rekeyed: true, serial: cert.serialHex, notAfter: cert.notAfter },
        `new TLS key and certificate ${cert.serialHex} in use (valid until ${isoTime(cert.notAfter)})`,
      )
    }
    const inboxTopic = inbox === undefined ? undefined : ownInbox
    line(
      json,
      {
        listening: true,
        host: endpoint.host,
        port: endpoint.port,
        cn: device.cn,
        following: follower !== undefined,
        inbox: inboxTopic ?? null,
        control: control?.path ?? null,
      },
      `${device.cn} serving access on ${endpoint.host}:${endpoint.port}${inboxTopic === undefined ? '' : ` and challenges on ${inboxTopic}`} (fleet ${device.config.fleet}); stop with Ctrl-C`,
    )
    if (offline && followsBroker(config))
      line(
        json,
        { following: false, offline: true },
        "offline (--offline): not following L0's ledger; deciding on this device's ledger as it is",
      )
    if (notFollowing !== undefined)
      line(
        json,
        { following: false, code: notFollowing.code, message: notFollowing.message },
        `not following L0 here: ${notFollowing.message}`,
      )
    follower?.start()
    // Renewal before expiry (PROTOCOL.md §8.2b), on the follower's session; the endpoint takes the new certificate at once.
    const stopRenew =
      follower === undefined
        ? undefined
        : startAutoRenew({
            home: device.home,
            config,
            follower,
            session: () => lastSession,
            fraction: renewAt,
            now: () => Math.floor(Date.now() / 1000),
            onRenewed: cert => {
              endpoint.server.setSecureContext({
                ...tlsServerPolicy(),
                cert: cert.pem,
                key: device.keyPem,
                ca: device.rootPem,
              })
              line(
                json,
                { renewed: true, serial: cert.serialHex, notAfter: cert.notAfter },
                `renewed this device's certificate: ${cert.serialHex}, valid until ${isoTime(cert.notAfter)}`,
              )
            },
            onError: e =>
              line(
                json,
                { renewed: false, code: e.code, message: e.message },
                `could not renew this device's certificate (${e.code}: ${e.message}); trying again later`,
              ),
          })
    // The ledger file is also looked at between requests, so a swapped file raises its alarm without waiting for one;
    // and so is this device's standing: a revocation that takes effect later, or one another process wrote to the file.
    const watch = setInterval(() => {
      device.ledger.refresh()
      noteLedgerError()
      const notice = standing()
      if (notice !== undefined) revokedNow(notice)
    }, LEDGER_WATCH_MS)
    const stop = await Promise.race([
      nextStopSignal().then(signal => ({ signal })),
      revoked.then(notice => ({ notice })),
    ])
    clearInterval(watch)
    stopRenew?.()
    if ('notice' in stop) await tellRevoked(json, device, stop.notice)
    inbox?.close()
    await control?.close()
    await endpoint.close()
    await following?.close()
    await device.close()
    if ('notice' in stop) {
      line(
        json,
        { stopped: true, code: 'IDENTITY_REVOKED', status: EXIT_REVOKED },
        `stopped: this device is revoked (exit ${EXIT_REVOKED})`,
      )
      return EXIT_REVOKED
    }
    line(json, { stopped: true, signal: stop.signal }, `stopped (${stop.signal})`)
    return 0
  },
}
