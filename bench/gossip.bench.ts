/** @module Gossip figures on loopback: time for a new head to reach 100 and 1,000 subscribed devices, and the miner's intake through MQTT against native Ed25519 verification. */
import { rmSync } from 'node:fs'
import { dirname } from 'node:path'
import { pathToFileURL } from 'node:url'
import mqtt, { type MqttClient } from 'mqtt'
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { nodePki } from '../runtime/node/pki.ts'
import { toHex } from '../agent/codec/bytes.ts'
import { FleetCa } from '../agent/enroll/ca.ts'
import { authorizeChild } from '../agent/enroll/parent.ts'
import { createEnrollRequest, type DeviceSecrets, type EnrollRequest } from '../agent/enroll/request.ts'
import { encodeSubmission } from '../agent/gossip/submit.ts'
import { signingInput } from '../agent/ledger/event.ts'
import { decodeHead } from '../agent/ledger/head.ts'
import { Ledger } from '../agent/ledger/ledger.ts'
import type { PersistentLedger } from '../agent/ledger/persistent.ts'
import type { EncodedEvent } from '../agent/ledger/types.ts'
import type { L0Services } from '../broker/l0.ts'
import { SEAL_INTERVAL_MS } from '../broker/miner-service.ts'
import { LoopbackL0 } from '../sim/live/l0.ts'
import { enrollThroughSteps } from '../sim/pure-enroll.ts'
import { makeL0Home, nowSeconds, withHomeLedger, type L0Home, type TestDevice } from '../test/broker/_fleet.ts'

/** Subscriber counts measured (KIN_GOSSIP_FLEETS=20,50 for a quick look). */
const FLEETS = process.env.KIN_GOSSIP_FLEETS?.split(',')
  .map(Number)
  .filter(n => Number.isInteger(n) && n > 0) ?? [100, 1000]
/** RSA-2048 TLS keys shared round-robin by the enrolled devices: generating 1,000 would dominate the run. */
const KEY_POOL = 8
/** New heads timed per fleet size. */
const ROUNDS = 5
/** Events pushed through MQTT for the intake rate, in submissions of 256 (MAX_SUBMISSION_EVENTS). */
const INTAKE_EVENTS = 4096
const BATCH = 256
/** Logins at once while the fleet connects. */
const CONNECT_PARALLEL = 50

interface Device {
  cn: string
  certPem: string
  keyPem: string
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

/**
 * Enrolls `n` devices under L0 through the pure steps (request, L0's authorize, the fleet CA, certified) on L0's
 * ledger. A CN is derived from a fresh nonce and the keys, and the ledger binds each authorize to its key hash, so
 * several CNs may share one TLS key; here they do, from a pool of KEY_POOL keys. Each gets its own ledger key.
 */
async function enrollFleet(l0: L0Home, ledger: PersistentLedger, n: number): Promise<Device[]> {
  const pool: Array<{ request: EnrollRequest; secrets: DeviceSecrets }> = []
  for (let i = 0; i < KEY_POOL; i++)
    pool.push(await createEnrollRequest(nodeCrypto, nodePki, { kind: 'sensor', name: `sensor ${i}` }))
  // Built in memory and written with one fsync at the end: per-event fsyncs would make the setup, not the bench, the slow part.
  const scratch = new Ledger(nodeCrypto)
  for (const e of ledger.ledger.state.log) scratch.ingest(e, { trustSignatures: true })
  const added: EncodedEvent[] = []
  const ca = new FleetCa({
    crypto: nodeCrypto,
    rootCertPem: l0.rootPem,
    rootKeyPem: l0.fleet.rootKey.privateKeyPem,
    ledger: {
      ledger: scratch,
      append: async (e, o) => {
        scratch.ingest(e, o)
        added.push(e)
        return e
      },
    },
  })
  const parent = { cn: l0.self.cn, ledgerSeed: l0.self.ledgerSeed, ledger: scratch }
  const parties = { crypto: nodeCrypto, pki: nodePki, parent, ca, domain: l0.domain, rootPem: l0.rootPem }
  const devices: Device[] = []
  const now = nowSeconds()
  for (let i = 0; i < n; i++) {
    const keys = pool[i % KEY_POOL]!
    const ledgerKey = nodeCrypto.randomBytes(32)
    const request: EnrollRequest = {
      ...keys.request,
      ledgerKey: nodeCrypto.ed25519PublicKey(ledgerKey),
      name: `sensor ${i}`,
    }
    const secrets: DeviceSecrets = { tls: keys.secrets.tls, ledgerSeed: ledgerKey }
    const { accepted, issued, certified } = await enrollThroughSteps(
      parties,
      { keys: { request, secrets } },
      { choices: { role: 'device', notAfter: now + 86400 }, now, childLedger: () => scratch },
    )
    scratch.ingest(certified)
    added.push(certified)
    devices.push({ cn: accepted.cn, certPem: issued.certificate.pem, keyPem: secrets.tls.privateKeyPem })
  }
  const written = await ledger.appendMany(added, { trustSignatures: true })
  if (written.accepted.length !== added.length)
    throw new Error(`the fleet's ledger refused ${added.length - written.accepted.length} events`)
  return devices
}

function connect(services: L0Services, d: Device): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect({
      protocol: 'mqtts',
      host: services.host,
      port: services.port,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 60_000,
      clientId: d.cn,
      cert: d.certPem,
      key: d.keyPem,
      ca: services.rootPem,
      servername: services.cn,
      rejectUnauthorized: true,
    })
    c.once('connect', () => resolve(c))
    c.once('error', reject)
  })
}

/** Connects and subscribes every device to the head topic; each gets the retained head first. */
async function subscribeAll(services: L0Services, devices: Device[]): Promise<MqttClient[]> {
  const clients: MqttClient[] = []
  for (let i = 0; i < devices.length; i += CONNECT_PARALLEL) {
    const batch = await Promise.all(
      devices.slice(i, i + CONNECT_PARALLEL).map(async d => {
        const c = await connect(services, d)
        const granted = await c.subscribeAsync(services.topics.head, { qos: 1 })
        if (granted[0]?.qos !== 1) throw new Error(`${d.cn} may not subscribe to the head`)
        return c
      }),
    )
    clients.push(...batch)
  }
  return clients
}

/**
 * One round: a device submits an event; resolves with the times (ms after the submission's PUBACK) at which the
 * miner logged the seal and at which the first and the last subscriber received the head of that height.
 */
async function headRound(
  services: L0Services,
  sealedAt: Map<number, number>,
  submitter: MqttClient,
  submitterCn: string,
  event: EncodedEvent,
  clients: MqttClient[],
): Promise<{ sealMs: number; firstMs: number; lastMs: number; height: number }> {
  const height = services.miner.miner.latestHead()!.height + 1
  const arrivals: number[] = []
  const done = new Promise<void>(resolve => {
    for (const c of clients) {
      const on = (topic: string, payload: Buffer) => {
        if (topic !== services.topics.head || decodeHead(new Uint8Array(payload)).height !== height) return
        c.off('message', on)
        arrivals.push(performance.now())
        if (arrivals.length === clients.length) resolve()
      }
      c.on('message', on)
    }
  })
  await submitter.publishAsync(services.topics.submit(submitterCn), Buffer.from(encodeSubmission([event])), { qos: 1 })
  const t0 = performance.now()
  await done
  arrivals.sort((a, b) => a - b)
  return {
    sealMs: (sealedAt.get(height) ?? NaN) - t0,
    firstMs: arrivals[0]! - t0,
    lastMs: arrivals[arrivals.length - 1]! - t0,
    height,
  }
}

/** Authorize events by L0 for fresh CNs (one key pair reused): cheap events for the intake run. */
function authorizations(services: L0Services, seed: Uint8Array, request: EnrollRequest, n: number): EncodedEvent[] {
  const now = nowSeconds()
  return Array.from({ length: n }, () =>
    authorizeChild(
      nodeCrypto,
      services.ledger.ledger,
      { cn: services.cn, ledgerSeed: seed },
      request,
      { role: 'device', notAfter: now + 86400 },
      now,
    ),
  )
}

/** Native Ed25519 verification of the same events with their issuer's key, messages prepared beforehand (as bench/miner.bench.ts does). */
function verifyRate(services: L0Services, events: EncodedEvent[]): number {
  const state = services.ledger.ledger.state
  const work = events.map(e => ({
    sig: e.event.signature,
    msg: signingInput(e.event),
    key: state.bindingById(toHex(e.event.links[0]!))!.ledgerKey,
  }))
  const start = performance.now()
  for (const w of work) if (!nodeCrypto.ed25519Verify(w.sig, w.msg, w.key)) throw new Error('verify failed')
  return Math.round(work.length / ((performance.now() - start) / 1000))
}

/** Runs the gossip bench and emits one JSON row per measurement. */
export async function run(emit: (row: object) => void): Promise<void> {
  const most = Math.max(...FLEETS)
  const l0 = await makeL0Home({ domain: 'gossip.bench.arpa' })
  const t0 = performance.now()
  const devices = await withHomeLedger(l0, ledger => enrollFleet(l0, ledger, most))
  emit({
    bench: 'gossip.fleet',
    devices: devices.length,
    keys: `TLS keys from a pool of ${KEY_POOL}`,
    enrollMs: Math.round(performance.now() - t0),
  })
  const sealedAt = new Map<number, number>()
  const { services } = await LoopbackL0.start({
    home: l0.dir,
    log: r => {
      const rec = r as { event?: string; height?: number }
      if (rec.event === 'ledger.sealed') sealedAt.set(rec.height!, performance.now())
    },
  })
  const keys = await createEnrollRequest(nodeCrypto, nodePki, { kind: 'camera', name: 'camera' })
  const self: TestDevice = l0.self
  let clients: MqttClient[] = []
  try {
    const submitter = await connect(services, { cn: self.cn, certPem: self.certPem, keyPem: self.keyPem })
    for (const n of FLEETS) {
      const t1 = performance.now()
      clients.push(...(await subscribeAll(services, devices.slice(clients.length, n))))
      const connectMs = performance.now() - t1
      const rounds = []
      for (let r = 0; r < ROUNDS; r++) {
        const [event] = authorizations(services, self.ledgerSeed, keys.request, 1)
        rounds.push(await headRound(services, sealedAt, submitter, self.cn, event!, clients))
      }
      const last = rounds.map(r => r.lastMs).sort((a, b) => a - b)
      const spread = rounds.map(r => r.lastMs - r.sealMs).sort((a, b) => a - b)
      emit({
        bench: 'gossip.headFanout',
        devices: n,
        keys: `TLS keys from a pool of ${KEY_POOL}`,
        rounds: ROUNDS,
        sealIntervalMs: SEAL_INTERVAL_MS,
        connectAndSubscribeMs: Math.round(connectMs),
        submitToLastDeviceMedianMs: +quantile(last, 0.5).toFixed(1),
        submitToLastDeviceMaxMs: +last[last.length - 1]!.toFixed(1),
        sealToLastDeviceMedianMs: +quantile(spread, 0.5).toFixed(1),
        sealToLastDeviceMaxMs: +spread[spread.length - 1]!.toFixed(1),
        submitToFirstDeviceMedianMs: +quantile(
          rounds.map(r => r.firstMs).sort((a, b) => a - b),
          0.5,
        ).toFixed(1),
      })
    }

    // Intake through MQTT: submissions of 256 events, all in flight at once, until the miner holds them all.
    const events = authorizations(services, self.ledgerSeed, keys.request, INTAKE_EVENTS)
    const verifyPerSec = verifyRate(services, events)
    const target = services.ledger.ledger.size + events.length
    const t2 = performance.now()
    for (let i = 0; i < events.length; i += BATCH)
      void submitter.publishAsync(
        services.topics.submit(self.cn),
        Buffer.from(encodeSubmission(events.slice(i, i + BATCH))),
        { qos: 1 },
      )
    while (services.ledger.ledger.size < target) await new Promise(r => setTimeout(r, 2))
    const ingestMs = performance.now() - t2
    const eventsPerSec = Math.round(events.length / (ingestMs / 1000))
    emit({
      bench: 'gossip.intake',
      path: 'MQTT submit → aedes → miner (validate, fsync)',
      events: events.length,
      batch: BATCH,
      ms: Math.round(ingestMs),
      eventsPerSec,
      ed25519VerifyPerSec: verifyPerSec,
      ratio: +(eventsPerSec / verifyPerSec).toFixed(3),
      seeAlso: 'bench/miner.bench.ts miner.ingest (miner alone)',
    })
    await submitter.endAsync(true)
  } finally {
    await Promise.all(clients.map(c => c.endAsync(true).catch(() => undefined)))
    clients = []
    await services.close()
    rmSync(dirname(l0.dir), { recursive: true, force: true })
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run(row => process.stdout.write(JSON.stringify(row) + '\n'))
}
