/** @module `kin serve --offline`: an enrolled lock that names a broker serves without reaching L0, and a guest enrolled meanwhile is admitted on the proof it sends. */
import t from 'tap'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { expectExit, kin, lastJson, startKin } from '../enroll/_harness.ts'
import { enrollThroughL0, gossipFleet } from '../gossip/_fleet.ts'

t.test('kin serve --offline does not follow L0 though config.json names its broker', async t => {
  const fleet = await gossipFleet(t, ['admin', 'member', 'device'])
  const lock = fleet.devices[2]!
  expectExit(t, await kin(['sync', '--home', lock.home]), 0, 'the lock syncs while L0 is reachable')
  const lockTreeSize = fleet.services.miner.miner.latestHead()!.treeSize

  const serve = startKin(['serve', '--home', lock.home, '--port', '0', '--offline', '--json'], { timeoutMs: 300_000 })
  t.teardown(() => serve.kill())
  const listening = JSON.parse(await serve.firstLine) as {
    port: number
    following: boolean
    inbox: string | null
    control: string | null
  }
  t.equal(listening.following, false, 'it does not follow L0')
  t.equal(listening.inbox, null, 'no inbox: that needs a broker session')
  t.equal(listening.control, null, 'no control socket: the home is not owned by a follower')
  t.notOk(existsSync(join(lock.home, 'agent.sock')), 'no agent.sock in the home')

  // A guest enrolled while the lock is cut off: the lock has never seen its events.
  const guest = await enrollThroughL0(fleet, 'guest', 'house-sitter')
  await fleet.services.seal()
  const target = `127.0.0.1:${listening.port}`
  const run = await kin(['access', '--home', guest.home, '--target', target, '--action', 'unlock', '--json'])
  expectExit(t, run, 0, 'the guest is admitted by the offline lock')
  const out = lastJson(run.stdout) as { code: string; peer: string; sent: { kind: string; statedTreeSize: number } }
  t.equal(out.code, 'ALLOW')
  t.equal(out.peer, guest.cn)
  t.not(out.sent.kind, 'none', 'on a proof the guest sent with its request')
  t.equal(out.sent.statedTreeSize, lockTreeSize, 'for the head the lock stated: the one it synced before going offline')
  t.notOk(fleet.services.clientsByCn().has(lock.cn), 'the lock never opened a session with L0')

  serve.kill()
  const ended = await serve.done
  t.match(ended.stdout, /"offline":true/, 'it said it was offline')
})

t.test('kin serve --help names --offline', async t => {
  const help = await kin(['serve', '--help'])
  expectExit(t, help, 0, 'help')
  t.match(help.stdout, /--offline/)
  t.match(help.stdout, /kin serve --home \.\/lock --port 9443 --offline/, 'with its example')
})
