/**
 * @module The simulator's enroller logs in again when the broker closes a login before CONNACK (as L0 does shedding
 * load), through a stand-in on 127.0.0.1 in front of the real L0 that ends chosen connections after the TLS
 * handshake; a CONNACK refusal is never tried again.
 */
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { KinError } from '../../agent/errors.ts'
import type { ConnectOptions, Transport } from '../../agent/ports/transport.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { isClosedBeforeConnack, nodeTransport } from '../../runtime/node/transport.ts'
import { Enroller } from '../../sim/fleet/enroller.ts'
import { LOGIN_ATTEMPTS, retryingLogins } from '../../sim/fleet/login-retry.ts'
import { planFleet } from '../../sim/fleet/plan.ts'
import { LiveFleet } from '../../sim/live/fleet.ts'

/**
 * A TCP stand-in for the broker: pipes every connection to L0's port, except that the next `drop` connections are
 * ended by it once the client's second flight arrives (its TLS Finished, then CONNECT): the client's handshake is
 * done, and the connection closes with no CONNACK and no error.
 */
interface StandIn {
  url: string
  drop: number
  dropped: number
  server: Server
}

async function standIn(target: number): Promise<StandIn> {
  const s: StandIn = { url: '', drop: 0, dropped: 0, server: undefined as unknown as Server }
  const sockets = new Set<Socket>()
  s.server = createServer(client => {
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    const upstream = tcpConnect(target, '127.0.0.1')
    sockets.add(upstream)
    upstream.on('close', () => sockets.delete(upstream))
    const dropping = s.drop > 0
    if (dropping) s.drop--
    let chunks = 0
    client.on('data', chunk => {
      if (dropping && chunks >= 2) return
      if (dropping && ++chunks >= 2) {
        s.dropped++
        upstream.destroy()
        client.end()
        return
      }
      upstream.write(chunk)
    })
    upstream.on('data', chunk => client.write(chunk))
    upstream.on('end', () => client.end())
    client.on('end', () => upstream.end())
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
  })
  await new Promise<void>(resolve => s.server.listen(0, '127.0.0.1', resolve))
  s.url = `mqtts://127.0.0.1:${(s.server.address() as { port: number }).port}`
  const close = s.server.close.bind(s.server)
  s.server.close = (cb?: (err?: Error) => void) => {
    for (const so of sockets) so.destroy()
    return close(cb)
  }
  return s
}

/** `inner` with every login sent to the stand-in instead of the fleet's URL. */
function through(s: StandIn, inner: Transport = nodeTransport): Transport {
  return { connect: (options: ConnectOptions) => inner.connect({ ...options, url: s.url }) }
}

const dir = mkdtempSync(join(tmpdir(), 'kin-login-retry-'))
const fleet = await LiveFleet.start({ dir, domain: 'retry.home.arpa' })
const port = Number(new URL(fleet.url).port)
const stand = await standIn(port)
t.teardown(async () => {
  await fleet.close()
  await new Promise(r => stand.server.close(() => r(undefined)))
  rmSync(dir, { recursive: true, force: true })
})
const l0 = fleet.device('L0')
const l0Login: ConnectOptions = {
  url: fleet.url,
  clientId: fleet.l0.cn,
  login: { kind: 'certificate', certPem: l0.identity.certPem, keyPem: l0.identity.keyPem },
  server: { kind: 'fleet', rootPem: l0.identity.rootPem, serverCn: fleet.l0.cn },
  connectTimeoutMs: 30_000,
}

t.test('the stand-in closes a login after the handshake: BROKER_REFUSED, closed before CONNACK', async t => {
  stand.drop = 1
  const err = await nodeTransport.connect({ ...l0Login, url: stand.url }).then(
    () => undefined,
    (e: unknown) => e,
  )
  t.equal(stand.dropped, 1, 'the stand-in dropped one login')
  t.match(err, { code: 'BROKER_REFUSED' }, 'the plain transport fails the login')
  t.ok(isClosedBeforeConnack(err), 'marked as closed before CONNACK')
  const session = await nodeTransport.connect({ ...l0Login, url: stand.url })
  t.pass('the next login through the stand-in succeeds')
  await session.end()
})

t.test("the enroller's first login is closed before CONNACK: tried again, and both devices enroll", async t => {
  const plan = planFleet({ devices: 2, depth: 1 })
  const keys = await Promise.all(plan.devices.map(() => nodePki.generateTlsKeyPair('p256')))
  const enroller = new Enroller(fleet, { concurrency: 2, transport: through(stand) })
  const dropped = stand.dropped
  stand.drop = 1
  const timings = await enroller.enroll(plan.devices, keys)
  t.equal(stand.dropped, dropped + 1, 'the stand-in dropped the first login')
  t.equal(timings.length, 2, 'both devices enrolled')
  t.same(Object.fromEntries(enroller.counters.retries), { LOGIN_CLOSED_BEFORE_CONNACK: 1 }, 'one login tried again')
  for (const p of plan.devices)
    t.ok(fleet.l0.ledger.ledger.state.currentBinding(fleet.cnOf(p.label)), `L0 holds ${p.label}'s binding`)
  await enroller.closeL0Session()
  for (const p of plan.devices) await enroller.pause(fleet.device(p.label))
})

t.test('bounded: a broker that closes every login fails after LOGIN_ATTEMPTS, with the same code', async t => {
  const retried: number[] = []
  const transport = retryingLogins(through(stand), { backoffMs: 10, onRetry: a => retried.push(a) })
  const dropped = stand.dropped
  stand.drop = LOGIN_ATTEMPTS
  const err = await transport.connect(l0Login).then(
    () => undefined,
    (e: unknown) => e,
  )
  t.equal(stand.dropped - dropped, LOGIN_ATTEMPTS, `${LOGIN_ATTEMPTS} logins, each closed`)
  t.same(retried, [1, 2, 3], 'tried again after each but the last')
  t.ok(isClosedBeforeConnack(err), 'then the last close is reported')
})

t.test('a CONNACK refusal is steady: never tried again', async t => {
  let calls = 0
  const refusing: Transport = {
    connect: async () => {
      calls++
      throw new KinError('BROKER_REFUSED', 'the broker refused the login: Connection refused: Not authorized', {
        detail: { returnCode: 5 },
      })
    },
  }
  const err = await retryingLogins(refusing, { backoffMs: 10 })
    .connect(l0Login)
    .then(
      () => undefined,
      (e: unknown) => e,
    )
  t.equal(calls, 1, 'one login')
  t.match(err, { code: 'BROKER_REFUSED', detail: { returnCode: 5 } }, 'its refusal as it came')
  t.notOk(isClosedBeforeConnack(err))
})
