/** @module Gossip test fleet: L0's home and device homes on disk (pure enrollment steps), the real L0 (startL0) on loopback, followers. */
import { spawn } from 'node:child_process'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodeStorage } from '../../runtime/node/storage.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { Home, HOME_FILES } from '../../runtime/home.ts'
import { openHomeLedger } from '../../runtime/device.ts'
import { LedgerFollower, type FollowerOptions } from '../../agent/gossip/follower.ts'
import { openReplicaFiles, type OpenReplica } from '../../agent/gossip/replica-files.ts'
import type { HeadAlarm } from '../../agent/gossip/alarm.ts'
import type { AdoptedHead } from '../../agent/gossip/follower.ts'
import type { EncodedEvent, RoleName } from '../../agent/ledger/types.ts'
import { scanRecords } from '../../agent/ledger/store.ts'
import { replayRecords } from '../../agent/ledger/persistent.ts'
import type { Ledger } from '../../agent/ledger/ledger.ts'
import { enrollDirect, makeL0Home, nowSeconds, withHomeLedger, type L0Home, type TestDevice } from '../broker/_fleet.ts'
import type { L0Services } from '../../broker/l0.ts'
import { REPO, inviterOf } from '../enroll/_harness.ts'
import { enrollIntoHome } from '../../sim/live/enroll.ts'
import { LoopbackL0 } from '../../sim/live/l0.ts'

export { nowSeconds, type L0Home, type TestDevice }

/** A device of the test fleet: its identity and its home directory. */
export interface GossipDevice extends TestDevice {
  home: string
}

/** L0's home, its devices' homes, and L0's running services. */
export interface GossipFleet {
  l0: L0Home
  devices: GossipDevice[]
  services: L0Services
  url: string
  logs: Array<Record<string, unknown>>
  /** Stops L0's services (graceful) and starts them again on the same home and port. */
  restart(opts?: { downMs?: number }): Promise<void>
  /** Stops L0's services. */
  stop(): Promise<void>
  /** Starts them again after `stop` (same port). */
  start(): Promise<void>
}

/** What a device home holds in its ledger at the start: L0's ledger as it was right after its enrollment (as `kin enroll` leaves it), or all of it. */
export type StartLedger = 'enrollment' | 'all'

function ledgerBytes(l0: L0Home): Uint8Array {
  return new Uint8Array(readFileSync(join(l0.dir, HOME_FILES.ledger)))
}

/** Writes a device home: keys, certificates, config.json (broker URL and L0's CN as `kin enroll` writes them), ledger.cbor. */
export function writeDeviceHome(l0: L0Home, d: TestDevice, dir: string, ledger: Uint8Array, url: string): void {
  const home = new Home(dir)
  home.writePublic('root', l0.rootPem)
  home.writePublic('cert', d.certPem)
  home.writeSecret('tlsKey', d.keyPem)
  home.writeLedgerKey(d.ledgerSeed)
  writeFileSync(home.path('ledger'), ledger)
  home.writeConfig({
    version: 1,
    fleet: l0.domain,
    cn: d.cn,
    role: d.role,
    broker: url,
    l0Cn: l0.cn,
    parentCn: d.parentCn ?? '',
  })
}

/** L0's home with devices enrolled on its ledger (L0 not running yet), and a way to write their homes once L0's address is known. */
export interface GossipHomes {
  l0: L0Home
  /** Directory holding L0's home and the device homes. */
  base: string
  /** Writes every device home for a broker at `url` and returns the devices. */
  writeHomes(url: string): GossipDevice[]
}

/**
 * L0 and `roles.length` devices: the first is an admin under L0, the others under it with the given roles, enrolled
 * through the pure steps on L0's ledger before L0 starts. Removed after the test.
 */
export async function gossipHomes(
  t: Test,
  roles: RoleName[],
  opts: { start?: StartLedger } = {},
): Promise<GossipHomes> {
  const l0 = await makeL0Home({ domain: `g${Math.floor(Math.random() * 1e6)}.home.arpa` })
  const base = join(l0.dir, '..')
  t.teardown(() => rmSync(base, { recursive: true, force: true }))
  const enrolled: TestDevice[] = []
  await withHomeLedger(l0, async ledger => {
    for (let i = 0; i < roles.length; i++) {
      enrolled.push(
        await enrollDirect(l0, ledger, i === 0 ? l0.self : enrolled[0]!, {
          role: i === 0 ? 'admin' : roles[i]!,
          name: `device ${i}`,
        }),
      )
    }
  })
  // Each device's ledger as `kin enroll` leaves it: L0's log up to and including its own certified event.
  const all = ledgerBytes(l0)
  const { records } = scanRecords(all)
  const ledger = replayRecords(nodeCrypto, records)
  return {
    l0,
    base,
    writeHomes(url) {
      return enrolled.map(device => {
        const certifiedAt = ledger.state.log.findIndex(
          e => e.event.type === 'certified' && ledger.state.cnOfLabel(e.event.subject) === device.cn,
        )
        const upTo = opts.start === 'all' ? records.length : certifiedAt + 1
        const dir = join(base, `home-${device.cn.slice(0, 8)}`)
        writeDeviceHome(l0, device, dir, upTo >= records.length ? all : all.subarray(0, records[upTo]!.offset), url)
        return { ...device, home: dir }
      })
    },
  }
}

/** gossipHomes, then startL0 on 127.0.0.1:0 (it seals what the ledger holds); stopped after the test. */
export async function gossipFleet(
  t: Test,
  roles: RoleName[],
  opts: { start?: StartLedger; sealIntervalMs?: number } = {},
): Promise<GossipFleet> {
  const homes = await gossipHomes(t, roles, opts)
  const l0 = await LoopbackL0.start({ home: homes.l0.dir, sealIntervalMs: opts.sealIntervalMs })
  t.teardown(() => l0.stop())
  return {
    l0: homes.l0,
    devices: homes.writeHomes(l0.url),
    logs: l0.logs,
    url: l0.url,
    get services() {
      return l0.services
    },
    restart: (o = {}) => l0.restart(o),
    stop: () => l0.stop(),
    start: () => l0.start(),
  }
}

/** A follower on a device home, in-process, with what it reported collected. */
export interface TestFollower {
  follower: LedgerFollower
  files: OpenReplica
  heads: AdoptedHead[]
  alarms: HeadAlarm[]
  errors: Array<{ code: string; context: string }>
  close(): Promise<void>
}

/** Opens a device home's replica and a follower on it (not started). Closed after the test. */
export async function followerOf(t: Test, dir: string, opts: Partial<FollowerOptions> = {}): Promise<TestFollower> {
  const home = new Home(dir)
  const config = home.readConfig()
  const files = await openReplicaFiles(nodeCrypto, nodeStorage(dir))
  const out: TestFollower = {
    follower: undefined as unknown as LedgerFollower,
    files,
    heads: [],
    alarms: [],
    errors: [],
    close: async () => undefined,
  }
  out.follower = new LedgerFollower({
    transport: nodeTransport,
    fleet: config.fleet,
    replica: files.replica,
    clock: { now: nowSeconds },
    login: {
      url: String(config.broker),
      cn: config.cn,
      certPem: home.readText('cert'),
      keyPem: home.readText('tlsKey'),
      rootPem: home.readText('root'),
      l0Cn: String(config['l0Cn']),
    },
    backoff: { initialMs: 50, maxMs: 1000 },
    onHead: h => out.heads.push(h),
    onAlarm: a => out.alarms.push(a),
    onError: (e, context) => out.errors.push({ code: e.code, context }),
    ...opts,
  })
  let closed: Promise<void> | undefined
  out.close = () =>
    (closed ??= (async () => {
      await out.follower.close()
      await files.close()
    })())
  t.teardown(() => out.close())
  return out
}

/** A home's ledger file, verified. */
export function homeLedger(dir: string): Ledger {
  return replayRecords(nodeCrypto, scanRecords(new Uint8Array(readFileSync(join(dir, HOME_FILES.ledger)))).records)
}

/** The first `covered` records' bytes of a home's ledger file. */
export function coveredBytes(dir: string, covered: number): Uint8Array {
  const bytes = new Uint8Array(readFileSync(join(dir, HOME_FILES.ledger)))
  const { records } = scanRecords(bytes)
  return covered >= records.length ? bytes : bytes.subarray(0, records[covered]!.offset)
}

/** Appends events to a home's ledger file (the broker not running on it). */
export async function appendToLedgerFile(dir: string, events: EncodedEvent[]): Promise<void> {
  const ledger = await openHomeLedger(new Home(dir))
  try {
    for (const e of events) await ledger.append(e)
  } finally {
    await ledger.close()
  }
}

/** Polls `check` every 20 ms until it holds or `timeoutMs` passed; returns whether it held. */
export async function until(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > end) return false
    await new Promise(r => setTimeout(r, 20))
  }
  return true
}

/** A `kin` child process whose stdout is read line by line as it comes. */
export interface KinLines {
  lines: string[]
  /** The first line (now or later) that `pick` accepts, parsed as JSON; rejects after `timeoutMs`. */
  waitJson(pick: (doc: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>>
  signal(name: NodeJS.Signals): void
  done: Promise<{ status: number | null; stdout: string; stderr: string }>
}

/** Starts `node bin/kin.mjs …args`; killed after the test. */
export function startKinLines(t: Test, args: string[]): KinLines {
  const child = spawn(process.execPath, [join(REPO, 'bin', 'kin.mjs'), ...args], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  const lines: string[] = []
  let stdout = '',
    stderr = '',
    partial = ''
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString('utf8')
    partial += c.toString('utf8')
    for (let nl = partial.indexOf('\n'); nl >= 0; nl = partial.indexOf('\n')) {
      lines.push(partial.slice(0, nl))
      partial = partial.slice(nl + 1)
    }
  })
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString('utf8')
  })
  const done = new Promise<{ status: number | null; stdout: string; stderr: string }>(resolve =>
    child.on('close', status => resolve({ status, stdout, stderr })),
  )
  return {
    lines,
    done,
    signal: name => {
      child.kill(name)
    },
    async waitJson(pick, timeoutMs) {
      let found: Record<string, unknown> | undefined
      const ok = await until(() => {
        found = lines
          .map(l => {
            try {
              return JSON.parse(l) as Record<string, unknown>
            } catch {
              return {}
            }
          })
          .find(pick)
        return found !== undefined || child.exitCode !== null
      }, timeoutMs)
      if (!ok || found === undefined)
        throw new Error(`no such line from kin ${args[0]} within ${timeoutMs} ms; stdout: ${stdout}; stderr: ${stderr}`)
      return found
    },
  }
}

/** A device enrolled through the running L0 (pairing with L0 as the inviter, CA, certified handed over) and its home. */
export async function enrollThroughL0(fleet: GossipFleet, role: RoleName, name: string): Promise<GossipDevice> {
  const { inviter, client } = await inviterOf(fleet.l0.dir, fleet.url)
  try {
    const { device, dir } = await enrollIntoHome({
      client,
      inviter,
      url: fleet.url,
      homeOf: cn => join(fleet.l0.dir, '..', `home-${cn.slice(0, 8)}`),
      role,
      kind: 'phone',
      name,
      ttlSeconds: 120,
      guestValidSeconds: 2 * 86400,
      now: nowSeconds,
    })
    await until(() => fleet.services.ledger.ledger.state.currentBinding(device.cn)?.certHashes.length === 1, 30_000)
    return {
      cn: device.cn,
      parentCn: device.parentCn,
      role: device.role,
      certPem: device.certPem,
      keyPem: device.secrets.tls.privateKeyPem,
      ledgerSeed: device.secrets.ledgerSeed,
      bindingId: device.authorize.idHex,
      dir: '',
      home: dir,
    }
  } finally {
    await client.close()
  }
}

/** Catches a device home up with L0 in-process (what `kin sync` does), then closes its replica. */
export async function syncHome(t: Test, dir: string): Promise<void> {
  const f = await followerOf(t, dir)
  try {
    await f.follower.syncOnce(20_000)
  } finally {
    await f.close()
  }
}
