// The fleet's TLS policy over the wire (RFC 9325 §4.2, RFC 5746): openssl s_client against L0's broker and a device's
// access endpoint (what `kin serve` runs), and kinship's clients against a server that offers only weak suites.
import t from 'tap'
import { createServer, type TLSSocket } from 'node:tls'
import { join } from 'node:path'
import type { AddressInfo, Socket } from 'node:net'
import { startAccessEndpoint } from '../../runtime/node/tls-endpoint.ts'
import { requestAccess } from '../../runtime/node/tls-endpoint.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { TLS12_SUITES, mosquittoTlsLines, tlsClientPolicy, tlsServerPolicy } from '../../runtime/node/tls-policy.ts'
import { makeServeHouse } from './_house.ts'
import { checkTlsPolicy, sClient } from '../helpers/tls-policy-check.ts'
import { tempDir } from '../helpers/home-fleet.ts'
import { makeL0Home, startTestL0 } from '../broker/_fleet.ts'

const house = await makeServeHouse()
const lock = house.cn['L3.3'],
  guest = house.cn['L3.4']
const tmp = tempDir('kin-tls-policy-')
t.teardown(tmp.remove)
const id = house.identity(guest)
const files = {
  cert: house.file(tmp.dir, 'cert.pem', id.certPem),
  key: house.file(tmp.dir, 'tls-key.pem', id.keyPem),
  root: house.file(tmp.dir, 'root.pem', id.rootPem),
}

t.test('the policy: TLS 1.2 suites are ECDHE or DHE with AEAD; the same options for servers and clients', async t => {
  for (const suite of TLS12_SUITES) {
    t.match(suite, /^(ECDHE|DHE)-/, `${suite}: forward secret`)
    t.match(suite, /-(GCM-SHA256|GCM-SHA384|CHACHA20-POLY1305)$/, `${suite}: AEAD`)
  }
  t.ok(
    TLS12_SUITES.includes('DHE-RSA-AES128-GCM-SHA256') && TLS12_SUITES.includes('DHE-RSA-AES256-GCM-SHA384'),
    "Espruino's suites are in",
  )
  const server = tlsServerPolicy(),
    client = tlsClientPolicy()
  t.equal(server.ciphers, client.ciphers, 'servers and clients share one list')
  t.equal(server.minVersion, 'TLSv1.2')
  t.equal(server.dhparam, 'auto', 'DH parameters, without which no DHE suite is chosen')
  const lines = mosquittoTlsLines('/x/dh.pem')
  t.ok(lines.includes('tls_version tlsv1.2'))
  t.ok(lines.includes(`ciphers ${TLS12_SUITES.join(':')}`), 'Mosquitto gets the same 1.2 suites')
  t.ok(lines.includes('dhparamfile /x/dh.pem'))
})

t.test(
  "a device's access endpoint (kin serve): weak suites and renegotiation refused, AEAD with ECDHE or DHE accepted",
  async t => {
    const endpoint = await startAccessEndpoint({
      ...house.identity(lock),
      session: house.session(lock),
      host: '127.0.0.1',
      port: 0,
    })
    t.teardown(() => endpoint.close())
    await checkTlsPolicy(t, endpoint.port, files)
  },
)

t.test("L0's broker: weak suites and renegotiation refused, AEAD with ECDHE or DHE accepted", async t => {
  // A P-256 fleet: L0 presents its RSA server certificate beside the ECDSA one, so the DHE-RSA and ECDHE-RSA suites
  // Espruino's mbedTLS needs are there too.
  const l0 = await makeL0Home()
  const { services } = await startTestL0(l0)
  t.teardown(() => services.close())
  await checkTlsPolicy(t, services.port, files)
})

t.test("L0's broker presents ECDSA to an ECDSA client and RSA to an RSA-only one, in one P-256 fleet", async t => {
  const l0 = await makeL0Home()
  const { services } = await startTestL0(l0)
  t.teardown(() => services.close())
  // L0's own device files: the root its server certificates are checked against.
  const own = {
    cert: join(l0.self.dir, 'cert.pem'),
    key: join(l0.self.dir, 'tls-key.pem'),
    root: join(l0.self.dir, 'root.pem'),
  }
  // What Espruino's mbedTLS offers: RSA signatures only, an ECDHE-RSA suite.
  const rsaOnly = await sClient(services.port, own, [
    '-tls1_2',
    '-sigalgs',
    'RSA-PSS+SHA256:RSA+SHA256',
    '-cipher',
    'ECDHE-RSA-AES128-GCM-SHA256',
    '-verify_return_error',
    '-verify_ip',
    '127.0.0.1',
  ])
  t.equal(rsaOnly.cipher, 'ECDHE-RSA-AES128-GCM-SHA256', 'the RSA-only client logs in')
  t.match(rsaOnly.out, /Server public key is 2048 bit/, 'with the RSA-2048 certificate')
  t.match(rsaOnly.out, /Verify return code: 0 \(ok\)/, 'which chains to the P-256 root and names 127.0.0.1')
  for (const version of ['-tls1_2', '-tls1_3']) {
    const ecdsa = await sClient(services.port, own, [version, '-verify_return_error', '-verify_ip', '127.0.0.1'])
    t.match(ecdsa.out, /Server public key is 256 bit/, `${version}: a client offering ECDSA gets the P-256 certificate`)
    t.match(ecdsa.out, /Verify return code: 0 \(ok\)/)
  }
})

t.test("kinship's clients refuse a server that offers only CBC or static-RSA suites", async t => {
  const lockId = house.identity(lock)
  const server = createServer({
    cert: lockId.certPem,
    key: lockId.keyPem,
    maxVersion: 'TLSv1.2',
    ciphers: 'AES128-SHA:ECDHE-RSA-AES128-SHA:AES128-GCM-SHA256',
  })
  const sockets = new Set<Socket>()
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  let established = 0
  server.on('secureConnection', (s: TLSSocket) => {
    established++
    s.destroy()
  })
  server.on('tlsClientError', () => undefined)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    server.close()
  })
  const { port } = server.address() as AddressInfo

  const access = await requestAccess({
    ...id,
    host: '127.0.0.1',
    port,
    action: 'unlock',
    checkServer: house.session(guest).checkServer.bind(house.session(guest)),
    timeoutMs: 10_000,
  }).then(
    () => 'answered',
    (e: { code?: string }) => e.code,
  )
  t.equal(access, 'ACCESS_TRANSPORT', 'the access client finds no suite in common')
  const mqtt = await nodeTransport
    .connect({
      url: `mqtts://127.0.0.1:${port}`,
      clientId: 'pair-tls-policy',
      login: { kind: 'pairing', username: 'u', password: 'p' },
      server: { kind: 'deferred' },
      connectTimeoutMs: 10_000,
    })
    .then(
      async s => {
        await s.end()
        return 'connected'
      },
      (e: { code?: string }) => e.code,
    )
  t.not(mqtt, 'connected', `the MQTT transport finds no suite in common (${String(mqtt)})`)
  t.equal(established, 0, 'no TLS session came about')
})

t.test("kinship's clients refuse a renegotiation the server asks for (HelloRequest, RFC 5246 §7.4.1.1)", async t => {
  const lockId = house.identity(lock)
  const outcomes: string[] = []
  let waiting: ((outcome: string) => void) | undefined
  // A TLS 1.2 server without kinship's policy: it renegotiates as soon as a client is connected.
  const server = createServer({ cert: lockId.certPem, key: lockId.keyPem, maxVersion: 'TLSv1.2' })
  const sockets = new Set<Socket>()
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  server.on('secureConnection', (s: TLSSocket) => {
    // One outcome per connection: the first of the socket's error and the renegotiation's callback.
    let settled = false
    const settle = (outcome: string): void => {
      if (settled) return
      settled = true
      outcomes.push(outcome)
      waiting?.(outcome)
      s.destroy()
    }
    s.on('error', e => settle(e.message))
    if (!s.renegotiate({ rejectUnauthorized: false }, err => settle(err ? err.message : 'renegotiated')))
      settle('renegotiate not started')
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    server.close()
  })
  const { port } = server.address() as AddressInfo
  const next = (): Promise<string> =>
    new Promise(resolve => {
      waiting = resolve
    })

  const fromAccess = next()
  await requestAccess({
    ...id,
    host: '127.0.0.1',
    port,
    action: 'unlock',
    checkServer: house.session(guest).checkServer.bind(house.session(guest)),
    timeoutMs: 10_000,
  }).catch(() => undefined)
  t.match(await fromAccess, /no renegotiation/, 'the access client answers no_renegotiation')
  const fromMqtt = next()
  await nodeTransport
    .connect({
      url: `mqtts://127.0.0.1:${port}`,
      clientId: 'pair-tls-policy',
      login: { kind: 'pairing', username: 'u', password: 'p' },
      server: { kind: 'deferred' },
      connectTimeoutMs: 10_000,
    })
    .then(
      s => s.end(),
      () => undefined,
    )
  t.match(await fromMqtt, /no renegotiation/, 'the MQTT transport answers no_renegotiation')
  t.notOk(outcomes.includes('renegotiated'), 'no connection was renegotiated')
})
