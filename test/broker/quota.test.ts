import t, { type Test } from 'tap'
import type { MqttClient } from 'mqtt'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import { certifiedEvent, policyEvent } from '../../agent/ledger/builders.ts'
import { DEFAULT_QUOTAS } from '../../agent/ledger/quota.ts'
import { decodeBundle } from '../../agent/ledger/bundle.ts'
import {
  decodeLedgerResponse,
  encodeBundleRequest,
  encodeLedgerSyncRequest,
  type LedgerResponse,
} from '../../agent/gossip/ledger-wire.ts'
import type { EncodedEvent, PolicyBody } from '../../agent/ledger/types.ts'
import { startL0, type L0Services } from '../../broker/l0.ts'
import { connectDevice, end, submission, subscribeGranted } from './_fleet.ts'
import {
  enrollThroughL0,
  gossipHomes,
  nowSeconds,
  until,
  type GossipDevice,
  type GossipFleet,
} from '../gossip/_fleet.ts'

// The quota clock stands still: no bucket refills during a test, so what the ledger may gain is exactly the bursts.
// The seal interval is longer than any test: every head sealed is one the test asked for, so heads are counted exactly.
const SEAL_INTERVAL_MS = 10 * 60_000
const WAIT_MS = 30_000

interface Started {
  fleet: GossipFleet
  services: L0Services
  logs: Array<Record<string, unknown>>
  admin: GossipDevice
  member: GossipDevice
  guest: GossipDevice
}

async function start(t: Test): Promise<Started> {
  const homes = await gossipHomes(t, ['admin', 'member', 'guest'])
  const logs: Array<Record<string, unknown>> = []
  const services = await startL0({
    home: homes.l0.dir,
    host: '127.0.0.1',
    port: 0,
    log: r => logs.push(r as Record<string, unknown>),
    sealIntervalMs: SEAL_INTERVAL_MS,
    quota: { clock: () => 0 },
  })
  t.teardown(() => services.close())
  const url = `mqtts://127.0.0.1:${services.port}`
  const devices = homes.writeHomes(url)
  const fleet: GossipFleet = {
    l0: homes.l0,
    devices,
    services,
    url,
    logs,
    restart: () => Promise.reject(new Error('not here')),
    stop: () => services.close(),
    start: () => Promise.reject(new Error('not here')),
  }
  return { fleet, services, logs, admin: devices[0]!, member: devices[1]!, guest: devices[2]! }
}

/** A policy body made distinct by `k` (the start of its rule's window), so each event has its own id. */
function policyBody(k: number): PolicyBody {
  return {
    subtree: false,
    maxHops: 8,
    maxHeadAge: 0,
    anchors: [],
    rules: [{ action: 'unlock', roles: ['guest'], from: k, to: 86400 }],
  }
}

function refusalsFrom(logs: Array<Record<string, unknown>>, cn: string): Array<Record<string, unknown>> {
  return logs.filter(r => r.event === 'ledger.refused' && r.from === cn)
}

function countBy(records: Array<Record<string, unknown>>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const r of records) out[r.code as string] = (out[r.code as string] ?? 0) + 1
  return out
}

async function publishAll(client: MqttClient, topic: string, payloads: Uint8Array[]): Promise<void> {
  for (const p of payloads) await client.publishAsync(topic, Buffer.from(p), { qos: 1 })
}

t.test(
  "a guest's spam over MQTT: certified events for hashes the CA never issued, policy on itself, 1,280 events at once; nothing enters, an honest enrollment does",
  async t => {
    const { fleet, services, logs, guest } = await start(t)
    const state = services.ledger.ledger.state
    const binding = state.currentBinding(guest.cn)!
    const size0 = services.ledger.ledger.size
    const height0 = services.miner.miner.latestHead()!.height
    const time = nowSeconds()
    const certified = (i: number): EncodedEvent =>
      signEvent(nodeCrypto, certifiedEvent(binding, nodeCrypto.randomBytes(32), time + (i % 60)), guest.ledgerSeed)
    // 40 single-event submissions alternating certified and self-policy, then five of 256 certified events.
    const singles: Uint8Array[] = []
    for (let i = 0; i < 40; i++) {
      singles.push(
        submission([
          i % 2 === 0
            ? certified(i)
            : signEvent(nodeCrypto, policyEvent(binding, binding, policyBody(1 + i), time), guest.ledgerSeed),
        ]),
      )
    }
    const bulk: Uint8Array[] = []
    for (let s = 0; s < 5; s++) bulk.push(submission(Array.from({ length: 256 }, (_, i) => certified(s * 256 + i))))
    t.equal(bulk.reduce((n, b) => n + b.length, 0) > 200_000, true, 'over 200 KB of spam in the bulk submissions')

    const client = await connectDevice(services, guest)
    t.teardown(() => end(client))
    const started = Date.now()
    const [device] = await Promise.all([
      enrollThroughL0(fleet, 'device', 'honest lock'),
      publishAll(client, services.topics.submit(guest.cn), [...singles, ...bulk]),
    ])
    t.ok(
      await until(() => refusalsFrom(logs, guest.cn).length === singles.length + bulk.length, WAIT_MS),
      'one refusal line per spam submission',
    )
    const codes = countBy(refusalsFrom(logs, guest.cn))
    const burst = DEFAULT_QUOTAS.guest.events
    t.same(
      codes,
      {
        CERTIFIED_NOT_ISSUED: burst / 2,
        POLICY_NOT_DELEGATOR: burst / 2,
        QUOTA_RATE: singles.length + bulk.length - burst,
      },
      "the first guest burst reaches the miner's rules, everything after it is refused whole",
    )
    t.equal(
      services.ledger.ledger.state.log.slice(size0).filter(e => state.cnOfLabel(e.event.issuer) === guest.cn).length,
      0,
      'no event of the guest entered the ledger',
    )
    t.equal(
      services.ledger.ledger.size,
      size0 + 2,
      "the ledger grew by the honest device's authorize and certified events only",
    )
    t.equal(state.currentBinding(device.cn)?.certHashes.length, 1, "the honest device's certified event went through")
    t.equal(services.miner.miner.latestHead()!.height, height0, 'no head was sealed for any of it')
    t.comment(
      `spam of ${singles.length + bulk.length} submissions and an enrollment handled in ${Date.now() - started} ms`,
    )
  },
)

t.test(
  "a member's valid policy spam: the ledger grows by at most its burst; an admin's event still goes through",
  async t => {
    const { services, logs, admin, member, guest } = await start(t)
    const state = services.ledger.ledger.state
    const binding = state.currentBinding(member.cn)!
    const size0 = services.ledger.ledger.size
    const bytes0 = services.ledger.ledger.state.log.reduce((n, e) => n + e.bytes.length, 0)
    const time = nowSeconds()
    const rounds = 10,
      per = 64
    const batches = Array.from({ length: rounds }, (_, r) =>
      Array.from({ length: per }, (_, i) =>
        signEvent(nodeCrypto, policyEvent(binding, binding, policyBody(r * per + i), time), member.ledgerSeed),
      ),
    )
    const payloads = batches.map(submission)
    const client = await connectDevice(services, member)
    t.teardown(() => end(client))
    await publishAll(client, services.topics.submit(member.cn), payloads)
    // What the member's buckets allow, submission by submission in the order sent (the clock stands still).
    const budget = DEFAULT_QUOTAS.member
    let events = budget.events,
      bytes = budget.bytes
    const expected: Record<string, number> = {}
    for (const batch of batches) {
      const n = batch.length,
        b = batch.reduce((x, e) => x + e.bytes.length, 0)
      const code = n > events ? 'QUOTA_RATE' : b > bytes ? 'QUOTA_BYTES' : undefined
      if (code === undefined) {
        events -= n
        bytes -= b
      } else expected[code] = (expected[code] ?? 0) + 1
    }
    const refusedCount = Object.values(expected).reduce((x, y) => x + y, 0)
    t.ok(refusedCount > 0, `${refusedCount} of ${rounds} submissions are over the member's budget`)
    t.ok(
      await until(() => refusalsFrom(logs, member.cn).length >= refusedCount, WAIT_MS),
      'the submissions past the budget were refused',
    )

    // The admin is honest: its policy on the guest goes through while the member is over its budget.
    const adminClient = await connectDevice(services, admin)
    t.teardown(() => end(adminClient))
    const honest = signEvent(
      nodeCrypto,
      policyEvent(state.currentBinding(admin.cn)!, state.currentBinding(guest.cn)!, policyBody(4), time),
      admin.ledgerSeed,
    )
    await adminClient.publishAsync(services.topics.submit(admin.cn), Buffer.from(submission([honest])), { qos: 1 })
    t.ok(await until(() => state.has(honest.idHex), WAIT_MS), "the admin's policy event is in L0's ledger")

    const fromMember = state.log.slice(size0).filter(e => state.cnOfLabel(e.event.issuer) === member.cn)
    const grownBytes = state.log.reduce((n, e) => n + e.bytes.length, 0) - bytes0
    t.equal(
      fromMember.length,
      (rounds - refusedCount) * per,
      "the member's events in the ledger: the submissions its budget allowed",
    )
    t.ok(
      fromMember.length <= budget.events,
      `${fromMember.length} events, at most the member's burst of ${budget.events}`,
    )
    t.ok(
      grownBytes - honest.bytes.length <= budget.bytes,
      `the ledger grew by ${grownBytes} B: the member's at most its byte budget, plus the admin's event`,
    )
    t.same(countBy(refusalsFrom(logs, member.cn)), expected, 'refused with the code of the bucket that was short')
  },
)

t.test(
  'bundle and sync requests never force a seal: bundles wait for the next scheduled head, sync is answered against the current one',
  async t => {
    const { services, admin, guest } = await start(t)
    const state = services.ledger.ledger.state
    const height0 = services.miner.miner.latestHead()!.height
    // An event in the guest's lineage that no head covers yet.
    const pending = signEvent(
      nodeCrypto,
      policyEvent(state.currentBinding(admin.cn)!, state.currentBinding(guest.cn)!, policyBody(3), nowSeconds()),
      admin.ledgerSeed,
    )
    const result = await services.miner.submit([pending.bytes], nowSeconds())
    t.equal(result.accepted.length, 1)
    t.equal(services.miner.miner.unsealed, true, 'durable, not sealed')

    const client = await connectDevice(services, guest)
    t.teardown(() => end(client))
    t.same(await subscribeGranted(client, [services.topics.syncResp(guest.cn)]), [1])
    const answers: LedgerResponse[] = []
    client.on('message', (_topic, payload) => answers.push(decodeLedgerResponse(new Uint8Array(payload))))
    const requests = 40
    await publishAll(
      client,
      services.topics.syncReq(guest.cn),
      Array.from({ length: requests }, () => encodeBundleRequest(guest.cn)),
    )
    // Requests on one topic from one session are handled in order: the sync answer comes after every bundle request began.
    await client.publishAsync(
      services.topics.syncReq(guest.cn),
      Buffer.from(encodeLedgerSyncRequest({ fromTreeSize: 0, fromHeadId: undefined })),
      { qos: 1 },
    )
    t.ok(await until(() => answers.some(a => a.kind === 'sync'), WAIT_MS), 'the sync request is answered')
    const sync = answers.find(a => a.kind === 'sync')!
    t.equal(sync.kind === 'sync' && sync.response.head.height, height0, 'against the current head')
    t.equal(answers.filter(a => a.kind === 'bundle').length, 0, 'no bundle yet: each waits for the next seal')
    t.equal(services.miner.miner.latestHead()!.height, height0, `${requests} bundle requests sealed nothing`)

    // The scheduled seal (the test's interval is long, so it is run here): one head, and every waiting request answered.
    await services.seal()
    t.ok(
      await until(() => answers.filter(a => a.kind !== 'sync').length === requests, WAIT_MS),
      'every bundle request answered',
    )
    const heights = new Set(
      answers
        .filter(a => a.kind === 'bundle')
        .map(a => (a.kind === 'bundle' ? decodeBundle(a.bundleBytes).head.height : -1)),
    )
    t.same([...heights], [height0 + 1], 'all against the one new head')
    t.equal(answers.filter(a => a.kind === 'error').length, 0, 'none refused')
    t.equal(services.miner.miner.latestHead()!.height, height0 + 1, 'exactly one head sealed')
  },
)
