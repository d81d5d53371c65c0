/** @module Enrollment test harness: fleets made with `kin init`, the real L0 (startL0) on loopback, `kin` as a child process. */
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import type { L0Services } from '../../broker/l0.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { initL0Home, LoopbackL0 } from '../../sim/live/l0.ts'
import { Home, type HomeConfig } from '../../runtime/home.ts'
import type { GossipClient } from '../../agent/gossip/client.ts'
import type { Inviter } from '../../agent/gossip/invite-session.ts'
import { connectDevice } from '../../agent/gossip/login.ts'
import { replayRecords } from '../../agent/ledger/persistent.ts'
import { scanRecords } from '../../agent/ledger/store.ts'

/** The repository root (where bin/kin.mjs lives). */
export const REPO = fileURLToPath(new URL('../../', import.meta.url))
const KIN = join(REPO, 'bin', 'kin.mjs')

/** A fresh temporary directory, removed after the test. */
export function tempDir(t: Test, tag: string): string {
  const dir = mkdtempSync(join(tmpdir(), `kin-${tag}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** What a `kin` run left behind. */
export interface KinRun {
  status: number | null
  stdout: string
  stderr: string
}

/** A running `kin` process: its output so far, its lines, and its end. */
export interface KinProcess {
  /** Resolves with the first complete stdout line. */
  firstLine: Promise<string>
  done: Promise<KinRun>
  pid: number | undefined
  kill(): void
}

/** Starts `node bin/kin.mjs …args` (a user's command line). */
export function startKin(args: string[], opts: { timeoutMs?: number } = {}): KinProcess {
  const child = spawn(process.execPath, [KIN, ...args], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FORCE_COLOR: '0' },
  })
  let stdout = '',
    stderr = ''
  let lineResolve: (line: string) => void
  let lineReject: (err: Error) => void
  const firstLine = new Promise<string>((resolve, reject) => {
    lineResolve = resolve
    lineReject = reject
  })
  firstLine.catch(() => undefined)
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString('utf8')
    const nl = stdout.indexOf('\n')
    if (nl >= 0) lineResolve(stdout.slice(0, nl))
  })
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString('utf8')
  })
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 90_000)
  const done = new Promise<KinRun>(resolve => {
    child.on('close', status => {
      clearTimeout(timer)
      lineReject(new Error(`kin ${args[0]} ended (status ${status}) before printing a line; stderr: ${stderr}`))
      resolve({ status, stdout, stderr })
    })
  })
  return { firstLine, done, pid: child.pid, kill: () => child.kill('SIGTERM') }
}

/** Runs `kin …args` to completion. */
export function kin(args: string[], opts: { timeoutMs?: number } = {}): Promise<KinRun> {
  return startKin(args, opts).done
}

/** Starts `kin invite --json` in `home` for a device of `role`; `extra` options (a broker, a name, a ttl) before --json. */
export function startInvite(home: string, role: string, extra: string[] = []): KinProcess {
  return startKin(['invite', '--home', home, '--role', role, ...extra, '--json'])
}

/**
 * `kin enroll --json` of a new device home as `kind` through the broker at `url`, with a pairing code or the one a
 * running `kin invite --json` printed on its first line; `extra` options last.
 */
export async function enroll(
  home: string,
  code: string | KinProcess,
  url: string,
  kind: string,
  extra: string[] = [],
): Promise<KinRun> {
  const pairingCode = typeof code === 'string' ? code : (JSON.parse(await code.firstLine) as { code: string }).code
  return kin(['enroll', '--home', home, '--code', pairingCode, '--broker', url, '--kind', kind, ...extra, '--json'])
}

/** Asserts a run's exit status; on a mismatch its output is shown as a comment. */
export function expectExit(t: Test, run: KinRun, status: number, message: string): void {
  if (run.status !== status) t.comment(`stdout: ${run.stdout}\nstderr: ${run.stderr}`)
  t.equal(run.status, status, message)
}

/**
 * Polls `check` every 50 ms until it holds or `timeoutMs` passed (for work L0 finishes after acknowledging);
 * resolves with whether it held.
 */
export async function eventually(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() >= end) return false
    await new Promise(r => setTimeout(r, 50))
  }
  return true
}

/** The last JSON document a `kin --json` run printed (multi-line documents included). */
export function lastJson(out: string): Record<string, unknown> {
  const text = out.trim()
  for (let i = text.lastIndexOf('{'); i >= 0; i = text.lastIndexOf('{', i - 1)) {
    try {
      return JSON.parse(text.slice(i)) as Record<string, unknown>
    } catch {
      /* not the start of the last document yet */
    }
  }
  throw new Error(`no JSON in output: ${out}`)
}

/** `openssl verify -CAfile root cert`; true when OpenSSL accepts the chain. */
export function opensslVerifies(rootPath: string, certPath: string): boolean {
  try {
    return /: OK\s*$/.test(
      execFileSync('openssl', ['verify', '-CAfile', rootPath, certPath], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    )
  } catch {
    return false
  }
}

/** A fleet's L0: its home made by `kin init`, and its running services. */
export interface TestL0 {
  dir: string
  home: string
  services: L0Services
  url: string
  logs: Array<Record<string, unknown>>
  /** Stops the services and starts them again on the same home and port (an L0 restart). */
  restart(): Promise<void>
}

/** What `kin init` writes (same files, same modes), in-process: a test that is not about init saves a process. */
export async function initL0InProcess(home: string, domain: string): Promise<void> {
  await initL0Home(home, { domain })
}

/**
 * L0's home in a fresh directory (`kin init` as a child process when `cliInit`, else the same files in-process),
 * then startL0 on 127.0.0.1 with an OS-chosen port; stopped after the test.
 */
export async function startFleet(
  t: Test,
  tag: string,
  domain = `${tag}.home.arpa`,
  opts: { cliInit?: boolean } = {},
): Promise<TestL0> {
  const dir = tempDir(t, tag)
  const home = join(dir, 'l0')
  if (opts.cliInit === true) {
    const init = await kin(['init', '--home', home, '--fleet', domain, '--name', 'home pc'])
    if (init.status !== 0) throw new Error(`kin init failed: ${init.stderr}`)
  } else {
    await initL0InProcess(home, domain)
  }
  const l0 = await LoopbackL0.start({ home })
  t.teardown(() => l0.stop())
  return {
    dir,
    home,
    logs: l0.logs,
    url: l0.url,
    get services() {
      return l0.services
    },
    restart: () => l0.restart(),
  }
}

/** Reads a home's config.json. */
export function configOf(homeDir: string): HomeConfig {
  return new Home(homeDir).readConfig()
}

/**
 * An inviter built from a home, in-process: the ledger is a snapshot of ledger.cbor (as `kin invite` reads it on
 * L0), the session a real mutual-TLS device session.
 */
export async function inviterOf(homeDir: string, url: string): Promise<{ inviter: Inviter; client: GossipClient }> {
  const home = new Home(homeDir)
  const config = home.readConfig()
  const ledger = replayRecords(nodeCrypto, scanRecords(new Uint8Array(readFileSync(home.path('ledger')))).records)
  const inviter: Inviter = {
    cn: config.cn,
    fleet: config.fleet,
    l0Cn: ledger.state.genesis!.cn,
    ledgerSeed: home.readLedgerKey(),
    ledger,
    rootPem: home.readText('root'),
  }
  const client = await connectDevice(
    nodeTransport,
    {
      url,
      cn: config.cn,
      certPem: home.readText('cert'),
      keyPem: home.readText('tlsKey'),
      rootPem: inviter.rootPem,
      l0Cn: inviter.l0Cn,
    },
    { timeoutMs: 30_000 },
  )
  return { inviter, client }
}
