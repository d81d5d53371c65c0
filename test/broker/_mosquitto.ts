/** @module Test helpers for Debian's Mosquitto: a free port, a running broker and its log, exported files it can read. */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, chownSync } from 'node:fs'
import { createServer } from 'node:net'
import type { Test } from 'tap'
import type { MosquittoExport } from '../../broker/mosquitto.ts'

/** The tools of `tools` that are not on PATH. */
export function missingTools(tools: readonly string[]): string[] {
  return tools.filter(tool => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0)
}

/** A TCP port free on 127.0.0.1 now (for a broker that needs a fixed one). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

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
