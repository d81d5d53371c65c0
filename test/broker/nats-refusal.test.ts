import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { KinError } from '../../agent/errors.ts'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { startL0Client } from '../../broker/l0-client.ts'
import { natsSubject } from '../../broker/nats.ts'
import { servicesCn } from '../../broker/services-identity.ts'
import { nodeTransportWith } from '../../runtime/node/transport.ts'
import type { TransportSession } from '../../agent/ports/transport.ts'
import { HOME_FILES } from '../../runtime/home.ts'
import { startKinLines, until, writeDeviceHome } from '../gossip/_fleet.ts'
import { enrollDirect, makeL0Home, tempDir, withHomeLedger, type TestDevice } from './_fleet.ts'
import { startNatsCluster, type NatsCluster } from './_nats.ts'

// Debian's nats-server 2.9; .ci/run installs it. Missing is a failure, never a silent skip.
if (spawnSync('sh', ['-c', 'command -v nats-server']).status !== 0) {
  t.fail(
    "nats-server not installed: run 'apt-get install -y nats-server' (CI's .ci/run installs it) to test refusals on a NATS cluster",
  )
} else {
  await refusals()
}

/** The users file with `subject` taken out of `user`'s subscribe allow list (an entry missing a topic). */
function withoutSubscribe(text: string, user: string, subject: string): string {
  const lines = text.split('\n')
  const at = lines.findIndex(l => l.includes(`user: ${JSON.stringify(user)}`))
  const sub = lines.findIndex((l, i) => i > at && l.includes('subscribe: { allow: ['))
  const before = lines[sub]!
  lines[sub] = before.replace(`${JSON.stringify(subject)}, `, '')
  if (at < 0 || lines[sub] === before) throw new Error(`${subject} is not in the subscribe list of ${user}`)
  return lines.join('\n')
}

/** How many times node `i` has logged a finished reload. */
function reloads(cluster: NatsCluster, i: number): number {
  return (cluster.nodes[i]!.log().match(/Reloaded server configuration/g) ?? []).length
}

/** Writes `text` as the users file and reloads every node (SIGHUP), resolved once each has reloaded. */
async function reloadWith(cluster: NatsCluster, text: string): Promise<void> {
  const before = cluster.nodes.map((_, i) => reloads(cluster, i))
  writeFileSync(cluster.exported.users, text)
  for (const n of cluster.nodes) n.child.kill('SIGHUP')
  const end = Date.now() + 60_000
  while (!cluster.nodes.every((_, i) => reloads(cluster, i) > before[i]!)) {
    if (Date.now() > end) throw new Error('a node did not reload within 60 s')
    await new Promise(r => setTimeout(r, 50))
  }
}

async function refusals(): Promise<void> {
  const l0 = await makeL0Home()
  const phone: TestDevice = await withHomeLedger(l0, ledger => enrollDirect(l0, ledger, l0.self, { role: 'member' }))
  const topics = fleetTopics(l0.domain)
  const cluster = await startNatsCluster(l0.dir, 3)
  t.teardown(() => cluster.stop())
  const urls = cluster.exported.urls
  const full = readFileSync(cluster.exported.users, 'utf8')
  const inbox = topics.inboxAll(phone.cn)
  const noInbox = withoutSubscribe(full, phone.cn, natsSubject(inbox))
  const transport = nodeTransportWith({ subscribeRetryMs: 4000 })
  const login = (url: string): Promise<TransportSession> =>
    transport.connect({
      url,
      clientId: phone.cn,
      connectTimeoutMs: 20_000,
      reconnect: true,
      login: { kind: 'certificate', certPem: phone.certPem, keyPem: phone.keyPem },
      server: { kind: 'fleet', rootPem: l0.rootPem, serverCn: l0.cn },
    })

  t.test(
    "a device's subscription the users file forbids: SUBACK 0x80 on every retry, then ACL_DENIED after the budget",
    { timeout: 240_000 },
    async t => {
      await reloadWith(cluster, noInbox)
      const session = await login(urls.join(','))
      const started = Date.now()
      const err = await session.subscribe([topics.head, inbox]).then(
        () => undefined,
        (e: unknown) => e,
      )
      const took = Date.now() - started
      t.ok(err instanceof KinError, 'the subscription fails with a coded error')
      t.equal((err as KinError).code, 'ACL_DENIED')
      const detail = (err as KinError).detail as { filters: string[]; attempts: number }
      t.same(detail.filters, [inbox], 'only the forbidden filter is named; the head was granted')
      // 250 + 500 + 1000 + 2000 ms of backoff fit in 4 s: a handful of attempts, never an endless loop.
      t.ok(detail.attempts >= 2 && detail.attempts <= 8, `${detail.attempts} attempts within the budget`)
      t.ok(took < 60_000, `it gave up after ${took} ms`)
      t.ok(session.connected, 'the session itself stays up')
      await session.end()

      // Given one broker, the first refusal is final (a single broker does not move session state).
      const single = await login(urls[1]!)
      const once = await single.subscribe([inbox]).then(
        () => undefined,
        (e: unknown) => e as KinError,
      )
      await single.end()
      t.match(once, { code: 'ACL_DENIED', detail: { attempts: 1 } }, 'one broker: refused at the first SUBACK')
    },
  )

  t.test(
    'kin serve on a device whose inbox the users file forbids: it follows the ledger and reports ACL_DENIED for its inbox, once',
    { timeout: 240_000 },
    async t => {
      await reloadWith(cluster, noInbox)
      const dir = join(tempDir('kin-nats-home-'), 'phone')
      writeDeviceHome(l0, phone, dir, new Uint8Array(readFileSync(join(l0.dir, HOME_FILES.ledger))), urls.join(','))
      // L0's services answer its sync (without --nats-dir: the users file stays as the test wrote it).
      const services = await startL0Client({ home: l0.dir, broker: urls, log: () => undefined })
      t.teardown(() => services.close())
      const serve = startKinLines(t, ['serve', '--home', dir, '--port', '0', '--json'])
      const refused = await serve.waitJson(d => d['inbox'] === 'unavailable', 120_000)
      t.match(refused, { code: 'ACL_DENIED', message: /SUBACK 0x80/ }, 'the inbox refusal is coded')
      t.ok(
        await until(() => serve.lines.some(l => l.includes('"head"')), 60_000),
        'the ledger is followed all the same',
      )
      await new Promise(r => setTimeout(r, 2000))
      t.equal(
        serve.lines.filter(l => l.includes('"inbox":"unavailable"')).length,
        1,
        'reported once for the session, not retried in a loop',
      )
      serve.signal('SIGTERM')
      t.equal((await serve.done).status, 0, 'kin serve stops cleanly')
    },
  )

  t.test(
    "L0's services: a users file without their submissions topic ends their start with ACL_DENIED, within the budget",
    { timeout: 240_000 },
    async t => {
      await reloadWith(cluster, withoutSubscribe(full, servicesCn(l0.cn), natsSubject(topics.submitAll)))
      const started = Date.now()
      const err = await startL0Client({
        home: l0.dir,
        broker: urls,
        subscribeRetryMs: 4000,
        log: () => undefined,
      }).then(
        async s => {
          await s.close()
          return undefined
        },
        (e: unknown) => e as KinError,
      )
      t.match(err, { code: 'ACL_DENIED' }, 'the services stop with ACL_DENIED')
      t.ok(Date.now() - started < 120_000, `after ${Date.now() - started} ms`)
    },
  )

  t.test(
    'a transient refusal: the entry comes back (as after a node loss) within the budget, and the subscription is granted',
    { timeout: 240_000 },
    async t => {
      await reloadWith(cluster, noInbox)
      const patient = nodeTransportWith({ subscribeRetryMs: 60_000 })
      const session = await patient.connect({
        url: urls.join(','),
        clientId: phone.cn,
        connectTimeoutMs: 20_000,
        reconnect: true,
        login: { kind: 'certificate', certPem: phone.certPem, keyPem: phone.keyPem },
        server: { kind: 'fleet', rootPem: l0.rootPem, serverCn: l0.cn },
      })
      t.teardown(() => session.end())
      const subscribing = session.subscribe([inbox]).then(
        () => 'granted',
        (e: KinError) => e.code,
      )
      await new Promise(r => setTimeout(r, 1500))
      await reloadWith(cluster, full)
      t.equal(await subscribing, 'granted', 'the retried subscription is granted once the users file allows it')

      // The services too: refused at first, granted after the reload, so their start succeeds.
      await reloadWith(cluster, withoutSubscribe(full, servicesCn(l0.cn), natsSubject(topics.submitAll)))
      const starting = startL0Client({ home: l0.dir, broker: urls, subscribeRetryMs: 60_000, log: () => undefined })
      await new Promise(r => setTimeout(r, 1500))
      await reloadWith(cluster, full)
      const services = await starting
      t.equal(services.clientId, servicesCn(l0.cn), "L0's services started once their right came back")
      await services.close()
    },
  )

  t.test(
    'a transient refusal during a node loss: a device subscribing through the surviving nodes is granted within the budget',
    { timeout: 240_000 },
    async t => {
      await cluster.kill(0)
      // The first seconds after a node loss, a surviving node may close a login while it moves the session's state: a
      // follower logs in again with backoff; here a bounded number of attempts.
      let session: TransportSession | undefined
      let refusedLogins = 0
      for (let attempt = 0; attempt < 20 && session === undefined; attempt++) {
        session = await nodeTransportWith({})
          .connect({
            url: urls.join(','),
            clientId: phone.cn,
            connectTimeoutMs: 30_000,
            reconnect: true,
            login: { kind: 'certificate', certPem: phone.certPem, keyPem: phone.keyPem },
            server: { kind: 'fleet', rootPem: l0.rootPem, serverCn: l0.cn },
          })
          .catch(async () => {
            refusedLogins++
            await new Promise(r => setTimeout(r, 2000))
            return undefined
          })
      }
      t.comment(`logins refused while the cluster recovered: ${refusedLogins}`)
      if (session === undefined) throw new Error('no login within 20 attempts')
      const result = await session.subscribe([topics.head, inbox]).then(
        () => 'granted',
        (e: KinError) => e.code,
      )
      await session.end()
      t.equal(result, 'granted', 'granted, whatever the cluster answered while it moved state')
      await cluster.restart(0)
    },
  )
}
