/** @module L0's broker on loopback: a bare mutual-TLS handshake against a device login (CONNACK) and login + subscribe (SUBACK). */
import { rmSync } from 'node:fs'
import { dirname } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import mqtt, { type MqttClient } from 'mqtt'
import {
  enrollDirect,
  makeInvite,
  makeL0Home,
  registerInvite,
  startTestL0,
  withHomeLedger,
  type TestDevice,
} from '../test/broker/_fleet.ts'
import type { L0Services } from '../broker/l0.ts'

const RUNS = 60

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

async function measure(what: string, once: () => Promise<void>, emit: (row: object) => void): Promise<void> {
  for (let i = 0; i < 3; i++) await once()
  const ms: number[] = []
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now()
    await once()
    ms.push(performance.now() - t0)
  }
  ms.sort((a, b) => a - b)
  emit({
    bench: 'broker',
    case: what,
    runs: RUNS,
    medianMs: +quantile(ms, 0.5).toFixed(3),
    p90Ms: +quantile(ms, 0.9).toFixed(3),
  })
}

function tlsOptions(services: L0Services, dev: TestDevice | undefined) {
  return {
    host: services.host,
    port: services.port,
    ca: services.rootPem,
    servername: services.cn,
    rejectUnauthorized: true,
    ...(dev === undefined ? {} : { cert: dev.certPem, key: dev.keyPem }),
  }
}

function bareHandshake(services: L0Services, dev: TestDevice): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect(tlsOptions(services, dev), () => {
      s.destroy()
      resolve()
    })
    s.once('error', reject)
  })
}

function login(
  services: L0Services,
  dev: TestDevice | undefined,
  extra: Record<string, unknown>,
  subscribeTo?: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const client: MqttClient = mqtt.connect({
      protocol: 'mqtts',
      protocolVersion: 4,
      reconnectPeriod: 0,
      clientId: dev?.cn,
      ...tlsOptions(services, dev),
      ...extra,
    })
    client.once('error', reject)
    client.once('connect', () => {
      if (subscribeTo === undefined) {
        client.end(true, () => resolve())
        return
      }
      client.subscribe(subscribeTo, { qos: 1 }, err => {
        client.end(true)
        err ? reject(err) : resolve()
      })
    })
  })
}

/** Runs the broker bench and emits one JSON row per case. */
export async function run(emit: (row: object) => void): Promise<void> {
  const l0 = await makeL0Home({ domain: 'bench.home.arpa' })
  const phone = await withHomeLedger(l0, ledger => enrollDirect(l0, ledger, l0.self, { role: 'member' }))
  const { services } = await startTestL0(l0)
  try {
    await measure('bare TLS handshake with a client certificate', () => bareHandshake(services, phone), emit)
    await measure(
      'device login (TLS + CONNACK: chain, ledger binding, standing)',
      () => login(services, phone, {}),
      emit,
    )
    await measure(
      'device login + subscribe own inbox (SUBACK)',
      () => login(services, phone, {}, services.topics.inboxAll(phone.cn)),
      emit,
    )
    // A pairing code works once: each run registers a fresh invite first (not timed).
    const parent = await new Promise<MqttClient>((resolve, reject) => {
      const c = mqtt.connect({
        protocol: 'mqtts',
        protocolVersion: 4,
        reconnectPeriod: 0,
        clientId: phone.cn,
        ...tlsOptions(services, phone),
      })
      c.once('connect', () => resolve(c))
      c.once('error', reject)
    })
    const pairingMs: number[] = []
    for (let i = 0; i < 20; i++) {
      const invite = makeInvite(phone, { role: 'device' })
      await registerInvite(services, parent, phone, invite.registration)
      const t0 = performance.now()
      await login(services, undefined, {
        clientId: `pair-${invite.invite.inviteId}`,
        username: `pair:${invite.invite.inviteId}`,
        password: invite.secrets.loginProof,
      })
      pairingMs.push(performance.now() - t0)
    }
    pairingMs.sort((a, b) => a - b)
    emit({
      bench: 'broker',
      case: 'pairing login (TLS without certificate + code check + durable used mark)',
      runs: pairingMs.length,
      medianMs: +quantile(pairingMs, 0.5).toFixed(3),
      p90Ms: +quantile(pairingMs, 0.9).toFixed(3),
    })
    await parent.endAsync(true)
  } finally {
    await services.close()
    rmSync(dirname(l0.dir), { recursive: true, force: true })
  }
}
