import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import mqtt, { type MqttClient } from 'mqtt'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import { policyEvent } from '../../agent/ledger/builders.ts'
import { decodeHead, verifyHeadSignature } from '../../agent/ledger/head.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import type { L0ClientServices } from '../../broker/l0-client.ts'
import { natsSubject } from '../../broker/nats.ts'
import { servicesCn } from '../../broker/services-identity.ts'
import {
  closed,
  connectDevice,
  end,
  enrollDirect,
  logRecord,
  makeL0Home,
  nextMessage,
  nowSeconds,
  revocation,
  subscribeGranted,
  submission,
  tryConnect,
  withHomeLedger,
  type BrokerAddress,
  type TestDevice,
} from './_fleet.ts'
import { freePort, nodeAddress, startL0OnCluster, startNatsCluster, type NatsCluster } from './_nats.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'

// Debian's nats-server 2.9; .ci/run installs it. Missing is a failure, never a silent skip.
if (spawnSync('sh', ['-c', 'command -v nats-server']).status !== 0) {
  t.fail(
    "nats-server not installed: run 'apt-get install -y nats-server' (CI's .ci/run installs it) to test L0 on a NATS cluster",
  )
} else {
  await natsCluster()
}

/** Polls `cond` every 50 ms until it holds or `ms` pass; says whether it held. */
async function eventually(cond: () => boolean, ms = 90_000): Promise<boolean> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) return false
    await new Promise(r => setTimeout(r, 50))
  }
  return true
}

/**
 * A device following the head through every node, as a device given several broker URLs does: mqtt.js moves to the
 * next node at each reconnect; on every connect it subscribes again, retrying the transient SUBACK 0x80 a cluster
 * answers while it moves sessions after a node loss.
 */
interface Follower {
  client: MqttClient
  head: () => string | undefined
  connects: () => number
}

function follow(
  cluster: NatsCluster,
  l0: { cn: string; rootPem: string },
  dev: TestDevice,
  filters: string[],
  first = 0,
): Follower {
  const servers = cluster.nodes
    .map((_, i) => cluster.nodes[(first + i) % cluster.nodes.length]!)
    .map(n => ({ host: '127.0.0.1', port: n.mqttPort, protocol: 'mqtts' as const }))
  const client = mqtt.connect({
    protocol: 'mqtts',
    host: servers[0]!.host,
    port: servers[0]!.port,
    servers,
    protocolVersion: 4,
    clientId: dev.cn,
    clean: true,
    reconnectPeriod: 500,
    connectTimeout: 10_000,
    resubscribe: false,
    cert: dev.certPem,
    key: dev.keyPem,
    ca: l0.rootPem,
    servername: l0.cn,
    rejectUnauthorized: true,
  })
  let head: string | undefined
  let connects = 0
  const topics = fleetTopics(dev.cn.slice(dev.cn.indexOf('.') + 1))
  client.on('message', (topic, payload) => {
    if (topic === topics.head) head = payload.toString('hex')
  })
  client.on('connect', () => {
    connects++
    void (async () => {
      for (let attempt = 0; attempt < 40 && client.connected; attempt++) {
        const granted = await subscribeGranted(client, filters).catch(() => [128])
        if (granted.every(g => g === 1)) return
        await new Promise(r => setTimeout(r, 500))
      }
    })()
  })
  client.on('error', () => undefined)
  return { client, head: () => head, connects: () => connects }
}

async function natsCluster(): Promise<void> {
  const l0 = await makeL0Home()
  const { phone, tablet, camera, speaker } = await withHomeLedger(l0, async ledger => {
    const phone = await enrollDirect(l0, ledger, l0.self, { role: 'member' })
    const tablet = await enrollDirect(l0, ledger, l0.self, { role: 'member' })
    return {
      phone,
      tablet,
      camera: await enrollDirect(l0, ledger, phone, { role: 'device', kind: 'camera' }),
      speaker: await enrollDirect(l0, ledger, tablet, { role: 'device', kind: 'speaker' }),
    }
  })
  const topics = fleetTopics(l0.domain)
  const minerKey = await withHomeLedger(l0, async ledger => ledger.ledger.state.genesis!.body.minerKey)

  const cluster = await startNatsCluster(l0.dir, 3)
  // Every node is killed at the end, whatever happened before.
  t.teardown(() => cluster.stop())
  const node = (i: number): BrokerAddress => nodeAddress(cluster, i, l0)
  const logs: Array<Record<string, unknown>> = []
  const startServices = () => startL0OnCluster(l0.dir, cluster, logs)
  let services: L0ClientServices = await startServices()
  t.teardown(() => services.close())

  // The gossip: policies a parent sets for its child. They change no binding, so no users file refresh (and no NATS
  // reload) happens while they flow; each differs by its hop count.
  let hops = 0
  const policies = (by: TestDevice, n: number): EncodedEvent[] => {
    const state = services.ledger.ledger.state
    const child = by === phone ? camera : speaker
    return Array.from({ length: n }, () =>
      signEvent(
        nodeCrypto,
        policyEvent(
          state.currentBinding(by.cn)!,
          state.currentBinding(child.cn)!,
          {
            subtree: false,
            maxHops: 1 + (hops++ % 1000),
            maxHeadAge: 0,
            anchors: [],
            rules: [],
          },
          nowSeconds(),
        ),
        by.ledgerSeed,
      ),
    )
  }

  t.test(
    'the export: three nodes, routes on loopback, JetStream replicas 3, MQTT over TLS with verify_and_map, one users file',
    { timeout: 240_000 },
    async t => {
      const conf = readFileSync(cluster.exported.nodes[0]!.conf, 'utf8')
      t.match(conf, /verify_and_map: true/)
      t.match(conf, /stream_replicas: 3/)
      t.match(conf, /include "users\.conf"/)
      t.equal((conf.match(/nats-route:\/\/127\.0\.0\.1:\d+/g) ?? []).length, 2, 'routes to the two other nodes')
      const users = readFileSync(cluster.exported.users, 'utf8')
      for (const cn of [l0.cn, phone.cn, tablet.cn, camera.cn, speaker.cn, servicesCn(l0.cn)])
        t.ok(users.includes(`user: "${cn}"`), `a user entry for ${cn}`)
      t.ok(
        users.includes(JSON.stringify(natsSubject(topics.submit(phone.cn)))),
        'the phone may publish its own submissions',
      )
      t.equal(services.clientId, servicesCn(l0.cn), "L0's services log in under their own identity, not L0's CN")
    },
  )

  t.test(
    'a device on any node gets the retained head; it cannot publish or subscribe outside its allow list',
    { timeout: 240_000 },
    async t => {
      const watcher = await connectDevice(node(2), tablet)
      const retained = nextMessage(watcher, topics.head)
      t.same(await subscribeGranted(watcher, [topics.head, topics.events]), [1, 1])
      const first = decodeHead(new Uint8Array(await retained))
      t.ok(verifyHeadSignature(nodeCrypto, first, minerKey), 'the retained head, signed by the miner, through node 3')

      const phoneClient = await connectDevice(node(1), phone)
      t.same(
        await subscribeGranted(phoneClient, [
          topics.inboxAll(tablet.cn),
          topics.submitAll,
          topics.syncResp(tablet.cn),
          `${topics.base}/#`,
        ]),
        [128, 128, 128, 128],
        "another's inbox, everyone's submissions, another's sync answers and the whole fleet are refused",
      )
      t.same(
        await subscribeGranted(phoneClient, [topics.syncResp(phone.cn), topics.inboxAll(phone.cn)]),
        [1, 1],
        'its own are granted',
      )
      const forged = new Promise<string>(resolve =>
        watcher.on('message', (topic, p) => {
          if (topic === topics.head) resolve(p.toString('hex'))
        }),
      )
      const inbox = new Promise<string>(resolve =>
        watcher.on('message', (topic, p) => {
          if (topic.startsWith(`${topics.base}/dev/`)) resolve(`${topic} ${p.toString()}`)
        }),
      )
      t.same(await subscribeGranted(watcher, [topics.inboxAll(tablet.cn)]), [1])
      const [stolen] = policies(phone, 1)
      // MQTT 3.1.1 has no negative PUBACK: NATS acknowledges and drops what the allow list denies.
      await phoneClient.publishAsync(topics.submit(tablet.cn), Buffer.from(submission([stolen!])), { qos: 1 })
      await phoneClient.publishAsync(topics.head, Buffer.from('forged head'), { qos: 1 })
      await phoneClient.publishAsync(topics.inbox(tablet.cn, l0.cn), Buffer.from('forged in the name of L0'), {
        qos: 1,
      })
      await phoneClient.publishAsync(topics.inbox(tablet.cn, phone.cn), Buffer.from('challenge'), { qos: 1 })
      t.equal(
        await inbox,
        `${topics.inbox(tablet.cn, phone.cn)} challenge`,
        "the tablet's first inbox message is the phone's, under its own label",
      )
      const [marker] = policies(phone, 1)
      await phoneClient.publishAsync(topics.submit(phone.cn), Buffer.from(submission([marker!])), { qos: 1 })
      t.equal(
        await forged,
        toHex(services.miner.miner.latestHeadBytes()!),
        "the next head the tablet sees is the miner's, never the forged one",
      )
      t.ok(services.ledger.ledger.state.has(marker!.idHex))
      t.notOk(services.ledger.ledger.state.has(stolen!.idHex), 'the submission under another label never reached L0')
      await end(phoneClient)
      await end(watcher)
    },
  )

  t.test(
    "an enrollment made while L0 ran its own broker: the services' start refreshes the users file and every node admits the device",
    { timeout: 240_000 },
    async t => {
      await services.close()
      const lock = await withHomeLedger(l0, ledger => enrollDirect(l0, ledger, phone, { role: 'device', kind: 'lock' }))
      const before = await tryConnect(node(0), { clientId: lock.cn, cert: lock.certPem, key: lock.keyPem })
      t.equal(before.client, undefined, 'before the refresh no node knows the lock')
      services = await startServices()
      const refreshed = await logRecord(logs, r => r.event === 'broker.users')
      t.equal((refreshed.reloaded as number[]).length, 3, 'all three nodes were sent SIGHUP')
      for (let i = 0; i < 3; i++) {
        t.ok(
          await eventually(() => /Reloaded server configuration/.test(cluster.nodes[i]!.log())),
          `node ${i + 1} reloaded`,
        )
        const o = await tryConnect(node(i), { clientId: lock.cn, cert: lock.certPem, key: lock.keyPem })
        t.ok(o.client !== undefined, `node ${i + 1} admits the lock`)
        await end(o.client)
      }
    },
  )

  t.test(
    "SIGKILL of the node L0's services use, mid-gossip, then its restart: nothing accepted is lost and every device converges on one head",
    { timeout: 240_000 },
    async t => {
      const used = cluster.nodes.findIndex(n => n.url === services.broker())
      t.ok(used >= 0, `the services use ${services.broker()}`)
      // Devices spread over the nodes: the phone and the tablet start on the one about to die, the speaker on the next.
      const members = [phone, tablet, speaker]
      const followers = members.map((dev, i) =>
        follow(cluster, l0, dev, [topics.head, topics.events], (used + [0, 0, 1][i]!) % 3),
      )
      t.teardown(() => Promise.all(followers.map(f => end(f.client))))
      t.ok(await eventually(() => followers.every(f => f.head() !== undefined)), 'every device holds a head')

      const acked: string[] = []
      const sent: Array<{ by: number; e: EncodedEvent }> = []
      const gossip = async (who: number, rounds: number) => {
        const by = members[who]!
        const client = followers[who]!.client
        for (let i = 0; i < rounds; i++) {
          const events = policies(by, 1)
          sent.push(...events.map(e => ({ by: who, e })))
          // A publish lost with its node is resent by mqtt.js on the next node; the race bounds the wait.
          const ok = await Promise.race([
            client.publishAsync(topics.submit(by.cn), Buffer.from(submission(events)), { qos: 1 }).then(
              () => true,
              () => false,
            ),
            new Promise<boolean>(r => setTimeout(() => r(false), 20_000)),
          ])
          if (ok) acked.push(...events.map(e => e.idHex))
          await new Promise(r => setTimeout(r, 150))
        }
      }
      const phoneRun = gossip(0, 16)
      const tabletRun = gossip(1, 16)
      await new Promise(r => setTimeout(r, 1000))
      await cluster.kill(used)
      await new Promise(r => setTimeout(r, 2000))
      await cluster.restart(used)
      await Promise.all([phoneRun, tabletRun])

      t.ok(acked.length > 0, `${acked.length} of ${sent.length} submissions were acknowledged`)
      t.ok(
        await eventually(() => acked.every(id => services.ledger.ledger.state.has(id))),
        'every submission a node acknowledged reached the miner, even while its node was down',
      )
      // A device resubmits what no head covers yet (Replica.pendingOwnEvents): here, what was never acknowledged.
      for (const { by, e } of sent.filter(s => !services.ledger.ledger.state.has(s.e.idHex))) {
        await followers[by]!.client.publishAsync(topics.submit(members[by]!.cn), Buffer.from(submission([e])), {
          qos: 1,
        })
      }
      t.ok(
        await eventually(() => sent.every(s => services.ledger.ledger.state.has(s.e.idHex))),
        'after resubmission every event is in the ledger',
      )
      t.ok(
        await eventually(() => services.miner.miner.latestHead()?.treeSize === services.ledger.ledger.size),
        'the miner sealed them all',
      )
      const final = () => toHex(services.miner.miner.latestHeadBytes()!)
      t.ok(
        await eventually(() => followers.every(f => f.head() === final())),
        'every device holds the same, latest head',
      )
      t.ok(
        followers.slice(0, 2).every(f => f.connects() >= 2),
        'the devices on the killed node moved to another',
      )
      t.ok(
        logs.some(r => r.event === 'broker.disconnected'),
        'the services lost their node and came back through another',
      )
    },
  )

  t.test(
    'a device given several broker URLs logs in through the first that answers: a dead node is passed over',
    { timeout: 240_000 },
    async t => {
      const dead = await freePort()
      const session = await nodeTransport.connect({
        url: [`mqtts://127.0.0.1:${dead}`, cluster.nodes[1]!.url].join(','),
        clientId: speaker.cn,
        connectTimeoutMs: 20_000,
        reconnect: true,
        login: { kind: 'certificate', certPem: speaker.certPem, keyPem: speaker.keyPem },
        server: { kind: 'fleet', rootPem: l0.rootPem, serverCn: l0.cn },
      })
      const heads: Uint8Array[] = []
      session.onMessage((topic, payload) => {
        if (topic === topics.head) heads.push(payload)
      })
      await session.subscribe([topics.head])
      t.ok(await eventually(() => heads.length > 0), 'the retained head arrived through the second URL')
      t.same(toHex(heads[0]!), toHex(services.miner.miner.latestHeadBytes()!))
      await session.end()
    },
  )

  t.test(
    'a revoked device is cut off on every node: its session closes and no node lets it log in again',
    { timeout: 240_000 },
    async t => {
      const victim = await connectDevice(node(1), camera)
      const gone = closed(victim)
      const phoneClient = await connectDevice(node(0), phone)
      const revoke = revocation(services.ledger, phone, camera)
      await phoneClient.publishAsync(topics.submit(phone.cn), Buffer.from(submission([revoke])), { qos: 1 })
      const accepted = await logRecord(logs, r => r.event === 'ledger.accepted' && r.id === revoke.idHex)
      const refreshed = await logRecord(
        logs,
        r => r.event === 'broker.users' && logs.indexOf(r) > logs.indexOf(accepted),
      )
      t.equal((refreshed.reloaded as number[]).length, 3, 'all three nodes reloaded')
      t.ok(
        !readFileSync(cluster.exported.users, 'utf8').includes(camera.cn),
        'the users file no longer names the camera',
      )
      await gone
      t.pass("the camera's open session was closed by its node")
      for (let i = 0; i < 3; i++) {
        const o = await tryConnect(node(i), { clientId: camera.cn, cert: camera.certPem, key: camera.keyPem })
        t.equal(o.client, undefined, `node ${i + 1} refuses the camera`)
      }
      // Right after a reload a login may be refused once: a few attempts, bounded.
      let o = await tryConnect(node(2), { clientId: tablet.cn, cert: tablet.certPem, key: tablet.keyPem })
      for (let attempt = 0; attempt < 10 && o.client === undefined; attempt++) {
        await new Promise(r => setTimeout(r, 1000))
        o = await tryConnect(node(2), { clientId: tablet.cn, cert: tablet.certPem, key: tablet.keyPem })
      }
      t.ok(o.client !== undefined, 'the tablet still logs in')
      await end(o.client)
      await end(phoneClient)
    },
  )
}
