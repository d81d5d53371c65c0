import t from 'tap'
import type { MqttClient } from 'mqtt'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import { encodeCbor } from '../../agent/codec/cbor.ts'
import { createEnrollRequest } from '../../agent/enroll/request.ts'
import {
  checkHeadSuccession,
  decodeHead,
  headId,
  verifyHeadSignature,
  type BlockHead,
} from '../../agent/ledger/head.ts'
import { merkleRootOfIds, verifyConsistency } from '../../agent/ledger/merkle.ts'
import { encodeSyncRequest } from '../../agent/ledger/sync.ts'
import { verifyBundle } from '../../agent/ledger/bundle.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import {
  decodeEventsAnnouncement,
  decodeLedgerResponse,
  encodeBundleRequest,
  type LedgerResponse,
} from '../../agent/gossip/ledger-wire.ts'
import { SEAL_INTERVAL_MS } from '../../broker/miner-service.ts'
import {
  authorizeOnL0,
  connectDevice,
  end,
  enrollDirect,
  logRecord,
  makeL0Home,
  nextMessage,
  nowSeconds,
  startTestL0,
  subscribeGranted,
  submission,
  withHomeLedger,
} from './_fleet.ts'

const l0 = await makeL0Home()
const { phone, tablet } = await withHomeLedger(l0, async ledger => ({
  phone: await enrollDirect(l0, ledger, l0.self, { role: 'member' }),
  tablet: await enrollDirect(l0, ledger, l0.self, { role: 'member' }),
}))
let running = await startTestL0(l0)
t.teardown(() => running.services.close())
const svc = () => running.services
const topics = svc().topics
const minerKey = svc().ledger.ledger.state.genesis!.body.minerKey

// One pair of device keys for every authorize event made here: the CN commits to a fresh nonce each time.
const keys = await createEnrollRequest(nodeCrypto, nodePki, { kind: 'camera', name: 'camera' })

/** `n` authorize events signed by the phone, valid for L0's ledger (none in it yet). */
function authorizations(n: number): EncodedEvent[] {
  const now = nowSeconds()
  return Array.from({ length: n }, () => authorizeOnL0(svc(), phone, keys.request, 'device', now))
}

/** Sends one request on the device's sync topic and decodes the reply on its response topic. */
async function ask(client: MqttClient, cn: string, request: Uint8Array): Promise<LedgerResponse> {
  const reply = nextMessage(client, topics.syncResp(cn))
  await client.publishAsync(topics.syncReq(cn), Buffer.from(request), { qos: 1 })
  return decodeLedgerResponse(new Uint8Array(await reply))
}

/** Polls until `done` holds (the test's timeout bounds the wait). */
async function until(done: () => boolean): Promise<void> {
  while (!done()) await new Promise(r => setTimeout(r, 10))
}

function idOf(bytes: Uint8Array): Uint8Array {
  return nodeCrypto.sha256(bytes)
}

const phoneClient = await connectDevice(svc(), phone)
t.same(await subscribeGranted(phoneClient, [topics.syncResp(phone.cn)]), [1])
t.teardown(() => end(phoneClient))

t.test(
  'a fresh L0 has sealed its genesis events: the retained head is signed by the miner key and covers the ledger',
  async t => {
    const head = svc().miner.miner.latestHead()
    t.ok(head !== undefined, 'a head at startup')
    t.equal(head!.treeSize, svc().ledger.ledger.size)
    t.ok(verifyHeadSignature(nodeCrypto, head!, minerKey))
    t.same(
      head!.root,
      merkleRootOfIds(
        nodeCrypto,
        svc().ledger.ledger.state.log.map(e => e.id),
      ),
      'the root is the RFC 9162 tree hash of the event ids in ledger order',
    )
  },
)

t.test(
  `a submission is covered by a head sealed on the miner's own clock (at most ${SEAL_INTERVAL_MS} ms), published retained for late subscribers`,
  async t => {
    const watcher = await connectDevice(svc(), tablet)
    const retained = nextMessage(watcher, topics.head)
    t.same(await subscribeGranted(watcher, [topics.head]), [1])
    const before = decodeHead(new Uint8Array(await retained))
    const [event] = authorizations(1)
    const nextHead = nextMessage(watcher, topics.head)
    const sent = performance.now()
    await phoneClient.publishAsync(topics.submit(phone.cn), Buffer.from(submission([event!])), { qos: 1 })
    const head = decodeHead(new Uint8Array(await nextHead))
    t.comment(`submission acknowledged → new head received: ${(performance.now() - sent).toFixed(1)} ms`)
    t.equal(head.height, before.height + 1)
    t.equal(head.treeSize, before.treeSize + 1, 'it covers the one new event')
    t.equal(svc().miner.miner.indexOf(event!.idHex), before.treeSize, 'the event is the next leaf')
    t.ok(verifyHeadSignature(nodeCrypto, head, minerKey))
    const sealed = await logRecord(running.logs, r => r.event === 'ledger.sealed' && r.height === head.height)
    t.equal(sealed.added, 1)
    await end(watcher)

    // A subscriber that comes later gets the same head from the retained message.
    const late = await connectDevice(svc(), tablet)
    const lateHead = nextMessage(late, topics.head)
    t.same(await subscribeGranted(late, [topics.head]), [1])
    t.same(
      new Uint8Array(await lateHead),
      svc().miner.miner.latestHeadBytes(),
      'the late subscriber receives the latest head',
    )
    await end(late)
  },
)

t.test(
  "ledger/events carries the events the new head adds, from the previous head's tree size, with a consistency proof",
  async t => {
    const watcher = await connectDevice(svc(), tablet)
    t.same(await subscribeGranted(watcher, [topics.events]), [1])
    const previous = svc().miner.miner.latestHead()!
    const heldIds = svc()
      .ledger.ledger.state.log.slice(0, previous.treeSize)
      .map(e => e.id)
    const events = authorizations(3)
    const announced = nextMessage(watcher, topics.events)
    await phoneClient.publishAsync(topics.submit(phone.cn), Buffer.from(submission(events)), { qos: 1 })
    const a = decodeEventsAnnouncement(new Uint8Array(await announced))
    t.equal(a.from, previous.treeSize, 'the events start where the previous head ends')
    t.equal(a.head.treeSize, previous.treeSize + 3)
    t.equal(a.more, false)
    t.same(a.events.map(idOf).map(toHex).sort(), events.map(e => e.idHex).sort(), 'exactly the submitted events')
    // A follower holding the previous head checks the new root over what it holds plus what came, and the proof.
    t.same(
      merkleRootOfIds(nodeCrypto, [...heldIds, ...a.events.map(idOf)]),
      a.head.root,
      'root over held + announced ids',
    )
    t.equal(a.proofFrom, previous.treeSize)
    t.ok(
      verifyConsistency(nodeCrypto, previous.treeSize, a.head.treeSize, previous.root, a.head.root, a.consistencyProof),
      'RFC 9162 §2.1.4.2 consistency proof',
    )
    t.same(checkHeadSuccession(nodeCrypto, previous, a.head, a.consistencyProof, minerKey), { ok: true })
    await end(watcher)
  },
)

t.test(
  "a sync request is answered with the events after the device's head and a proof that verifies; bounded rounds with `more`",
  async t => {
    const old = svc().miner.miner.latestHead()!
    // 300 events: more than one response carries (256 by default), so the catch-up takes rounds.
    const burst = authorizations(300)
    await phoneClient.publishAsync(topics.submit(phone.cn), Buffer.from(submission(burst.slice(0, 150))), { qos: 1 })
    await phoneClient.publishAsync(topics.submit(phone.cn), Buffer.from(submission(burst.slice(150))), { qos: 1 })
    await logRecord(running.logs, r => r.event === 'ledger.accepted' && r.id === burst[299]!.idHex)
    await svc().seal()
    const head = svc().miner.miner.latestHead()!
    t.ok(head.treeSize >= old.treeSize + 300)

    const r = await ask(
      phoneClient,
      phone.cn,
      encodeSyncRequest({ fromTreeSize: old.treeSize, fromHeadId: headId(nodeCrypto, old) }),
    )
    if (r.kind !== 'sync') throw new Error(`expected a sync response, got ${r.kind}`)
    const s = r.response
    t.same(s.headBytes, svc().miner.miner.latestHeadBytes(), 'the latest head')
    t.equal(s.proofFrom, old.treeSize, 'proven from the head the device named')
    t.ok(verifyConsistency(nodeCrypto, old.treeSize, s.head.treeSize, old.root, s.head.root, s.consistencyProof))
    t.equal(s.from, old.treeSize)
    t.equal(s.events.length, 256, 'one bounded slice')
    t.equal(s.more, true)

    // A device with nothing catches up from 0 in rounds; what it gathers hashes to the head's root.
    const ids: Uint8Array[] = []
    let request = { fromTreeSize: 0, fromHeadId: undefined as Uint8Array | undefined }
    let rounds = 0
    for (;;) {
      const reply = await ask(phoneClient, phone.cn, encodeSyncRequest(request))
      if (reply.kind !== 'sync') throw new Error(`expected a sync response, got ${reply.kind}`)
      t.equal(reply.response.from, ids.length, `round ${rounds} starts where the last stopped`)
      ids.push(...reply.response.events.map(idOf))
      rounds++
      if (!reply.response.more) break
      request = { fromTreeSize: ids.length, fromHeadId: undefined }
    }
    t.ok(rounds >= 2, `${rounds} rounds`)
    t.same(merkleRootOfIds(nodeCrypto, ids, head.treeSize), head.root, "the gathered log hashes to the head's root")
  },
)

t.test('a bundle request is answered with a proof bundle verifyBundle accepts; refusals are coded', async t => {
  const head = svc().miner.miner.latestHead()!
  const r = await ask(phoneClient, phone.cn, encodeBundleRequest(tablet.cn))
  if (r.kind !== 'bundle') throw new Error(`expected a bundle, got ${JSON.stringify(r)}`)
  t.equal(r.cn, tablet.cn)
  const verified = verifyBundle(nodeCrypto, r.bundleBytes, { minerKey, knownHead: head }, nowSeconds())
  t.equal(verified.anchoring, 'same')
  t.ok(verified.state.currentBinding(tablet.cn) !== undefined, "the bundle proves the tablet's binding")
  t.equal(verified.state.currentBinding(tablet.cn)!.certHashes.length, 1, 'and its certified event')

  // Built for an older head: it carries the consistency proof, so a device holding that head anchors it.
  const older = svc().miner.miner.headAt(0)!
  const r2 = await ask(phoneClient, phone.cn, encodeBundleRequest(phone.cn, older.treeSize))
  if (r2.kind !== 'bundle') throw new Error(`expected a bundle, got ${JSON.stringify(r2)}`)
  t.equal(
    verifyBundle(nodeCrypto, r2.bundleBytes, { minerKey, knownHead: older }, nowSeconds()).anchoring,
    'consistent',
  )

  const unknown = await ask(phoneClient, phone.cn, encodeBundleRequest(`aaaaaaaaaaaaaaaa.${l0.domain}`))
  t.match(unknown, { kind: 'error', request: 'bundle', code: 'BUNDLE_INCOMPLETE' }, 'a CN the ledger does not know')
  const foreign = await ask(phoneClient, phone.cn, encodeBundleRequest('lock.other.example'))
  t.match(foreign, { kind: 'error', request: 'bundle', code: 'BAD_ARGUMENT' }, 'not a name of this fleet')
  const garbage = await ask(phoneClient, phone.cn, encodeCbor(['sync', 1]))
  t.match(garbage, { kind: 'error', request: 'sync' }, 'a request that does not decode')
  t.match((garbage as { code: string }).code, /^DECODE_/)
  await logRecord(running.logs, r => r.event === 'payload.dropped' && r.topic === topics.syncReq(phone.cn))
})

t.test(
  'a bundle whose event is durable but not yet under a head is answered after the next scheduled seal, which the request does not force',
  async t => {
    const [event] = authorizations(1)
    const before = svc().miner.miner.latestHead()!.height
    // Straight into the miner, as a submission would, with no time for the clock's seal.
    await svc().miner.submit([event!.bytes], nowSeconds())
    const cn = svc().ledger.ledger.state.cnOfLabel(event!.event.subject)
    const r = await ask(phoneClient, phone.cn, encodeBundleRequest(cn))
    if (r.kind !== 'bundle') throw new Error(`expected a bundle, got ${JSON.stringify(r)}`)
    const verified = verifyBundle(nodeCrypto, r.bundleBytes, { minerKey }, nowSeconds())
    t.equal(verified.head.height, before + 1, 'the one head the schedule sealed')
    t.ok(verified.state.has(event!.idHex))
  },
)

t.test(
  'L0 restarted in the middle of a burst loses no accepted event, and its next head is consistent with the last one before',
  async t => {
    const watcher = await connectDevice(svc(), tablet)
    t.same(await subscribeGranted(watcher, [topics.head]), [1])
    let lastSeen: BlockHead | undefined
    watcher.on('message', (topic, payload) => {
      if (topic === topics.head) lastSeen = decodeHead(new Uint8Array(payload))
    })
    const burst = authorizations(120)
    for (let i = 0; i < burst.length; i += 4) {
      // Publishes still in flight when L0 goes away never settle (no reconnect): not awaited.
      phoneClient
        .publishAsync(topics.submit(phone.cn), Buffer.from(submission(burst.slice(i, i + 4))), { qos: 1 })
        .catch(() => undefined)
      if (i === 40) await logRecord(running.logs, r => r.event === 'ledger.accepted' && r.id === burst[0]!.idHex)
    }
    // Stop while submissions are still arriving and being written.
    const logs = running.logs
    await running.services.close()
    await end(watcher)
    const accepted = logs
      .filter(r => r.event === 'ledger.accepted' && burst.some(e => e.idHex === r.id))
      .map(r => String(r.id))
    t.ok(accepted.length > 0, `${accepted.length} of the burst accepted before the stop`)
    const beforeStop = lastSeen
    t.ok(beforeStop !== undefined, 'a head was seen during the burst')

    running = await startTestL0(l0)
    const state = svc().ledger.ledger.state
    for (const id of accepted) if (!state.has(id)) t.fail(`accepted event ${id.slice(0, 12)}… lost`)
    t.pass(`all ${accepted.length} accepted events are in the ledger after the restart`)
    const after = svc().miner.miner.latestHead()!
    t.equal(after.treeSize, state.log.length, 'the restarted miner covers its whole ledger')
    const proof = svc().miner.miner.consistencyProof(beforeStop!.treeSize, after.treeSize)
    t.same(
      checkHeadSuccession(nodeCrypto, beforeStop!, after, proof, minerKey),
      { ok: true },
      'consistent with the last head seen before the restart',
    )

    // The device resends the whole burst: what was lost in flight is accepted now, the rest is known.
    const again = await connectDevice(svc(), phone)
    t.same(await subscribeGranted(again, [topics.syncResp(phone.cn)]), [1])
    await again.publishAsync(topics.submit(phone.cn), Buffer.from(submission(burst.slice(0, 60))), { qos: 1 })
    await again.publishAsync(topics.submit(phone.cn), Buffer.from(submission(burst.slice(60))), { qos: 1 })
    await until(() => burst.every(e => svc().ledger.ledger.state.has(e.idHex)))
    const reply = await ask(
      again,
      phone.cn,
      encodeSyncRequest({ fromTreeSize: after.treeSize, fromHeadId: headId(nodeCrypto, after) }),
    )
    if (reply.kind !== 'sync') throw new Error('expected a sync response')
    t.ok(
      verifyConsistency(
        nodeCrypto,
        after.treeSize,
        reply.response.head.treeSize,
        after.root,
        reply.response.head.root,
        reply.response.consistencyProof,
      ),
      'and the heads go on consistently',
    )
    await end(again)
  },
)
