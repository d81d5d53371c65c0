/**
 * @module Head fan-out to many sessions: a device's submission until every session subscribed to the head holds the
 * new head, through L0's aedes, Mosquitto (the export) and a 3-node NATS cluster (the export), in one run.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, chownSync, rmSync } from 'node:fs'
import { dirname } from 'node:path'
import mqtt, { type MqttClient } from 'mqtt'
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { signEvent } from '../agent/ledger/event.ts'
import { policyEvent } from '../agent/ledger/builders.ts'
import type { PersistentLedger } from '../agent/ledger/persistent.ts'
import { fleetTopics } from '../agent/gossip/topics.ts'
import { startL0Client } from '../broker/l0-client.ts'
import { exportMosquitto } from '../broker/mosquitto.ts'
import { LoopbackL0 } from '../sim/live/l0.ts'
import {
  enrollDirect,
  makeL0Home,
  submission,
  tempDir,
  withHomeLedger,
  type L0Home,
  type TestDevice,
} from '../test/broker/_fleet.ts'
import { freePort, startNatsCluster } from '../test/broker/_nats.ts'

/** Sessions subscribed to the head (KIN_FANOUT_SESSIONS overrides, for a quick run). */
const SESSIONS = Number(process.env.KIN_FANOUT_SESSIONS ?? 200)
const RUNS = 10
// The miner seals at once, so the figure is the broker's: intake, one head and events publish, fan-out.
const SEAL_MS = 1
const DEADLINE_MS = 60_000

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

interface Target {
  name: string
  ports: number[]
  ledger: () => PersistentLedger
  close: () => Promise<void>
}

/** Connects every device to one of `ports` in turn and subscribes it to the head; resolves when all hold one. */
async function sessions(
  l0: L0Home,
  devices: TestDevice[],
  ports: number[],
  onHead: (i: number, hex: string) => void,
): Promise<MqttClient[]> {
  const topic = fleetTopics(l0.domain).head
  return Promise.all(
    devices.map(
      (dev, i) =>
        new Promise<MqttClient>((resolve, reject) => {
          const c = mqtt.connect({
            protocol: 'mqtts',
            host: '127.0.0.1',
            port: ports[i % ports.length],
            protocolVersion: 4,
            reconnectPeriod: 0,
            connectTimeout: 30_000,
            clientId: dev.cn,
            clean: true,
            cert: dev.certPem,
            key: dev.keyPem,
            ca: l0.rootPem,
            servername: l0.cn,
            rejectUnauthorized: true,
          })
          c.on('message', (t, p) => {
            if (t === topic) onHead(i, p.toString('hex'))
          })
          c.once('error', reject)
          // A cluster answers SUBACK 0x80 while it creates many sessions at once: retried (bounded), as devices do.
          const subscribe = (left: number): void => {
            c.subscribe(topic, { qos: 1 }, err => {
              if (err === null || err === undefined) return resolve(c)
              if (left === 0) return reject(err)
              setTimeout(() => subscribe(left - 1), 500)
            })
          }
          c.once('connect', () => subscribe(20))
        }),
    ),
  )
}

async function fanout(
  l0: L0Home,
  devices: TestDevice[],
  phone: TestDevice,
  target: Target,
  emit: (row: object) => void,
): Promise<number> {
  const heads: string[] = new Array(devices.length).fill('')
  const clients = await sessions(l0, devices, target.ports, (i, hex) => {
    heads[i] = hex
  })
  const topics = fleetTopics(l0.domain)
  const publisher = clients[devices.indexOf(phone)]!
  const ms: number[] = []
  try {
    for (let run = 0; run < RUNS + 2; run++) {
      const state = target.ledger().ledger.state
      const e = signEvent(
        nodeCrypto,
        policyEvent(
          state.currentBinding(phone.cn)!,
          state.currentBinding(devices[1]!.cn)!,
          {
            subtree: false,
            maxHops: 1 + run,
            maxHeadAge: 0,
            anchors: [],
            rules: [],
          },
          Math.floor(Date.now() / 1000),
        ),
        phone.ledgerSeed,
      )
      const before = new Set(heads)
      const t0 = performance.now()
      await publisher.publishAsync(topics.submit(phone.cn), Buffer.from(submission([e])), { qos: 1 })
      const end = Date.now() + DEADLINE_MS
      // Every session holds one head no session held before, and they all hold the same.
      while (!(heads.every(h => !before.has(h)) && new Set(heads).size === 1)) {
        if (Date.now() > end) throw new Error(`${target.name}: not every session got the head within ${DEADLINE_MS} ms`)
        await new Promise(r => setTimeout(r, 2))
      }
      if (run >= 2) ms.push(performance.now() - t0)
    }
  } finally {
    await Promise.all(clients.map(c => c.endAsync(true)))
  }
  ms.sort((a, b) => a - b)
  const median = quantile(ms, 0.5)
  emit({
    bench: 'broker-fanout',
    case: `submission → head at ${devices.length} sessions, ${target.name}`,
    runs: ms.length,
    medianMs: +median.toFixed(1),
    p90Ms: +quantile(ms, 0.9).toFixed(1),
  })
  return median
}

function handToMosquittoUser(dir: string, keyfile: string): void {
  if (process.getuid?.() !== 0) return
  const uid = Number(execFileSync('id', ['-u', 'mosquitto'], { encoding: 'utf8' }).trim())
  const gid = Number(execFileSync('id', ['-g', 'mosquitto'], { encoding: 'utf8' }).trim())
  chmodSync(dir, 0o755)
  chownSync(keyfile, uid, gid)
}

async function startMosquitto(conf: string): Promise<ChildProcess> {
  const child = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] })
  let text = ''
  child.stderr!.on('data', d => {
    text += d
  })
  child.stdout!.on('data', d => {
    text += d
  })
  const end = Date.now() + DEADLINE_MS
  while (!/mosquitto version [\d.]+ running/.test(text)) {
    if (child.exitCode !== null || Date.now() > end) throw new Error(`mosquitto did not start:\n${text}`)
    await new Promise(r => setTimeout(r, 20))
  }
  return child
}

/** Runs the fan-out bench on the three brokers and emits one row each, then the ratios. */
export async function run(emit: (row: object) => void): Promise<void> {
  const l0 = await makeL0Home({ domain: 'fanout.home.arpa' })
  const devices = await withHomeLedger(l0, async ledger => {
    const phone = await enrollDirect(l0, ledger, l0.self, { role: 'member' })
    const out = [phone]
    for (let i = 1; i < SESSIONS; i++) out.push(await enrollDirect(l0, ledger, phone, { role: 'device' }))
    return out
  })
  const phone = devices[0]!
  const medians: Record<string, number> = {}
  try {
    {
      const { services } = await LoopbackL0.start({
        home: l0.dir,
        log: () => undefined,
        sealIntervalMs: SEAL_MS,
      })
      try {
        medians.aedes = await fanout(
          l0,
          devices,
          phone,
          { name: "L0's aedes", ports: [services.port], ledger: () => services.ledger, close: () => services.close() },
          emit,
        )
      } finally {
        await services.close()
      }
    }
    {
      const port = await freePort()
      const out = await exportMosquitto({
        home: l0.dir,
        dir: tempDir('kin-fanout-mosquitto-'),
        host: '127.0.0.1',
        port,
      })
      handToMosquittoUser(out.dir, out.files.keyfile)
      const mosquitto = await startMosquitto(out.files.conf)
      try {
        const services = await startL0Client({
          home: l0.dir,
          broker: `mqtts://127.0.0.1:${port}`,
          log: () => undefined,
          sealIntervalMs: SEAL_MS,
        })
        try {
          medians.mosquitto = await fanout(
            l0,
            devices,
            phone,
            { name: 'Mosquitto', ports: [port], ledger: () => services.ledger, close: () => services.close() },
            emit,
          )
        } finally {
          await services.close()
        }
      } finally {
        mosquitto.kill('SIGKILL')
      }
    }
    {
      const cluster = await startNatsCluster(l0.dir, 3)
      try {
        const services = await startL0Client({
          home: l0.dir,
          broker: cluster.exported.urls,
          natsDir: cluster.exported.dir,
          log: () => undefined,
          sealIntervalMs: SEAL_MS,
        })
        try {
          // Sessions spread over the three nodes.
          medians.nats = await fanout(
            l0,
            devices,
            phone,
            {
              name: 'NATS, 3 nodes',
              ports: cluster.nodes.map(n => n.mqttPort),
              ledger: () => services.ledger,
              close: () => services.close(),
            },
            emit,
          )
        } finally {
          await services.close()
        }
      } finally {
        await cluster.stop()
      }
    }
    emit({
      bench: 'broker-fanout',
      case: 'ratios to aedes (median)',
      mosquitto: +(medians.mosquitto! / medians.aedes!).toFixed(2),
      nats: +(medians.nats! / medians.aedes!).toFixed(2),
    })
  } finally {
    rmSync(dirname(l0.dir), { recursive: true, force: true })
  }
}
