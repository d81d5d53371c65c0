/** @module `kin sync`: catch up with L0's ledger once or keep following it; and the home's follower that `kin serve` and `kin revoke` share. */
import { join } from 'node:path'
import { KinError } from '../../errors.ts'
import { pidLockHolder, takePidLock } from '../pid-lock.ts'
import { nodeCrypto } from '../../../firmware-shims/node/crypto.ts'
import { nodeStorage } from '../../../firmware-shims/node/storage.ts'
import { nodeTransport, parseBrokerUrl } from '../../../firmware-shims/node/transport.ts'
import type { Transport, TransportSession } from '../../../firmware-shims/transport.ts'
import type { HeadAlarm } from '../../gossip/alarm.ts'
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

/** The pid of a live process holding the lock file `name` in `home`, if any. */
export function lockHolder(home: Home, name: string): number | undefined {
  return pidLockHolder(join(home.dir, name))
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
  /** Stops the follower, closes the replica and the ledger, releases the lock. */
  close(): Promise<void>
}

/** Follower callbacks and settings a command passes through. */
export type FollowerHooks = Pick<FollowerOptions, 'onAlarm' | 'onHead' | 'onStatus' | 'onError' | 'onRevoked' | 'backoff' | 'syncRoundTimeoutMs' | 'connectTimeoutMs'>

/** Opens a device home for following: the ledger lock, the replica (ledger.cbor + sync.cbor), a LedgerFollower. */
export async function openFollowingHome(dir: string, hooks: FollowerHooks = {}, onSession?: (session: TransportSession) => void): Promise<FollowingHome> {
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
  // `onSession` sees each broker session the follower opens: the broker keeps one session per CN, so a service that
  // needs the broker too (kin serve's inbox challenges) rides on the follower's instead of pushing it off.
  const transport: Transport = onSession === undefined ? nodeTransport : {
    async connect(options) {
      const session = await nodeTransport.connect(options)
      onSession(session)
      return session
    },
  }
  const follower = new LedgerFollower({
    transport, login, fleet: config.fleet, replica: files.replica, clock: { now: () => Math.floor(Date.now() / 1000) }, ...hooks,
  })
  let closed: Promise<void> | undefined
  return {
    home, config, files, follower,
    close: () => closed ??= (async () => {
      try {
        await follower.close()
        await files.close()
      } finally {
        release()
      }
    })(),
  }
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
  return new Promise(resolve => {
    const stop = (name: string): void => {
      process.off('SIGINT', onInt)
      process.off('SIGTERM', onTerm)
      resolve(name)
    }
    const onInt = (): void => stop('SIGINT')
    const onTerm = (): void => stop('SIGTERM')
    process.on('SIGINT', onInt)
    process.on('SIGTERM', onTerm)
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
  })
  const { follower, config } = opened
  say({ following: true, cn: config.cn, broker: config.broker, head: headSummary(follower.replica.head, follower.replica.headId) },
    `${config.cn} following L0's ledger at ${config.broker}; stop with Ctrl-C`)
  const stopped = Promise.race([nextStopSignal(), revoked])
  follower.start()
  const signal = await stopped
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
    + 'keep following (one line per new head; with --json one JSON line each) until SIGINT or SIGTERM. A head that is forged, forks '
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
