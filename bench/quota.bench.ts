/** @module Miner quotas under spam: honest intake through MQTT with a guest flooding the miner, against the same without it, in one run. */
import { rmSync } from 'node:fs'
import { dirname } from 'node:path'
import { pathToFileURL } from 'node:url'
import mqtt, { type MqttClient } from 'mqtt'
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { nodePki } from '../runtime/node/pki.ts'
import { createEnrollRequest, type EnrollRequest } from '../agent/enroll/request.ts'
import { authorizeChild } from '../agent/enroll/parent.ts'
import { encodeSubmission } from '../agent/gossip/submit.ts'
import { encodeBundleRequest } from '../agent/gossip/ledger-wire.ts'
import { certifiedEvent, policyEvent } from '../agent/ledger/builders.ts'
import { signEvent } from '../agent/ledger/event.ts'
import type { EncodedEvent } from '../agent/ledger/types.ts'
import type { L0Services } from '../broker/l0.ts'
import { LoopbackL0 } from '../sim/live/l0.ts'
import { enrollDirect, makeL0Home, nowSeconds, withHomeLedger, type TestDevice } from '../test/broker/_fleet.ts'

/** Honest events per run, in submissions of 256 (MAX_SUBMISSION_EVENTS), all in flight at once. */
const HONEST_EVENTS = 2048
const BATCH = 256
/** Runs with and without the spammer, alternating; the rows give the medians and every run. */
const REPEATS = 5
/** Most spam messages per run: the spammer stops at this or when the honest events are in, whichever comes first. */
const MAX_SPAM = 5000
/** Spam messages the guest keeps in flight at once (each loop sends its next as soon as the broker acknowledged one). */
const SPAM_IN_FLIGHT = 8
/** Longest wait for one run's honest events, ms. */
const RUN_TIMEOUT_MS = 120_000

function connect(services: L0Services, d: Pick<TestDevice, 'cn' | 'certPem' | 'keyPem'>): Promise<MqttClient> {
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

/** Authorize events by L0 for fresh CNs (one key pair reused): the honest load. */
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

/**
 * The guest's spam, cycling as the attack that found the defect did: 256 certified events for hashes the CA never
 * issued, one such event, a policy on itself, a bundle request for its own CN. Each message is built once.
 */
function spamMessages(services: L0Services, guest: TestDevice): Array<{ topic: string; payload: Buffer }> {
  const state = services.ledger.ledger.state
  const binding = state.currentBinding(guest.cn)!
  const now = nowSeconds()
  const certified = (): EncodedEvent =>
    signEvent(nodeCrypto, certifiedEvent(binding, nodeCrypto.randomBytes(32), now), guest.ledgerSeed)
  const policy = signEvent(
    nodeCrypto,
    policyEvent(binding, binding, { subtree: false, maxHops: 8, maxHeadAge: 0, anchors: [], rules: [] }, now),
    guest.ledgerSeed,
  )
  const submit = services.topics.submit(guest.cn)
  return [
    { topic: submit, payload: Buffer.from(encodeSubmission(Array.from({ length: BATCH }, certified))) },
    { topic: submit, payload: Buffer.from(encodeSubmission([certified()])) },
    { topic: submit, payload: Buffer.from(encodeSubmission([policy])) },
    { topic: services.topics.syncReq(guest.cn), payload: Buffer.from(encodeBundleRequest(guest.cn)) },
  ]
}

interface RunFigures {
  ms: number
  eventsPerSec: number
  heads: number
  spamMessages: number
  spamBytes: number
  guestEventsKept: number
}

/** One run: the honest events through L0's own session, with or without the guest's spam alongside. */
async function intake(
  services: L0Services,
  honest: MqttClient,
  events: EncodedEvent[],
  spam: { client: MqttClient; guestCn: string; messages: Array<{ topic: string; payload: Buffer }> } | undefined,
): Promise<RunFigures> {
  const target = services.ledger.ledger.size + events.length
  const height0 = services.miner.miner.latestHead()!.height
  const size0 = services.ledger.ledger.size
  let done = false,
    sent = 0,
    bytes = 0
  const loop = async (): Promise<void> => {
    if (spam === undefined) return
    while (!done && sent < MAX_SPAM) {
      const m = spam.messages[sent++ % spam.messages.length]!
      bytes += m.payload.length
      await spam.client.publishAsync(m.topic, m.payload, { qos: 1 })
    }
  }
  const spammer = Promise.all(Array.from({ length: SPAM_IN_FLIGHT }, loop))
  const t0 = performance.now()
  for (let i = 0; i < events.length; i += BATCH) {
    void honest.publishAsync(
      services.topics.submit(services.cn),
      Buffer.from(encodeSubmission(events.slice(i, i + BATCH))),
      { qos: 1 },
    )
  }
  while (services.ledger.ledger.size < target) {
    if (performance.now() - t0 > RUN_TIMEOUT_MS)
      throw new Error(`the honest events were not all in within ${RUN_TIMEOUT_MS} ms`)
    await new Promise(r => setTimeout(r, 2))
  }
  const ms = performance.now() - t0
  done = true
  await spammer
  const state = services.ledger.ledger.state
  const guestEventsKept =
    spam === undefined ? 0 : state.log.slice(size0).filter(e => state.cnOfLabel(e.event.issuer) === spam.guestCn).length
  return {
    ms: Math.round(ms),
    eventsPerSec: Math.round(events.length / (ms / 1000)),
    heads: services.miner.miner.latestHead()!.height - height0,
    spamMessages: sent,
    spamBytes: bytes,
    guestEventsKept,
  }
}

/** Runs the quota bench and emits one JSON row per configuration. */
export async function run(emit: (row: object) => void): Promise<void> {
  const l0 = await makeL0Home({ domain: 'quota.bench.arpa' })
  const guest = await withHomeLedger(l0, ledger =>
    enrollDirect(l0, ledger, l0.self, { role: 'guest', name: 'spammer' }),
  )
  const { services } = await LoopbackL0.start({ home: l0.dir, log: () => undefined })
  const clients: MqttClient[] = []
  try {
    const honest = await connect(services, l0.self)
    clients.push(honest)
    const spamClient = await connect(services, guest)
    clients.push(spamClient)
    const keys = await createEnrollRequest(nodeCrypto, nodePki, { kind: 'camera', name: 'camera' })
    const spam = { client: spamClient, guestCn: guest.cn, messages: spamMessages(services, guest) }
    const runs: { clean: RunFigures[]; spam: RunFigures[] } = { clean: [], spam: [] }
    for (let r = 0; r < REPEATS; r++) {
      runs.clean.push(
        await intake(
          services,
          honest,
          authorizations(services, l0.self.ledgerSeed, keys.request, HONEST_EVENTS),
          undefined,
        ),
      )
      runs.spam.push(
        await intake(services, honest, authorizations(services, l0.self.ledgerSeed, keys.request, HONEST_EVENTS), spam),
      )
    }
    const median = (xs: RunFigures[], k: keyof RunFigures): number =>
      xs.map(x => x[k]).sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
    const clean = median(runs.clean, 'eventsPerSec'),
      spammed = median(runs.spam, 'eventsPerSec')
    emit({
      bench: 'quota.intakeUnderSpam',
      path: 'MQTT submit → aedes → miner service (quota, admission, validate, fsync)',
      honestEvents: HONEST_EVENTS,
      batch: BATCH,
      repeats: REPEATS,
      spam: `guest session: 256 unissued certified events, 1 unissued certified, 1 self-policy, 1 bundle request, cycling, ${SPAM_IN_FLIGHT} in flight`,
      median: {
        cleanEventsPerSec: clean,
        spamEventsPerSec: spammed,
        ratio: +(spammed / clean).toFixed(3),
        spamMessages: median(runs.spam, 'spamMessages'),
      },
      guestEventsKept: runs.spam.reduce((n, x) => n + x.guestEventsKept, 0),
      clean: runs.clean,
      spammed: runs.spam,
    })
  } finally {
    await Promise.all(clients.map(c => c.endAsync(true).catch(() => undefined)))
    await services.close()
    rmSync(dirname(l0.dir), { recursive: true, force: true })
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run(row => process.stdout.write(JSON.stringify(row) + '\n'))
}
