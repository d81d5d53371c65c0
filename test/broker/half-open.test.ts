// L0's listener under a bounded flood of half-open sockets: closed at the login deadline, capped oldest-first, and a real device still logs in.
import t from 'tap'
import { eventually } from '../enroll/_harness.ts'
import { startL0 } from '../../broker/l0.ts'
import { openHalfOpen } from '../../sim/attacks/half-open.ts'
import { connectDevice, end, enrollDirect, logRecord, makeL0Home, subscribeGranted, withHomeLedger } from './_fleet.ts'

const MAX_PENDING = 24
const DEADLINE_MS = 1500
const l0 = await makeL0Home({ domain: 'flood.home.arpa' })
const lock = await withHomeLedger(l0, ledger =>
  enrollDirect(l0, ledger, l0.self, { role: 'device', kind: 'lock', name: 'front door' }),
)
const logs: Array<Record<string, unknown>> = []
const services = await startL0({
  home: l0.dir,
  host: '127.0.0.1',
  port: 0,
  log: r => logs.push(r as Record<string, unknown>),
  maxPendingConnections: MAX_PENDING,
  loginDeadlineMs: DEADLINE_MS,
})
t.teardown(() => services.close())

t.test(
  'a device logs in while half-open sockets fill the pending cap; the flood is evicted oldest first, then closed at the deadline',
  async t => {
    const count = 100
    const flood = await openHalfOpen({ host: services.host, port: services.port, count, kind: 'mixed' })
    t.teardown(() => flood.stop())
    t.equal(flood.opened, count, 'every flood socket connected')
    // The client sees its connect when the kernel has the connection; L0 accepts it a little later.
    t.ok(
      await eventually(() => {
        const p = services.pendingConnections()
        return p.open + p.evicted + p.deadline + p.handshake >= count
      }, 30_000),
      'L0 accepted the flood',
    )
    t.ok(
      services.pendingConnections().open <= MAX_PENDING,
      `at most ${MAX_PENDING} connections wait to log in (${services.pendingConnections().open})`,
    )
    t.ok(
      services.pendingConnections().evicted >= count - MAX_PENDING,
      `the oldest were closed for the newer (${services.pendingConnections().evicted})`,
    )

    const client = await connectDevice(services, lock)
    t.ok(client.connected, 'the lock logged in while the flood held its sockets')
    t.same(await subscribeGranted(client, [services.topics.head]), [1], 'and it is served')

    // More of the flood after the login: an authenticated session is never among the evicted.
    const more = await openHalfOpen({
      host: services.host,
      port: services.port,
      count: 2 * MAX_PENDING,
      kind: 'silent',
    })
    t.teardown(() => more.stop())
    t.ok(await flood.allClosed(60_000), 'L0 closed every socket of the first flood')
    t.ok(await more.allClosed(60_000), 'and of the second, at the latest at the login deadline')
    t.equal(flood.closedByServer + more.closedByServer, count + 2 * MAX_PENDING)
    const p = services.pendingConnections()
    t.equal(p.open, 0, 'nothing waits any more')
    t.ok(
      p.deadline + p.handshake >= 1,
      `some closed at the deadline (${p.deadline}, ${p.handshake} as their handshake timed out)`,
    )
    t.equal(
      p.deadline + p.evicted + p.handshake,
      count + 2 * MAX_PENDING,
      'every flood socket closed by the deadline or the cap, none otherwise',
    )
    t.ok(client.connected, 'the lock is still logged in')
    t.equal(services.clientsByCn().get(lock.cn)?.identity.kind, 'device')
    const rec = await logRecord(logs, r => r.event === 'connection.closed')
    t.match(rec.code, /^CONNECTION_(DEADLINE|EVICTED)$/)
    t.ok(
      logs.filter(r => r.event === 'connection.closed').length < 10,
      'closures are summarised in the log, not one line each',
    )
    t.ok(logs.filter(r => r.event === 'tls.error').length < 10, 'and so are failed handshakes')
    await end(client)
  },
)

t.test('the settings are checked', async t => {
  await t.rejects(startL0({ home: l0.dir, port: 0, maxPendingConnections: 0 }), { code: 'BAD_ARGUMENT' })
})
