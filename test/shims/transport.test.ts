// The Node MQTT transport against brokers that misbehave on purpose: plain TLS servers written here that acknowledge
// the login (CONNACK) and then drop the connection at the first QoS 1 PUBLISH without a PUBACK, refuse a filter with
// SUBACK 0x80, or never answer a SUBSCRIBE. Whatever the broker leaves unanswered, a caller gets a coded error, never
// a promise left pending.
import t, { type Test } from 'tap'
import { createServer, type TLSSocket } from 'node:tls'
import type { AddressInfo } from 'node:net'
import { nodeTransport, nodeTransportWith } from '../../runtime/node/transport.ts'
import { isKinError } from '../../agent/errors.ts'
import type { Transport, TransportSession } from '../../agent/ports/transport.ts'
import { selfSigned } from '../helpers/self-signed.ts'

/**
 * A broker written here: a TLS server on 127.0.0.1 that hands every chunk a client sends to `onData` (with the
 * socket, to answer on) and `onClose`; closed after the test. Resolves with its port.
 */
async function fakeBroker(
  t: Test,
  onData: (socket: TLSSocket, chunk: Buffer) => void,
  onClose: () => void = () => undefined,
): Promise<number> {
  const sockets: TLSSocket[] = []
  const { key, cert } = selfSigned('not-a-broker')
  const server = createServer({ key, cert }, socket => {
    sockets.push(socket)
    socket.on('error', () => undefined)
    socket.on('close', onClose)
    socket.on('data', (chunk: Buffer) => onData(socket, chunk))
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    server.close()
  })
  return (server.address() as AddressInfo).port
}

/** A pairing login (no certificates on either side) to the broker on `port`. */
function pairingSession(
  port: number,
  clientId: string,
  transport: Transport = nodeTransport,
): Promise<TransportSession> {
  return transport.connect({
    url: `mqtts://127.0.0.1:${port}`,
    clientId,
    login: { kind: 'pairing', username: 'u', password: 'p' },
    server: { kind: 'deferred' },
    connectTimeoutMs: 5000,
  })
}

/** 1 CONNECT in a chunk's first byte (MQTT 3.1.1 §2.2.1: the packet type in its high nibble) gets CONNACK 0. */
function connack(socket: TLSSocket, chunk: Buffer): boolean {
  if (chunk[0]! >> 4 !== 1) return false
  socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00]))
  return true
}

t.test(
  'a QoS 1 publish the broker never acknowledges settles with BROKER_CLOSED when the connection drops',
  async t => {
    let publishes = 0
    const port = await fakeBroker(t, (socket, chunk) => {
      // 3 PUBLISH: the connection is dropped without a PUBACK.
      if (!connack(socket, chunk) && chunk[0]! >> 4 === 3) {
        publishes++
        socket.destroy()
      }
    })
    const session = await pairingSession(port, 'pair-transport-test')
    const statuses: string[] = []
    session.onStatus(s => statuses.push(s))
    const outcome = await Promise.race([
      session.publish('kin/test/topic', new Uint8Array([1, 2, 3])).then(
        () => 'acknowledged',
        (e: unknown) => (isKinError(e) ? (e as { code: string }).code : `other: ${String(e)}`),
      ),
      new Promise<string>(resolve => setTimeout(() => resolve('still pending after 5 s'), 5000)),
    ])
    t.equal(publishes, 1, 'the broker saw the publish')
    t.equal(outcome, 'BROKER_CLOSED', 'the publish is settled with a coded error')
    t.same(statuses, ['closed'], 'the session reports itself closed')
    t.equal(
      await session.publish('kin/test/topic', new Uint8Array([4])).then(
        () => 'sent',
        (e: unknown) => (e as { code?: string }).code,
      ),
      'BROKER_CLOSED',
      'a later publish is refused at once',
    )
    await session.end()
  },
)

t.test('a SUBACK with 0x80 is ACL_DENIED naming the refused filter, and the session goes on', async t => {
  const port = await fakeBroker(t, (socket, chunk) => {
    // 8 SUBSCRIBE → SUBACK granting QoS 1 to the first filter, 0x80 to the second (MQTT 3.1.1 §3.9: packet id
    // echoed, one return code per filter); 3 PUBLISH → PUBACK; 12 PINGREQ ignored.
    if (connack(socket, chunk)) return
    const type = chunk[0]! >> 4
    if (type === 8) socket.write(Buffer.from([0x90, 0x04, chunk[2]!, chunk[3]!, 0x01, 0x80]))
    if (type === 3) socket.write(Buffer.from([0x40, 0x02, ...publishId(chunk)]))
  })
  /** The packet id of a QoS 1 PUBLISH: after the remaining length (one byte here) and the topic. */
  const publishId = (chunk: Buffer): number[] => {
    const topicLength = chunk.readUInt16BE(2)
    return [chunk[4 + topicLength]!, chunk[5 + topicLength]!]
  }
  const session = await pairingSession(port, 'pair-transport-suback')
  const refusal = await session.subscribe(['kin/test/granted', 'kin/test/refused']).then(
    () => undefined,
    (e: unknown) => e,
  )
  t.ok(isKinError(refusal), 'the refusal is a coded error')
  t.equal((refusal as { code?: string }).code, 'ACL_DENIED', 'a SUBACK refusal is ACL_DENIED, not a closed session')
  t.same(
    (refusal as { detail?: unknown }).detail,
    { filters: ['kin/test/refused'], attempts: 1 },
    'it names the refused filter only (one broker: the first refusal is final)',
  )
  t.equal(
    await session.publish('kin/test/after', new Uint8Array([1])).then(
      () => 'acknowledged',
      (e: unknown) => (e as { code?: string }).code,
    ),
    'acknowledged',
    'the session is still usable after the refusal',
  )
  await session.end()
})

t.test(
  'a SUBSCRIBE the broker never answers: BROKER_TIMEOUT at the deadline, and end() settles one in flight',
  async t => {
    let closedByClient = 0
    // CONNECT gets its CONNACK; SUBSCRIBE and everything else go unanswered.
    const port = await fakeBroker(t, connack, () => closedByClient++)
    const code = (p: Promise<unknown>): Promise<string> =>
      p.then(
        () => 'answered',
        (e: unknown) => (isKinError(e) ? (e as { code: string }).code : `other: ${String(e)}`),
      )
    const session = await pairingSession(port, 'pair-transport-nosuback', nodeTransportWith({ subackTimeoutMs: 500 }))
    t.equal(await code(session.subscribe(['kin/test/a'])), 'BROKER_TIMEOUT', 'no SUBACK within 500 ms: BROKER_TIMEOUT')

    // The default deadline is long; ending the session must not wait for it, nor for ever (mqtt.js alone would).
    const slow = await pairingSession(port, 'pair-transport-nosuback-2')
    const statuses: string[] = []
    slow.onStatus(s => statuses.push(s))
    const pending = code(slow.subscribe(['kin/test/b']))
    await new Promise(r => setTimeout(r, 100))
    let timer: ReturnType<typeof setTimeout> | undefined
    const ended = await Promise.race([
      slow.end().then(() => 'ended'),
      new Promise<string>(r => (timer = setTimeout(() => r('end() still pending after 30 s'), 30_000))),
    ])
    clearTimeout(timer)
    t.equal(ended, 'ended', 'end() returns while a SUBSCRIBE is unanswered')
    t.equal(await pending, 'BROKER_CLOSED', 'the SUBSCRIBE in flight is settled with BROKER_CLOSED')
    t.same(statuses, ['closed'], 'the session reports itself closed')
    t.ok(await eventually(() => closedByClient >= 1, 10_000), 'the connection is cut (the broker sees it close)')
    await session.end()
  },
)

async function eventually(check: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  while (!check() && Date.now() < end) await new Promise(r => setTimeout(r, 20))
  return check()
}
