// kin status on homes that a running agent holds: L0's broker (in this process) and a device's `kin sync --follow`
// over real MQTT/TLS. status reads a copy of the files and leaves the agent running (DESIGN.md "The device runtime").
import t from 'tap'
import { expectExit, kin } from '../enroll/_harness.ts'
import { gossipFleet, startKinLines } from '../gossip/_fleet.ts'

t.test('kin status names the agent holding each home, the head it holds, and leaves it running', async t => {
  const fleet = await gossipFleet(t, ['member', 'device'])
  const lock = fleet.devices[1]!
  const sealed = fleet.services.miner.miner.latestHead()!

  const l0 = await kin(['status', '--home', fleet.l0.dir, '--json'])
  expectExit(t, l0, 0, 'kin status on L0 while its broker runs')
  const l0Status = JSON.parse(l0.stdout) as Record<string, any>
  t.same(l0Status.agent, { pid: process.pid, what: 'kin broker' }, 'the broker of this process holds broker.lock')
  t.match(l0Status.head, { height: sealed.height, treeSize: sealed.treeSize }, "the miner's latest sealed head")

  const follower = startKinLines(t, ['sync', '--home', lock.home, '--follow', '--json'])
  await follower.waitJson(
    d => (d['head'] as { height?: number } | undefined)?.height === sealed.height && d['following'] === undefined,
    30_000,
  )
  const held = await kin(['status', '--home', lock.home, '--json'])
  expectExit(t, held, 0, 'kin status on the lock while kin sync --follow runs')
  const s = JSON.parse(held.stdout) as Record<string, any>
  t.equal(s.cn, lock.cn)
  t.equal(s.broker, fleet.url, 'the broker URL of config.json')
  t.equal(s.agent?.what, 'kin serve or kin sync --follow')
  t.ok(Number.isSafeInteger(s.agent?.pid) && s.agent.pid !== process.pid, "the follower's own pid")
  t.match(
    s.head,
    { height: sealed.height, treeSize: sealed.treeSize },
    'the head the follower verified, from sync.cbor',
  )
  t.ok(typeof s.head.confirmedAt === 'number' && s.head.confirmedAt >= sealed.time - 300, 'and when it confirmed it')
  t.same(s.standing, { valid: true })
  const text = await kin(['status', '--home', lock.home])
  t.match(text.stdout, new RegExp(`agent\\s+kin serve or kin sync --follow \\(pid ${s.agent.pid}\\) holds this home`))

  follower.signal('SIGINT')
  const stopped = await follower.done
  t.equal(stopped.status, 0, 'the follower ran on untouched and stops cleanly')
  const after = JSON.parse((await kin(['status', '--home', lock.home, '--json'])).stdout) as Record<string, any>
  t.equal(after.agent, null, 'no agent once it stopped')
})
