// A broker session that takes publishes but silently stops delivering (what NATS 2.9 does to open MQTT sessions after
// a configuration reload): the follower's periodic sync round finds it out, reports SESSION_SILENT, logs in again and
// catches up, instead of missing every head from then on. The broker is the real one on 127.0.0.1; only delivery to
// the follower's first session is cut, in the transport.
import t from 'tap'
import { nodeTransport } from '../../runtime/node/transport.ts'
import type { Transport, TransportSession } from '../../agent/ports/transport.ts'
import { enrollThroughL0, followerOf, gossipFleet, until } from './_fleet.ts'

/** nodeTransport, with every message to the first session dropped once `silence()` was called. */
function silencingTransport(): { transport: Transport; silence(): void; sessions(): number } {
  let silent = false
  let opened = 0
  const transport: Transport = {
    async connect(options) {
      const session = await nodeTransport.connect(options)
      const index = opened++
      const wrapped: TransportSession = {
        publish: (topic, payload, o) => session.publish(topic, payload, o),
        subscribe: filters => session.subscribe(filters),
        onMessage: listener =>
          session.onMessage((topic, payload) => {
            if (!(silent && index === 0)) listener(topic, payload)
          }),
        onStatus: listener => session.onStatus(listener),
        peerCertificate: () => session.peerCertificate(),
        get connected() {
          return session.connected
        },
        end: () => session.end(),
      }
      return wrapped
    },
  }
  return {
    transport,
    silence: () => {
      silent = true
    },
    sessions: () => opened,
  }
}

t.test(
  'a session that stopped delivering is found by the sync probe and replaced; the follower catches up',
  async t => {
    const fleet = await gossipFleet(t, ['admin', 'member'])
    const phone = fleet.devices[1]!
    const wire = silencingTransport()
    const f = await followerOf(t, phone.home, {
      transport: wire.transport,
      probeIntervalMs: 400,
      syncRoundTimeoutMs: 1500,
    })
    const miner = fleet.services.miner.miner
    f.follower.start()
    t.ok(await until(() => f.follower.replica.headId === miner.latestHeadId(), 20_000), 'the phone follows the miner')
    t.equal(wire.sessions(), 1, 'on one session')

    wire.silence()
    // A new device enrolls: new events and a new head that the first session no longer delivers.
    const guest = await enrollThroughL0(fleet, 'guest', 'guest phone')
    const sealed = await until(
      () =>
        miner.latestHead() !== undefined && fleet.services.ledger.ledger.state.currentBinding(guest.cn) !== undefined,
      20_000,
    )
    t.ok(sealed, 'L0 holds the new device')
    t.ok(
      await until(() => f.errors.some(e => e.code === 'SESSION_SILENT'), 30_000),
      'the probe reports SESSION_SILENT',
      { errors: f.errors },
    )
    t.ok(await until(() => wire.sessions() >= 2, 30_000), 'and the follower logs in again')
    t.ok(
      await until(
        () =>
          f.follower.replica.ledger.ledger.state.currentBinding(guest.cn) !== undefined &&
          f.follower.replica.headId === miner.latestHeadId(),
        30_000,
      ),
      'on the new session it catches up with the new device and the latest head',
    )
  },
)

t.test('a session that delivers is left alone: probes answer, no SESSION_SILENT, one session', async t => {
  const fleet = await gossipFleet(t, ['admin', 'member'])
  const wire = silencingTransport()
  const f = await followerOf(t, fleet.devices[1]!.home, {
    transport: wire.transport,
    probeIntervalMs: 300,
    syncRoundTimeoutMs: 3000,
  })
  f.follower.start()
  t.ok(await until(() => f.follower.replica.headId === fleet.services.miner.miner.latestHeadId(), 20_000))
  await new Promise(r => setTimeout(r, 2000))
  t.notOk(
    f.errors.some(e => e.code === 'SESSION_SILENT'),
    'no probe failed',
    { errors: f.errors },
  )
  t.equal(wire.sessions(), 1, 'still the first session')
})
