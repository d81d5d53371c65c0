/** @module `kin sync`: catch up with L0's ledger once or keep following it; and the home's follower that `kin serve` and `kin revoke` share. */
import { AsyncResource } from 'node:async_hooks'
import { realpathSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { KinError } from '../../errors.ts'
import { startControlSocket, stopSignals, type ControlSocket } from '../control-socket.ts'
import { runStartedCommand } from '../dispatch.ts'
import { pidLockHolder, takePidLock } from '../pid-lock.ts'
import { nodeCrypto } from '../../../firmware-shims/node/crypto.ts'
import { nodeStorage } from '../../../firmware-shims/node/storage.ts'
import { nodeTransport, parseBrokerUrl } from '../../../firmware-shims/node/transport.ts'
import type { Transport, TransportSession } from '../../../firmware-shims/transport.ts'
import type { HeadAlarm } from '../../gossip/alarm.ts'
import { GossipClient } from '../../gossip/client.ts'
import { LedgerFollower, type AdoptedHead, type FollowerOptions, type SyncReport } from '../../gossip/follower.ts'
import type { DeviceLogin } from '../../gossip/login.ts'
import { describeRevocation, type RevocationNotice } from '../../gossip/revocation-notice.ts'
import { openReplicaFiles, type OpenReplica } from '../../gossip/replica-files.ts'
import type { BlockHead } from '../../ledger/head.ts'
import { parseDuration, requireString, usageError, type CommandSpec } from '../args.ts'
import { Home, type HomeConfig } from '../home.ts'
import { EXIT_REVOKED, isoTime, jsonReplacer } from '../output.ts'

/** File in a device's home that says a process owns its ledger and its broker session (holds the pid). */
export const LEDGER_LOCK_FILE = 'ledger.lock'
/** The file `kin broker` keeps in L0's home while it runs (broker/home.ts LOCK_FILE). */
export const BROKER_LOCK_FILE = 'broker.lock'

/** The pid of a live process holding the lock file `name` in `home`, if any (this process too: an agent carrying out a command). */
export function lockHolder(home: Home, name: string): number | undefined {
  return pidLockHolder(join(home.dir, name), 'holds')
}

/** A broker session borrowed from the home's follower: the borrower's client ending it leaves it open for its owner. */
export function ridingSession(session: TransportSession): TransportSession {
  return {
    publish: (topic, payload, options) => session.publish(topic, payload, options),
    subscribe: filters => session.subscribe(filters),
    onMessage: listener => session.onMessage(listener),
    onStatus: listener => session.onStatus(listener),
    peerCertificate: () => session.peerCertificate(),
    get connected() { return session.connected },
    end: async () => undefined,
  }
}

/**
 * A client on the broker session of the agent that owns `dir`, when this process is that agent (a command carried
 * out inside it): the broker keeps one session per CN, so a second one would push the agent's off.
 */
export async function lentClient(dir: string, timeoutMs: number): Promise<GossipClient | undefined> {
  const lent = lentHomes.get(homeKey(dir))
  if (lent === undefined) return undefined
  await lent.opened.follower.waitOnline(timeoutMs)
  const session = lent.opened.session()
  if (session === undefined) throw lent.opened.follower.lastError ?? new KinError('BROKER_CLOSED', 'the session with the broker closed')
  return new GossipClient(ridingSession(session))
}

/** The follower of the agent that owns `dir`, when this process is that agent (a command carried out inside it). */
export function lentFollower(dir: string): LedgerFollower | undefined {
  return lentHomes.get(homeKey(dir))?.opened.follower
}

/**
 * Takes the home's ledger lock: one process at a time writes ledger.cbor and sync.cbor and holds the device's
 * broker session (the broker allows one session per CN: a second one would push the first off, and the two would
 * take turns). STORAGE_BUSY names the process that holds it. Returns the release function.
 */
export function takeLedgerLock(home: Home): () => void {
  const path = join(home.dir, LEDGER_LOCK_FILE)
  return takePidLock(path, pid => pid === undefined
    ? new KinError('STORAGE_BUSY', `cannot take the lock ${path}`)
    : new KinError('STORAGE_BUSY', `another kin process (pid ${pid}: kin serve or kin sync --follow) follows ${home.dir}; it keeps the ledger in sync — stop it first to run this here`, { detail: { pid } }))
}

/** How the home logs in to L0's broker: config.json's broker URL (or `url`) and L0's CN, the home's certificate and key. */
export function brokerLoginOf(home: Home, config: HomeConfig, url?: string): DeviceLogin {
  const broker = url ?? (typeof config.broker === 'string' ? config.broker : undefined)
  if (broker === undefined) throw usageError(`${home.path('config')} names no broker: give --broker mqtts://HOST:PORT (written by 'kin enroll')`)
  try {
    parseBrokerUrl(broker)
  } catch (err) {
    throw usageError((err as Error).message)
  }
  const l0Cn = config.l0 === true ? config.cn : typeof config['l0Cn'] === 'string' ? config['l0Cn'] : undefined
  if (l0Cn === undefined) throw usageError(`${home.path('config')} does not say which CN L0 has ('l0Cn', written by 'kin enroll')`)
  return { url: broker, cn: config.cn, certPem: home.readText('cert'), keyPem: home.readText('tlsKey'), rootPem: home.readText('root'), l0Cn }
}

/** Whether a home names a broker to follow (an enrolled device; L0 is the miner itself). */
export function followsBroker(config: HomeConfig): boolean {
  return config.l0 !== true && typeof config.broker === 'string' && typeof config['l0Cn'] === 'string'
}

/** A device home with its replica open and a follower ready to start. */
export interface FollowingHome {
  home: Home
  config: HomeConfig
  files: OpenReplica
  follower: LedgerFollower
  /** The pid of the agent that lent this home to the caller (a command carried out inside it); undefined when the caller owns it. */
  lentBy: number | undefined
  /** The broker session the follower holds now, if it is connected (the broker keeps one per CN: others ride on it). */
  session(): TransportSession | undefined
  /** Stops the follower, closes the replica and the ledger, releases the lock; for a lent home, only stops the caller's hooks. */
  close(): Promise<void>
}

/** Follower callbacks and settings a command passes through. */
export type FollowerHooks = Pick<FollowerOptions, 'onAlarm' | 'onHead' | 'onStatus' | 'onError' | 'onRevoked' | 'backoff' | 'syncRoundTimeoutMs' | 'connectTimeoutMs'>

type HookName = 'onAlarm' | 'onHead' | 'onStatus' | 'onError' | 'onRevoked'
const HOOK_NAMES: HookName[] = ['onAlarm', 'onHead', 'onStatus', 'onError', 'onRevoked']

/** A home whose owner (the agent) lends its open replica and follower to commands it carries out. */
interface LentHome {
  opened: FollowingHome
  /** Hooks of the borrowers, each called after the owner's. */
  borrowers: Set<FollowerHooks>
}

// By the home's real path: at most one per home, in the process that holds its ledger lock.
const lentHomes = new Map<string, LentHome>()

function homeKey(dir: string): string {
  try {
    return realpathSync(dir)
  } catch {
    return resolve(dir)
  }
}

/**
 * The owner's hooks followed by every borrower's. The owner's run in the owner's own context: a head adopted during a
 * sync a client asked for is still the agent's to print, not the client's (control-socket.ts routes output by context).
 */
function fannedOut(own: FollowerHooks, borrowers: Set<FollowerHooks>): FollowerHooks {
  const out: FollowerHooks = { ...own }
  for (const name of HOOK_NAMES) {
    const mine = own[name] === undefined ? undefined : AsyncResource.bind(own[name] as (...x: unknown[]) => void)
    out[name] = ((...a: unknown[]) => {
      mine?.(...a)
      for (const b of borrowers) (b[name] as ((...x: unknown[]) => void) | undefined)?.(...a)
    }) as never
  }
  return out
}

/**
 * The agent's home, lent to a command it carries out: the same replica and follower (already started), the caller's
 * hooks called in the caller's context (so what they print goes to the caller's client). `close` only detaches them.
 */
function borrow(lent: LentHome, hooks: FollowerHooks): FollowingHome {
  const bound: FollowerHooks = {}
  for (const name of HOOK_NAMES) {
    const f = hooks[name] as ((...a: unknown[]) => void) | undefined
    if (f !== undefined) bound[name] = AsyncResource.bind(f) as never
  }
  lent.borrowers.add(bound)
  return { ...lent.opened, lentBy: process.pid, close: async () => { lent.borrowers.delete(bound) } }
}

/**
 * Opens a device home for following: the ledger lock, the replica (ledger.cbor + sync.cbor), a LedgerFollower. In the
 * process of an agent that owns the home (`lend`), a later call for the same home borrows the agent's instead (one
 * ledger writer, one broker session per CN).
 */
export async function openFollowingHome(dir: string, hooks: FollowerHooks = {}, onSession?: (session: TransportSession) => void, opts: { lend?: boolean } = {}): Promise<FollowingHome> {
  const key = homeKey(dir)
  const lent = lentHomes.get(key)
  if (lent !== undefined) return borrow(lent, hooks)
  const home = new Home(dir)
  const config = home.readConfig()
  if (config.l0 === true) throw new KinError('BAD_ARGUMENT', `${home.dir} is L0's home: L0's ledger is the miner's log itself, there is nothing to follow`)
  const login = brokerLoginOf(home, config)
  const release = takeLedgerLock(home)
  let files: OpenReplica
  try {
    files = await openReplicaFiles(nodeCrypto, nodeStorage(home.dir), {
      onTornTail: (offset, dropped) => process.stderr.write(`kin: dropped a torn tail of ${dropped} bytes at offset ${offset} in ${home.path('ledger')} (an interrupted write)\n`),
    })
  } catch (err) {
    release()
    throw err
  }
  // Each broker session the follower opens is kept (and shown to `onSession`): the broker keeps one session per CN,
  // so a service that needs the broker too (kin serve's inbox challenges, an invite) rides on the follower's instead
  // of pushing it off.
  let current: TransportSession | undefined
  const ownSession = onSession === undefined ? undefined : AsyncResource.bind(onSession)
  const transport: Transport = {
    async connect(options) {
      const session = await nodeTransport.connect(options)
      current = session
      ownSession?.(session)
      return session
    },
  }
  const borrowers = new Set<FollowerHooks>()
  const follower = new LedgerFollower({
    transport, login, fleet: config.fleet, replica: files.replica, clock: { now: () => Math.floor(Date.now() / 1000) },
    ...(opts.lend === true ? fannedOut(hooks, borrowers) : hooks),
  })
  let closed: Promise<void> | undefined
  const opened: FollowingHome = {
    home, config, files, follower, lentBy: undefined,
    session: () => current?.connected === true ? current : undefined,
    close: () => closed ??= (async () => {
      if (lentHomes.get(key)?.opened === opened) lentHomes.delete(key)
      try {
        await follower.close()
        await files.close()
      } finally {
        release()
      }
    })(),
  }
  if (opts.lend === true) lentHomes.set(key, { opened, borrowers })
  return opened
}

/**
 * Makes this process the agent of a home it opened with `lend`: listens on the home's control socket and carries
 * out there the commands other `kin` processes ask of it (docs/PROTOCOL.md "The control socket").
 */
export async function listenForCommands(opened: FollowingHome): Promise<ControlSocket> {
  return startControlSocket(opened.home.dir, runStartedCommand)
}

/** A head as the CLI prints it. */
export function headSummary(head: BlockHead | undefined, id: string | undefined): Record<string, unknown> | null {
  if (head === undefined) return null
  return { height: head.height, treeSize: head.treeSize, time: head.time, id }
}

function line(value: unknown): void {
  process.stdout.write(JSON.stringify(value, jsonReplacer) + '\n')
}

function describeAlarm(a: HeadAlarm): string {
  return `ALARM ${a.code} (${a.source}): ${a.message}; the old head was kept`
}

/** Resolves with the signal's name on the first SIGINT or SIGTERM. */
export function nextStopSignal(): Promise<string> {
  // Inside the agent, the signals of the client this command runs for (control-socket.ts).
  const signals = stopSignals()
  return new Promise(resolve => {
    const stop = (name: string): void => {
      signals.off('SIGINT', onInt)
      signals.off('SIGTERM', onTerm)
      resolve(name)
    }
    const onInt = (): void => stop('SIGINT')
    const onTerm = (): void => stop('SIGTERM')
    signals.on('SIGINT', onInt)
    signals.on('SIGTERM', onTerm)
  })
}

function reportOf(cn: string, r: SyncReport): Record<string, unknown> {
  return {
    ok: r.alarms.length === 0, cn, head: headSummary(r.head, r.headId), covered: r.covered, pending: r.pending, added: r.added,
    rewritten: r.rewritten, dropped: r.dropped, submitted: r.submitted, alarms: r.alarms,
    ...(r.stale === undefined ? {} : { stale: { code: r.stale.code, message: r.stale.message, ids: r.stale.detail?.['ids'] } }),
  }
}

async function follow(dir: string, json: boolean): Promise<number> {
  const alarms: HeadAlarm[] = []
  const say = (value: Record<string, unknown>, text: string): void => { if (json) line(value); else process.stdout.write(text + '\n') }
  let revokedNow: (notice: RevocationNotice) => void = () => undefined
  const revoked = new Promise<RevocationNotice>(resolve => { revokedNow = resolve })
  const opened = await openFollowingHome(dir, {
    onRevoked: notice => revokedNow(notice),
    onHead: (a: AdoptedHead) => say({ head: headSummary(a.head, a.headId), via: a.via, added: a.added, rewritten: a.rewritten, dropped: a.dropped.length },
      `${isoTime(a.head.time)} head ${a.head.height} over ${a.head.treeSize} events (${a.added} new, via ${a.via}${a.rewritten ? ', ledger rewritten into miner order' : ''})`),
    onAlarm: a => { alarms.push(a); say({ alarm: a }, describeAlarm(a)) },
    onStatus: (status, error) => say({ status, ...(error === undefined ? {} : { code: error.code, message: error.message }) },
      status === 'online' ? 'connected to L0' : status === 'offline' ? `lost L0${error ? ` (${error.code}: ${error.message})` : ''}; reconnecting…` : status === 'connecting' ? 'connecting to L0…' : status),
  }, undefined, { lend: true })
  const { follower, config } = opened
  // The follower owns the home while it runs: other commands on it are carried out here (one writer, one session).
  let control: ControlSocket | undefined
  if (opened.lentBy === undefined) {
    try {
      control = await listenForCommands(opened)
    } catch (err) {
      await opened.close()
      throw err
    }
  }
  const agent = opened.lentBy === undefined ? {} : { agent: opened.lentBy }
  say({ following: true, cn: config.cn, broker: config.broker, head: headSummary(follower.replica.head, follower.replica.headId), ...agent },
    opened.lentBy === undefined ? `${config.cn} following L0's ledger at ${config.broker}; stop with Ctrl-C`
      : `${config.cn}: the agent of this home (pid ${opened.lentBy}) already follows L0's ledger at ${config.broker}; showing its progress; stop with Ctrl-C`)
  const stopped = Promise.race([nextStopSignal(), revoked])
  follower.start()
  const signal = await stopped
  await control?.close()
  await opened.close()
  if (typeof signal !== 'string') {
    say({ revoked: true, code: 'IDENTITY_REVOKED', message: describeRevocation(signal), notice: signal }, `IDENTITY_REVOKED: ${describeRevocation(signal)}`)
    return EXIT_REVOKED
  }
  say({ stopped: true, signal, head: headSummary(follower.replica.head, follower.replica.headId), alarms: alarms.length }, `stopped (${signal})`)
  return alarms.length > 0 ? 1 : 0
}

/** Says that this device is revoked (IDENTITY_REVOKED), as one line or one JSON object; returns EXIT_REVOKED. */
function reportRevoked(notice: RevocationNotice, json: boolean): number {
  const message = describeRevocation(notice)
  process.stdout.write((json ? JSON.stringify({ ok: false, code: 'IDENTITY_REVOKED', message, notice }, jsonReplacer, 2) : `IDENTITY_REVOKED: ${message}`) + '\n')
  return EXIT_REVOKED
}

/** `kin sync`. */
export const sync: CommandSpec = {
  name: 'sync',
  usage: 'kin sync --home DIR [--follow] [--timeout 30s] [--json]',
  summary: "Catch up with L0's ledger over MQTT, once or following it. Verify the miner's signed head (signature by the genesis' miner key, consistency with "
    + 'the head this device holds), fetch the events it lacks into DIR/ledger.cbor in the miner\'s order, keep the head in DIR/sync.cbor, '
    + 'and hand the miner this device\'s own events it has not sealed yet. Uses the broker and L0 CN of DIR/config.json. With --follow, '
    + 'keep following (one line per new head; with --json one JSON line each) until SIGINT or SIGTERM, owning DIR as kin serve does (its control socket '
    + 'DIR/agent.sock carries out other commands on DIR); while kin serve or another follower owns DIR, it shows that agent\'s progress instead. A head that is forged, forks '
    + 'or goes back is refused, the old one kept, and reported. A device whose own identity its ledger records as revoked says so '
    + `(IDENTITY_REVOKED: by whom, why, from when) and exits ${EXIT_REVOKED}, also when L0 refuses its login. Exit 0 synced, 1 a head was refused, `
    + `${EXIT_REVOKED} this device is revoked, 2 on errors.`,
  options: {
    home: { type: 'string', help: 'the device home directory' },
    follow: { type: 'boolean', help: 'keep following until stopped' },
    timeout: { type: 'string', help: 'limit for catching up once', default: '30s' },
  },
  async run(args) {
    const dir = requireString(args, 'home', 'the device home to sync, e.g. --home ./lock')
    if (args.values.follow === true) return follow(dir, args.json)
    const seconds = parseDuration(String(args.values.timeout), 'timeout')
    if (seconds < 1) throw usageError('--timeout must be at least 1s')
    const errors: KinError[] = []
    const opened = await openFollowingHome(dir, { onError: e => { if (e.code !== 'BROKER_CLOSED') errors.push(e) } })
    let report: SyncReport
    let revoked: RevocationNotice | undefined
    try {
      report = await opened.follower.syncOnce(seconds * 1000)
      revoked = opened.follower.revocation()
    } catch (err) {
      // L0 refuses a revoked device's login: when this device's ledger already records why, that is the answer.
      revoked = opened.follower.revocation()
      if (revoked === undefined) throw err
      return reportRevoked(revoked, args.json)
    } finally {
      await opened.close()
    }
    const out = { ...reportOf(opened.config.cn, report), ...(revoked === undefined ? {} : { revoked: { code: 'IDENTITY_REVOKED', message: describeRevocation(revoked), notice: revoked } }) }
    if (args.json) process.stdout.write(JSON.stringify(out, jsonReplacer, 2) + '\n')
    else {
      const h = report.head
      const lines = [h === undefined ? 'no head from the miner yet' : `synced to head ${h.height} over ${h.treeSize} events (${isoTime(h.time)}): ${report.added} new, ${report.pending} of this device's own not sealed yet${report.submitted > 0 ? `, ${report.submitted} handed to the miner` : ''}`]
      if (report.rewritten) lines.push('  the ledger file was rewritten into the miner\'s order')
      for (const d of report.dropped) lines.push(`  dropped local event ${d.idHex?.slice(0, 16)}…: ${d.code}: ${d.message}`)
      if (report.stale !== undefined) lines.push(`  ${report.stale.code}: ${report.stale.message}`)
      for (const a of report.alarms) lines.push(describeAlarm(a))
      if (revoked !== undefined) lines.push(`IDENTITY_REVOKED: ${describeRevocation(revoked)}`)
      process.stdout.write(lines.join('\n') + '\n')
    }
    return revoked !== undefined ? EXIT_REVOKED : report.alarms.length > 0 ? 1 : 0
  },
}
