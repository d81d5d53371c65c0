/** @module L0 on loopback, for the live fleet and the tests: its home as `kin init` writes it, its real services on 127.0.0.1 with an OS-chosen port, restarted on that same port, stopped once. */
import { createFleet, type NewFleet } from '../../agent/enroll/fleet.ts'
import type { TlsKeyType } from '../../agent/pki/key-type.ts'
import { startL0, type L0Options, type L0Services } from '../../broker/l0.ts'
import { Home } from '../../runtime/home.ts'
import { writeL0Home } from '../../runtime/home-writers.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'

/** Writes L0's home into `dir` as `kin init` does (createFleet, then the same files and modes), in-process. */
export async function initL0Home(
  dir: string,
  opts: { domain: string; now?: number; name?: string; keyType?: TlsKeyType },
): Promise<NewFleet> {
  const name = opts.name ?? 'home pc'
  const fleet = await createFleet(nodeCrypto, nodePki, {
    domain: opts.domain,
    now: opts.now ?? Math.floor(Date.now() / 1000),
    name,
    keyType: opts.keyType,
  })
  await writeL0Home(new Home(dir), fleet, name)
  return fleet
}

/** How L0 on loopback starts: startL0's options without the address, which is always 127.0.0.1. */
export type LoopbackL0Options = Omit<L0Options, 'host' | 'port'>

/**
 * L0's services on 127.0.0.1 over one home. The port is the OS's choice at the first start and is kept by every
 * restart, so the devices' broker URL stays right. Without a `log` option, L0's log records are kept in `logs`.
 */
export class LoopbackL0 {
  /** The running services (a new object after each restart). */
  services: L0Services
  /** L0's log records, when no `log` option was given. */
  readonly logs: Array<Record<string, unknown>>
  readonly port: number
  /** The broker URL the devices use: mqtts://127.0.0.1:port. */
  readonly url: string
  private options: LoopbackL0Options
  private running: boolean

  private constructor(services: L0Services, options: LoopbackL0Options, logs: Array<Record<string, unknown>>) {
    this.services = services
    this.options = options
    this.logs = logs
    this.port = services.port
    this.url = `mqtts://127.0.0.1:${services.port}`
    this.running = true
  }

  /** Starts L0's services on the home `opts.home` (made by `kin init` or initL0Home) on a free loopback port. */
  static async start(opts: LoopbackL0Options): Promise<LoopbackL0> {
    const logs: Array<Record<string, unknown>> = []
    const options: LoopbackL0Options = { ...opts, log: opts.log ?? (r => logs.push(r as Record<string, unknown>)) }
    return new LoopbackL0(await startL0({ ...options, host: '127.0.0.1', port: 0 }), options, logs)
  }

  /** Whether the services run (between start and stop). */
  get isRunning(): boolean {
    return this.running
  }

  /** Stops L0's services; stopping stopped services does nothing. */
  async stop(): Promise<void> {
    if (!this.running) return
    this.running = false
    await this.services.close()
  }

  /** Starts the services again on the same home and port after `stop`; `changes` replace options from then on. */
  async start(changes: Partial<LoopbackL0Options> = {}): Promise<void> {
    if (this.running) return
    this.options = { ...this.options, ...changes }
    this.services = await startL0({ ...this.options, host: '127.0.0.1', port: this.port })
    this.running = true
  }

  /** A crash and restart of the home PC: stop, wait `downMs` with L0 gone, start again on the same port. */
  async restart(opts: { downMs?: number; changes?: Partial<LoopbackL0Options> } = {}): Promise<void> {
    await this.stop()
    if (opts.downMs !== undefined && opts.downMs > 0) await new Promise(r => setTimeout(r, opts.downMs))
    await this.start(opts.changes)
  }
}
