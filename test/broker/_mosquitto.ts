/**
 * @module Test helpers for Debian's Mosquitto: a free port, a running broker and its log, exported files it can read, and
 * its command-line clients logged in with a device certificate.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, chownSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import { exportMosquitto, type MosquittoExport } from '../../broker/mosquitto.ts'
import { enrollDirect, makeL0Home, tempDir, withHomeLedger, type L0Home, type TestDevice } from './_fleet.ts'
import { freePort } from '../helpers/free-port.ts'

/** The tools of `tools` that are not on PATH. */
export function missingTools(tools: readonly string[]): string[] {
  return tools.filter(tool => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0)
}

export { freePort }

/** A running Mosquitto: its process and what it logged. */
export interface Mosquitto {
  child: ChildProcess
  log: () => string
  /** Resolves when its log matches `pattern` (the test's timeout bounds the wait). */
  logged(pattern: RegExp, from?: number): Promise<void>
}

/** Starts `mosquitto -c conf`, stopped when `t` ends; resolves once it says it runs. */
export function startMosquitto(t: Test, conf: string): Promise<Mosquitto> {
  const child = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] })
  let text = ''
  child.stdout!.on('data', d => {
    text += d
  })
  child.stderr!.on('data', d => {
    text += d
  })
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGTERM')
  })
  const m: Mosquitto = {
    child,
    log: () => text,
    logged: async (pattern, from = 0) => {
      while (!pattern.test(text.slice(from))) {
        if (child.exitCode !== null) throw new Error(`mosquitto exited with ${child.exitCode}:\n${text}`)
        await new Promise(r => setTimeout(r, 20))
      }
    },
  }
  return m.logged(/mosquitto version [\d.]+ running/).then(() => m)
}

/**
 * Mosquitto started as root drops to the user "mosquitto" (mosquitto.conf(5), `user`), which must read the exported
 * files: what an operator does with chown, the test does here.
 */
export function handToMosquittoUser(out: MosquittoExport): void {
  if (process.getuid?.() !== 0) return
  const uid = Number(execFileSync('id', ['-u', 'mosquitto'], { encoding: 'utf8' }).trim())
  const gid = Number(execFileSync('id', ['-g', 'mosquitto'], { encoding: 'utf8' }).trim())
  chmodSync(out.dir, 0o755)
  chownSync(out.files.keyfile, uid, gid)
  chownSync(out.files.rsaKeyfile, uid, gid)
}

/** How a mosquitto client ended, with what it wrote to stdout and stderr together. */
export interface ClientRun {
  status: number | null
  out: string
}

/** Runs a mosquitto client without blocking this process (L0's broker runs in it), killed after `killAfterMs` at the latest. */
export function runClient(
  tool: string,
  args: string[],
  killAfterMs = 60_000,
): { done: Promise<ClientRun>; out: () => string } {
  const child = spawn(tool, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', d => {
    out += d
  })
  child.stderr.on('data', d => {
    out += d
  })
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs)
  const done = new Promise<ClientRun>(resolve =>
    child.on('close', status => {
      clearTimeout(timer)
      resolve({ status, out })
    }),
  )
  return { done, out: () => out }
}

/** A client's arguments to log in to `host:port` as `device` (MQTT 3.1.1), verifying the broker against `root`. */
export function clientLogin(
  host: string,
  port: number,
  device: TestDevice,
  root: string,
  extra: string[] = [],
): string[] {
  return [
    ...['-h', host, '-p', String(port), '-V', 'mqttv311', '--cafile', root],
    ...['--cert', join(device.dir, 'cert.pem'), '--key', join(device.dir, 'tls-key.pem')],
    // L0's broker and the export both take the certificate's CN as the client id.
    ...['-i', device.cn, ...extra],
  ]
}

/** mosquitto_pub after `login`: one QoS 1 message, so a status 0 means the broker acknowledged it. */
export function publishQos1(login: string[], topic: string, message: string): Promise<ClientRun> {
  return runClient('mosquitto_pub', [...login, '-q', '1', '-t', topic, '-m', message]).done
}

/** An L0 home with a camera and a sensor it enrolled, and the root certificate file a client verifies L0 against. */
export async function cameraAndSensor(): Promise<{ l0: L0Home; camera: TestDevice; sensor: TestDevice; root: string }> {
  const l0 = await makeL0Home()
  const { camera, sensor } = await withHomeLedger(l0, async ledger => ({
    camera: await enrollDirect(l0, ledger, l0.self, { role: 'device', kind: 'camera' }),
    sensor: await enrollDirect(l0, ledger, l0.self, { role: 'device', kind: 'sensor' }),
  }))
  return { l0, camera, sensor, root: join(l0.self.dir, 'root.pem') }
}

/** `home` exported for Mosquitto on a free port into a fresh `prefix` directory, and Mosquitto running it until `t` ends. */
export async function startExport(t: Test, home: string, prefix: string): Promise<MosquittoExport> {
  const exported = await exportMosquitto({ home, dir: tempDir(prefix), port: await freePort() })
  handToMosquittoUser(exported)
  await startMosquitto(t, exported.files.conf)
  return exported
}
