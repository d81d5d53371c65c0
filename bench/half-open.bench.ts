/** @module A real device's login and decision while a half-open flood runs, against the same without it, in the same run: L0's broker and a lock's access endpoint. */
import { rmSync } from 'node:fs'
import { dirname } from 'node:path'
import mqtt, { type MqttClient } from 'mqtt'
import { requestAccess, startAccessEndpoint } from '../runtime/node/tls-endpoint.ts'
import { DEFAULT_MAX_PENDING_CONNECTIONS } from '../runtime/node/pending-connections.ts'
import { openHalfOpen } from '../sim/attacks/half-open.ts'
import { enrollDirect, makeL0Home, startTestL0, withHomeLedger, type TestDevice } from '../test/broker/_fleet.ts'
import { makeServeHouse } from '../test/serve/_house.ts'
import type { L0Services } from '../broker/l0.ts'

const RUNS = 30
/** Flood sockets opened per batch, and the pause between batches: ~320 new half-open sockets a second. */
const FLOOD_BATCH = 16
const FLOOD_PAUSE_MS = 50
/** Bounds of one flood, whatever happens. */
const FLOOD_MAX_SOCKETS = 20_000
const FLOOD_MAX_MS = 120_000

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

/** A flood that keeps the listener's pending connections at its cap until stopped (bounded in sockets and time). */
function keepFlooding(host: string, port: number): { stop(): Promise<number> } {
  let stopped = false
  const started = Date.now()
  const floods: Array<{ stop(): void }> = []
  let opened = 0
  const loop = (async () => {
    // Fill the cap twice over, then top it up while the device works.
    const first = await openHalfOpen({ host, port, count: 2 * DEFAULT_MAX_PENDING_CONNECTIONS, kind: 'mixed' })
    floods.push(first)
    opened += first.opened
    while (!stopped && opened < FLOOD_MAX_SOCKETS && Date.now() - started < FLOOD_MAX_MS) {
      const more = await openHalfOpen({ host, port, count: FLOOD_BATCH, kind: 'mixed', batch: FLOOD_BATCH })
      floods.push(more)
      opened += more.opened
      await new Promise(r => setTimeout(r, FLOOD_PAUSE_MS))
    }
  })()
  return {
    async stop() {
      stopped = true
      await loop
      for (const f of floods) f.stop()
      return opened
    },
  }
}

/** Times `once` RUNS times (after 3 warm-ups); failures are counted, not timed. */
async function measure(once: () => Promise<void>): Promise<{ ms: number[]; failures: number }> {
  for (let i = 0; i < 3; i++) await once().catch(() => undefined)
  const ms: number[] = []
  let failures = 0
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now()
    try {
      await once()
      ms.push(performance.now() - t0)
    } catch {
      failures++
    }
  }
  ms.sort((a, b) => a - b)
  return { ms, failures }
}

async function compare(
  what: string,
  target: { host: string; port: number },
  once: () => Promise<void>,
  emit: (row: object) => void,
): Promise<void> {
  const quiet = await measure(once)
  const flood = keepFlooding(target.host, target.port)
  // Let the first wave fill the cap before timing.
  await new Promise(r => setTimeout(r, 500))
  const flooded = await measure(once)
  const sockets = await flood.stop()
  for (const [label, m, extra] of [
    ['no flood', quiet, {}],
    ['half-open flood', flooded, { floodSockets: sockets }],
  ] as const) {
    emit({
      bench: 'half-open',
      case: what,
      flood: label,
      runs: RUNS,
      failures: m.failures,
      pendingCap: DEFAULT_MAX_PENDING_CONNECTIONS,
      medianMs: m.ms.length === 0 ? null : +quantile(m.ms, 0.5).toFixed(3),
      p90Ms: m.ms.length === 0 ? null : +quantile(m.ms, 0.9).toFixed(3),
      ...extra,
    })
  }
}

function login(services: L0Services, dev: TestDevice): Promise<void> {
  return new Promise((resolve, reject) => {
    const client: MqttClient = mqtt.connect({
      protocol: 'mqtts',
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 30_000,
      clientId: dev.cn,
      host: services.host,
      port: services.port,
      ca: services.rootPem,
      servername: services.cn,
      rejectUnauthorized: true,
      cert: dev.certPem,
      key: dev.keyPem,
    })
    client.once('error', reject)
    client.once('close', () => reject(new Error('closed before SUBACK')))
    client.once('connect', () => {
      client.subscribe(services.topics.head, { qos: 1 }, err => {
        client.end(true)
        err ? reject(err) : resolve()
      })
    })
  })
}

/** Runs the bench and emits one JSON row per case and condition. */
export async function run(emit: (row: object) => void): Promise<void> {
  const l0 = await makeL0Home({ domain: 'bench-flood.home.arpa' })
  const phone = await withHomeLedger(l0, ledger => enrollDirect(l0, ledger, l0.self, { role: 'member' }))
  const { services } = await startTestL0(l0)
  try {
    await compare('L0: device login + subscribe (TLS, CONNACK, SUBACK)', services, () => login(services, phone), emit)
  } finally {
    await services.close()
    rmSync(dirname(l0.dir), { recursive: true, force: true })
  }

  const house = await makeServeHouse()
  const lock = house.cn['L3.3'],
    guest = house.cn['L3.4']
  const endpoint = await startAccessEndpoint({
    ...house.identity(lock),
    session: house.session(lock),
    host: '127.0.0.1',
    port: 0,
  })
  const session = house.session(guest)
  try {
    await compare(
      "lock's access endpoint: the guest's unlock (mutual TLS + decision)",
      endpoint,
      async () => {
        const outcome = await requestAccess({
          ...house.identity(guest),
          host: endpoint.host,
          port: endpoint.port,
          action: 'unlock',
          checkServer: der => session.checkServer(der),
          timeoutMs: 30_000,
        })
        if (outcome.answer?.code !== 'ALLOW')
          throw new Error(`not allowed: ${outcome.answer?.code ?? outcome.server.code}`)
      },
      emit,
    )
  } finally {
    await endpoint.close()
  }
}
