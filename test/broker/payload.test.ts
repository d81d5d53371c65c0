import t from 'tap'
import { connect as tlsConnect } from 'node:tls'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { encodeCbor } from '../../agent/codec/cbor.ts'
import { MAX_PAYLOAD_BYTES } from '../../agent/gossip/topics.ts'
import { createEnrollRequest } from '../../agent/enroll/request.ts'
import { FrameGuard } from '../../broker/frame-guard.ts'
import { MAX_FRAME_BYTES } from '../../broker/l0.ts'
import {
  authorizeOnL0,
  closed,
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

t.test('FrameGuard reads MQTT Remaining Length across chunk boundaries (MQTT 3.1.1 §2.2.3)', async t => {
  const g = new FrameGuard(1000)
  // PINGREQ (no body), then a PUBLISH of 321 bytes split awkwardly, then one announcing 1001.
  t.equal(g.feed(new Uint8Array([0xc0, 0x00, 0x30, 0xc1])), undefined)
  t.equal(g.feed(new Uint8Array([0x02])), undefined, '321 = 0xc1 0x02')
  t.equal(g.feed(new Uint8Array(300)), undefined)
  t.equal(g.feed(new Uint8Array(21)), undefined, 'body done')
  t.equal(g.feed(new Uint8Array([0x30, 0xe9])), undefined)
  t.equal(g.feed(new Uint8Array([0x07])), 1001, 'over the limit: 0xe9 0x07 = 1001')
  const h = new FrameGuard(Number.MAX_SAFE_INTEGER)
  t.equal(
    h.feed(new Uint8Array([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])) !== undefined,
    true,
    'a fifth length byte is malformed',
  )
})

const l0 = await makeL0Home()
const { phone, tablet } = await withHomeLedger(l0, async ledger => ({
  phone: await enrollDirect(l0, ledger, l0.self, { role: 'member' }),
  tablet: await enrollDirect(l0, ledger, l0.self, { role: 'member' }),
}))
let running = await startTestL0(l0)
t.teardown(() => running.services.close())
const topics = running.services.topics

/** A new authorize event by the phone, valid for L0's ledger (not yet in it). */
async function freshAuthorize() {
  const { request } = await createEnrollRequest(nodeCrypto, nodePki, { kind: 'camera', name: 'garage' })
  return authorizeOnL0(running.services, phone, request, 'device', nowSeconds())
}

t.test('a payload over 64 KiB is acknowledged, dropped, logged, and the session goes on', async t => {
  const c = await connectDevice(running.services, phone)
  const before = running.services.ledger.ledger.size
  const big = new Uint8Array(MAX_PAYLOAD_BYTES + 1).fill(0x41)
  await c.publishAsync(topics.submit(phone.cn), Buffer.from(big), { qos: 1 })
  const rec = await logRecord(
    running.logs,
    r => r.event === 'payload.dropped' && r.code === 'PAYLOAD_TOO_LARGE' && r.topic === topics.submit(phone.cn),
  )
  t.equal(rec.bytes, MAX_PAYLOAD_BYTES + 1)
  t.ok(c.connected, 'still connected')
  t.equal(running.services.ledger.ledger.size, before)

  // Not delivered to subscribers either: the tablet's first message is the marker sent after it.
  const watcher = await connectDevice(running.services, tablet)
  t.same(await subscribeGranted(watcher, [topics.inboxAll(tablet.cn)]), [1])
  const first = nextMessage(watcher, topics.inbox(tablet.cn, phone.cn))
  await c.publishAsync(topics.inbox(tablet.cn, phone.cn), Buffer.from(big), { qos: 1 })
  await c.publishAsync(topics.inbox(tablet.cn, phone.cn), Buffer.from('marker'), { qos: 1 })
  t.equal((await first).toString(), 'marker')
  const exact = nextMessage(watcher, topics.inbox(tablet.cn, phone.cn))
  await c.publishAsync(topics.inbox(tablet.cn, phone.cn), Buffer.from(new Uint8Array(MAX_PAYLOAD_BYTES).fill(0x42)), {
    qos: 1,
  })
  t.equal((await exact).length, MAX_PAYLOAD_BYTES, 'exactly 64 KiB still goes through')
  await end(watcher)
  await end(c)
})

t.test('undecodable payloads on service topics are dropped and logged; the broker stays up', async t => {
  const c = await connectDevice(running.services, phone)
  const before = running.services.ledger.ledger.size
  await c.publishAsync(topics.submit(phone.cn), Buffer.from([0xff, 0xfe, 0x00]), { qos: 1 })
  await c.publishAsync(topics.submit(phone.cn), Buffer.from(encodeCbor([1, 'two'])), { qos: 1 })
  await c.publishAsync(topics.inbox(l0.cn, phone.cn), Buffer.from([0x9f, 0x9f, 0x9f]), { qos: 1 })
  await c.publishAsync(topics.submit(phone.cn), Buffer.from(encodeCbor([new Uint8Array([1, 2, 3])])), { qos: 1 })
  const dropped = async (topic: string, code: RegExp) => {
    const r = await logRecord(
      running.logs,
      r => r.event === 'payload.dropped' && r.topic === topic && code.test(String(r.code)),
    )
    t.equal(r.level, 'warn', `${topic}: ${String(r.code)}`)
  }
  await dropped(topics.submit(phone.cn), /^DECODE_(CBOR|NONCANONICAL|TRAILING)$/)
  await dropped(topics.submit(phone.cn), /^DECODE_(SHAPE|FIELD)$/)
  await dropped(topics.inbox(l0.cn, phone.cn), /^DECODE_/)
  const refused = await logRecord(running.logs, r => r.event === 'ledger.refused' && r.from === phone.cn)
  t.match(String(refused.code), /^DECODE_/, 'a byte string that is no event is refused with its decode code')
  t.equal(running.services.ledger.ledger.size, before)
  t.ok(c.connected)

  const authorize = await freshAuthorize()
  await c.publishAsync(topics.submit(phone.cn), Buffer.from(submission([authorize])), { qos: 1 })
  await logRecord(running.logs, r => r.event === 'ledger.accepted' && r.id === authorize.idHex)
  t.equal(running.services.ledger.ledger.size, before + 1, 'a good submission after the garbage is accepted')
  await end(c)
})

t.test('submissions of 60 000 nested arrays are dropped DECODE_SHAPE from its heads; the broker stays up', async t => {
  const c = await connectDevice(running.services, phone)
  const before = running.services.ledger.ledger.size
  // Within the frame limit; the recursive decoder used to run out of stack on it (refused as DECODE_CBOR).
  const nested = new Uint8Array(60_001).fill(0x81)
  nested[60_000] = 0x00
  await c.publishAsync(topics.submit(phone.cn), Buffer.from(nested), { qos: 1 })
  await c.publishAsync(topics.submit(phone.cn), Buffer.from(new Uint8Array(5_000).fill(0x9f)), { qos: 1 })
  await c.publishAsync(topics.inbox(l0.cn, phone.cn), Buffer.from(nested), { qos: 1 })
  const shape = (topic: string, bytes: number) =>
    logRecord(
      running.logs,
      r =>
        r.event === 'payload.dropped' &&
        r.topic === topic &&
        r.code === 'DECODE_SHAPE' &&
        r.bytes === bytes &&
        /nesting deeper than 8/.test(String(r.message)),
    )
  t.ok(await shape(topics.submit(phone.cn), 60_001), '60 000 nested arrays')
  t.ok(await shape(topics.submit(phone.cn), 5_000), '5 000 nested indefinite-length arrays')
  t.ok(await shape(topics.inbox(l0.cn, phone.cn), 60_001), "the same on L0's inbox")
  t.equal(running.services.ledger.ledger.size, before)
  t.ok(c.connected, 'the session that sent it is still up')
  await end(c)
})

t.test('a packet announcing more than the frame limit closes that connection before it is buffered', async t => {
  const c = await connectDevice(running.services, phone)
  const gone = closed(c)
  c.publish(topics.submit(phone.cn), Buffer.alloc(MAX_FRAME_BYTES + 1), { qos: 1 })
  await gone
  await logRecord(
    running.logs,
    r => r.event === 'payload.dropped' && r.action === 'connection closed' && Number(r.bytes) > MAX_FRAME_BYTES,
  )

  // Even before CONNECT: a bare TLS client announcing a 256 MB packet.
  const socket = tlsConnect({
    host: running.services.host,
    port: running.services.port,
    ca: running.services.rootPem,
    servername: running.services.cn,
  })
  await new Promise<void>(resolve => socket.once('secureConnect', () => resolve()))
  const ended = new Promise<void>(resolve => socket.once('close', () => resolve()))
  socket.write(Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]))
  await ended
  t.ok(socket.destroyed, 'the broker hung up')
  const again = await connectDevice(running.services, phone)
  t.ok(again.connected, 'the broker is still up')
  await end(again)
})

t.test('nothing accepted is lost: a restart after all this reads every accepted event back', async t => {
  const ids = running.services.ledger.ledger.state.ids()
  const accepted = running.logs.filter(r => r.event === 'ledger.accepted').map(r => r.id)
  t.ok(accepted.length > 0)
  await running.services.close()
  running = await startTestL0(l0)
  t.same(running.services.ledger.ledger.state.ids(), ids)
  for (const id of accepted)
    t.ok(running.services.ledger.ledger.state.has(String(id)), `${String(id).slice(0, 12)}… survived`)
})
