/**
 * @module A device home opened for following L0's ledger: its ledger lock, its replica and follower, the broker login
 * of its config; and, in the process of the agent that owns the home, the same lent to the commands it carries out
 * (one ledger writer, one broker session per CN). `kin sync`, `kin serve`, `kin revoke`, `kin renew` and the rest share it.
 */
import { AsyncResource } from 'node:async_hooks'
import { realpathSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { KinError } from '../agent/errors.ts'
import { pidLockHolder, takePidLock } from './pid-lock.ts'
import { nodeCrypto } from './node/crypto.ts'
import { nodeStorage } from './node/storage.ts'
import { nodeTransport, parseBrokerUrl } from './node/transport.ts'
import type { Transport, TransportSession } from '../agent/ports/transport.ts'
import { GossipClient } from '../agent/gossip/client.ts'
import { LedgerFollower, type FollowerOptions } from '../agent/gossip/follower.ts'
import type { DeviceLogin } from '../agent/gossip/login.ts'
import { openReplicaFiles, type OpenReplica } from '../agent/gossip/replica-files.ts'
import type { BlockHead } from '../agent/ledger/head.ts'
import { Home, type HomeConfig } from './home.ts'

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
    get connected() {
      return session.connected
    },
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
  if (session === undefined)
    throw lent.opened.follower.lastError ?? new KinError('BROKER_CLOSED', 'the session with the broker closed')
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
  return takePidLock(path, pid =>
    pid === undefined
      ? new KinError('STORAGE_BUSY', `cannot take the lock ${path}`)
      : new KinError(
          'STORAGE_BUSY',
          `another kin process (pid ${pid}: kin serve or kin sync --follow) follows ${home.dir}; it keeps the ledger in sync — stop it first to run this here`,
          { detail: { pid } },
        ),
  )
}

/** How the home logs in to L0's broker: config.json's broker URL (or `url`) and L0's CN, the home's certificate and key. */
export function brokerLoginOf(home: Home, config: HomeConfig, url?: string): DeviceLogin {
  const broker = url ?? (typeof config.broker === 'string' ? config.broker : undefined)
  if (broker === undefined)
    throw new KinError(
      'USAGE',
      `${home.path('config')} names no broker: give --broker mqtts://HOST:PORT (written by 'kin enroll')`,
    )
  try {
    parseBrokerUrl(broker)
  } catch (err) {
    throw new KinError('USAGE', (err as Error).message)
  }
  const l0Cn = config.l0 === true ? config.cn : typeof config['l0Cn'] === 'string' ? config['l0Cn'] : undefined
  if (l0Cn === undefined)
    throw new KinError('USAGE', `${home.path('config')} does not say which CN L0 has ('l0Cn', written by 'kin enroll')`)
  return {
    url: broker,
    cn: config.cn,
    certPem: home.readText('cert'),
    keyPem: home.readText('tlsKey'),
    rootPem: home.readText('root'),
    l0Cn,
  }
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
  /**
   * Presents a new certificate and TLS key from now on (kin rekey replaced them in the home): the follower's next
   * broker session logs in with them, and the owner's `onIdentity` (the agent's access endpoint) takes them at once.
   */
  replaceIdentity(certPem: string, keyPem: string): void
  /** Stops the follower, closes the replica and the ledger, releases the lock; for a lent home, only stops the caller's hooks. */
  close(): Promise<void>
}

/** Follower callbacks and settings a command passes through. */
export type FollowerHooks = Pick<
  FollowerOptions,
  'onAlarm' | 'onHead' | 'onStatus' | 'onError' | 'onRevoked' | 'backoff' | 'syncRoundTimeoutMs' | 'connectTimeoutMs'
>

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
  return {
    ...lent.opened,
    lentBy: process.pid,
    close: async () => {
      lent.borrowers.delete(bound)
    },
  }
}

/**
 * Opens a device home for following: the ledger lock, the replica (ledger.cbor + sync.cbor), a LedgerFollower. In the
 * process of an agent that owns the home (`lend`), a later call for the same home borrows the agent's instead (one
 * ledger writer, one broker session per CN).
 */
export async function openFollowingHome(
  dir: string,
  hooks: FollowerHooks = {},
  onSession?: (session: TransportSession) => void,
  opts: {
    lend?: boolean
    onIdentity?: (certPem: string, keyPem: string) => void
    /** How often an open session is probed with a sync round (LedgerFollowerOptions.probeIntervalMs). */
    probeIntervalMs?: number
  } = {},
): Promise<FollowingHome> {
  const key = homeKey(dir)
  const lent = lentHomes.get(key)
  if (lent !== undefined) return borrow(lent, hooks)
  const home = new Home(dir)
  const config = home.readConfig()
  if (config.l0 === true)
    throw new KinError(
      'BAD_ARGUMENT',
      `${home.dir} is L0's home: L0's ledger is the miner's log itself, there is nothing to follow`,
    )
  const login = brokerLoginOf(home, config)
  const release = takeLedgerLock(home)
  let files: OpenReplica
  try {
    files = await openReplicaFiles(nodeCrypto, nodeStorage(home.dir), {
      onTornTail: (offset, dropped) =>
        process.stderr.write(
          `kin: dropped a torn tail of ${dropped} bytes at offset ${offset} in ${home.path('ledger')} (an interrupted write)\n`,
        ),
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
  // The owner hears of a new identity in its own context, as it hears its follower's hooks.
  const ownIdentity = opts.onIdentity === undefined ? undefined : AsyncResource.bind(opts.onIdentity)
  const borrowers = new Set<FollowerHooks>()
  const follower = new LedgerFollower({
    transport,
    login,
    fleet: config.fleet,
    replica: files.replica,
    clock: { now: () => Math.floor(Date.now() / 1000) },
    ...(opts.probeIntervalMs === undefined ? {} : { probeIntervalMs: opts.probeIntervalMs }),
    ...(opts.lend === true ? fannedOut(hooks, borrowers) : hooks),
  })
  let closed: Promise<void> | undefined
  const opened: FollowingHome = {
    home,
    config,
    files,
    follower,
    lentBy: undefined,
    session: () => (current?.connected === true ? current : undefined),
    replaceIdentity: (certPem, keyPem) => {
      login.certPem = certPem
      login.keyPem = keyPem
      ownIdentity?.(certPem, keyPem)
    },
    close: () =>
      (closed ??= (async () => {
        if (lentHomes.get(key)?.opened === opened) lentHomes.delete(key)
        try {
          await follower.close()
          await files.close()
        } finally {
          release()
        }
      })()),
  }
  if (opts.lend === true) lentHomes.set(key, { opened, borrowers })
  return opened
}

/** A head as the CLI prints it. */
export function headSummary(head: BlockHead | undefined, id: string | undefined): Record<string, unknown> | null {
  if (head === undefined) return null
  return { height: head.height, treeSize: head.treeSize, time: head.time, id }
}
