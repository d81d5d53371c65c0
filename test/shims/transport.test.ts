// The Node MQTT transport against a broker that misbehaves on purpose: a plain TLS server written here that
// acknowledges the login (CONNACK) and then drops the connection when the first QoS 1 PUBLISH arrives, without
// a PUBACK. A session that does not reconnect must settle that publish with a coded error, not leave it pending.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, type TLSSocket } from 'node:tls'
import type { AddressInfo } from 'node:net'
import { nodeTransport, nodeTransportWith } from '../../runtime/node/transport.ts'
import { isKinError } from '../../agent/errors.ts'

function selfSigned(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'kin-transport-'))
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        join(dir, 'k.pem'),
        '-out',
        join(dir, 'c.pem'),
        '-days',
        '1',
        '-subj',
        '/CN=not-a-broker',
      ],
      { stdio: 'ignore' },
    )
    return { key: readFileSync(join(dir, 'k.pem'), 'utf8'), cert: readFileSync(join(dir, 'c.pem'), 'utf8') }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

t.test(
  'a QoS 1 publish the broker never acknowledges settles with BROKER_CLOSED when the connection drops',
  async t => {
    const sockets: TLSSocket[] = []
    let publishes = 0
    const server = createServer(selfSigned(), socket => {
      sockets.push(socket)
      socket.on('error', () => undefined)
      socket.on('data', (chunk: Buffer) => {
        // Packet types in the first byte's high nibble (MQTT 3.1.1 §2.2.1): 1 CONNECT, 3 PUBLISH.
        const type = chunk[0]! >> 4
        if (type === 1) socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00]))
        if (type === 3) {
          publishes++
          socket.destroy()
        }
      })
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    t.teardown(() => {
      for (const s of sockets) s.destroy()
      server.close()
    })
    const { port } = server.address() as AddressInfo
    const session = await nodeTransport.connect({
      url: `mqtts://127.0.0.1:${port}`,
      clientId: 'pair-transport-test',
      login: { kind: 'pairing', username: 'u', password: 'p' },
      server: { kind: 'deferred' },
      connectTimeoutMs: 5000,
    })
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
  const sockets: TLSSocket[] = []
  const server = createServer(selfSigned(), socket => {
    sockets.push(socket)
    socket.on('error', () => undefined)
    socket.on('data', (chunk: Buffer) => {
      // 1 CONNECT → CONNACK; 8 SUBSCRIBE → SUBACK granting QoS 1 to the first filter, 0x80 to the second
      // (MQTT 3.1.1 §3.9: packet id echoed, one return code per filter); 12 PINGREQ ignored.
      const type = chunk[0]! >> 4
      if (type === 1) socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00]))
      if (type === 8) socket.write(Buffer.from([0x90, 0x04, chunk[2]!, chunk[3]!, 0x01, 0x80]))
      if (type === 3) socket.write(Buffer.from([0x40, 0x02, ...publishId(chunk)]))
    })
  })
  /** The packet id of a QoS 1 PUBLISH: after the remaining length (one byte here) and the topic. */
  const publishId = (chunk: Buffer): number[] => {
    const topicLength = chunk.readUInt16BE(2)
    return [chunk[4 + topicLength]!, chunk[5 + topicLength]!]
  }
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    server.close()
  })
  const { port } = server.address() as AddressInfo
  const session = await nodeTransport.connect({
    url: `mqtts://127.0.0.1:${port}`,
    clientId: 'pair-transport-suback',
    login: { kind: 'pairing', username: 'u', password: 'p' },
    server: { kind: 'deferred' },
    connectTimeoutMs: 5000,
  })
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
    const sockets: TLSSocket[] = []
    let closedByClient = 0
    const server = createServer(selfSigned(), socket => {
      sockets.push(socket)
      socket.on('error', () => undefined)
      socket.on('close', () => closedByClient++)
      socket.on('data', (chunk: Buffer) => {
        // 1 CONNECT → CONNACK; 8 SUBSCRIBE and everything else unanswered.
        if (chunk[0]! >> 4 === 1) socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00]))
      })
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    t.teardown(() => {
      for (const s of sockets) s.destroy()
      server.close()
    })
    const { port } = server.address() as AddressInfo
    const code = (p: Promise<unknown>): Promise<string> =>
      p.then(
        () => 'answered',
        (e: unknown) => (isKinError(e) ? (e as { code: string }).code : `other: ${String(e)}`),
      )
    const session = await nodeTransportWith({ subackTimeoutMs: 500 }).connect({
      url: `mqtts://127.0.0.1:${port}`,
      clientId: 'pair-transport-nosuback',
      login: { kind: 'pairing', username: 'u', password: 'p' },
      server: { kind: 'deferred' },
      connectTimeoutMs: 5000,
    })
    t.equal(await code(session.subscribe(['kin/test/a'])), 'BROKER_TIMEOUT', 'no SUBACK within 500 ms: BROKER_TIMEOUT')

    // The default deadline is long; ending the session must not wait for it, nor for ever (mqtt.js alone would).
    const slow = await nodeTransport.connect({
      url: `mqtts://127.0.0.1:${port}`,
      clientId: 'pair-transport-nosuback-2',
      login: { kind: 'pairing', username: 'u', password: 'p' },
      server: { kind: 'deferred' },
      connectTimeoutMs: 5000,
    })
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
