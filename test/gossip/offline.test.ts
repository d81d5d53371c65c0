import t from 'tap'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { bytesEqual } from '../../agent/codec/bytes.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { enrollThroughBroker } from '../../agent/gossip/enroll-session.ts'
import { completeInvite, openInvite } from '../../agent/gossip/invite-session.ts'
import { connectDevice } from '../../agent/gossip/login.ts'
import { submitEvents } from '../../agent/gossip/submit.ts'
import { expectExit, inviterOf, kin, lastJson } from '../enroll/_harness.ts'
import { coveredBytes, followerOf, gossipFleet, homeLedger, nowSeconds, until } from './_fleet.ts'

// DESIGN.md "Command line": `kin sync` catches a device up with L0's ledger; the follower does the same on reconnect.
t.test('devices offline during ten enrollments catch up: kin sync once, a follower on reconnect', async t => {
  const fleet = await gossipFleet(t, ['admin', 'member', 'device'])
  const [, phone, lock] = fleet.devices as [
    unknown,
    NonNullable<(typeof fleet.devices)[number]>,
    NonNullable<(typeof fleet.devices)[number]>,
  ]

  // The lock syncs once (a child process), then stays offline.
  const first = await kin(['sync', '--home', lock.home, '--json'])
  expectExit(t, first, 0, 'kin sync exits 0')
  const firstOut = lastJson(first.stdout) as {
    ok: boolean
    head: { height: number; treeSize: number }
    covered: number
    alarms: unknown[]
  }
  t.equal(firstOut.head.treeSize, fleet.services.miner.miner.latestHead()!.treeSize, "it reports the miner's head")
  t.equal(firstOut.covered, firstOut.head.treeSize, 'and covers all of it')
  t.ok(existsSync(join(lock.home, 'sync.cbor')), 'the verified head is kept in sync.cbor')
  t.notOk(existsSync(join(lock.home, 'ledger.lock')), 'and the ledger lock is released')

  // The phone follows, then goes offline.
  const phoneFollower = await followerOf(t, phone.home)
  phoneFollower.follower.start()
  t.ok(
    await until(() => phoneFollower.follower.replica.headId === fleet.services.miner.miner.latestHeadId(), 15_000),
    'the phone follows the miner',
  )
  await phoneFollower.close()
  const phoneCovered = phoneFollower.files.replica.coveredSize

  // Ten enrollments through L0 (pairing, CA, certified submitted as `kin enroll` does).
  const { inviter, client } = await inviterOf(fleet.l0.dir, fleet.url)
  t.teardown(() => client.close())
  const enrolled: string[] = []
  for (let i = 0; i < 10; i++) {
    const opened = await openInvite(
      nodeCrypto,
      client,
      inviter,
      { role: 'device', name: `camera ${i}`, ttlSeconds: 120, guestValidSeconds: 86400 },
      { now: nowSeconds(), timeoutMs: 10_000 },
    )
    const [device] = await Promise.all([
      enrollThroughBroker(nodeCrypto, nodePki, nodeTransport, {
        code: opened.code,
        url: fleet.url,
        kind: 'camera',
        name: `camera ${i}`,
        stepTimeoutMs: 10_000,
        now: nowSeconds,
      }),
      completeInvite(nodeCrypto, nodePki, client, inviter, opened, {
        keep: async () => undefined,
        now: nowSeconds,
        stepTimeoutMs: 10_000,
      }),
    ])
    const session = await connectDevice(
      nodeTransport,
      {
        url: fleet.url,
        cn: device.cn,
        certPem: device.certPem,
        keyPem: device.secrets.tls.privateKeyPem,
        rootPem: device.rootPem,
        l0Cn: device.l0Cn,
      },
      { timeoutMs: 10_000 },
    )
    await submitEvents(session, device.fleet, device.cn, [device.authorize, device.certified])
    await session.close()
    enrolled.push(device.cn)
  }
  const minerState = () => fleet.services.ledger.ledger.state
  t.ok(
    await until(() => enrolled.every(cn => minerState().currentBinding(cn)?.certHashes.length === 1), 15_000),
    'L0 recorded the ten enrollments',
  )
  await fleet.services.seal()
  const head = fleet.services.miner.miner.latestHead()!

  const again = await kin(['sync', '--home', lock.home, '--json'])
  expectExit(t, again, 0, 'kin sync after the enrollments exits 0')
  const out = lastJson(again.stdout) as {
    head: { height: number; treeSize: number }
    added: number
    covered: number
    pending: number
    alarms: unknown[]
  }
  t.same([out.head.height, out.head.treeSize], [head.height, head.treeSize], "the lock reports the miner's latest head")
  t.equal(out.added, head.treeSize - firstOut.head.treeSize, 'and every event it lacked, applied')
  t.ok(out.added >= 20, 'at least the ten authorize and ten certified events')
  t.same([out.pending, out.alarms], [0, []])
  t.ok(
    bytesEqual(coveredBytes(lock.home, head.treeSize), coveredBytes(fleet.l0.dir, head.treeSize)),
    "the lock's ledger file is byte-identical to L0's",
  )
  t.ok(
    enrolled.every(cn => homeLedger(lock.home).state.currentBinding(cn) !== undefined),
    'and names the ten new devices',
  )
  const textRun = kin(['sync', '--home', lock.home])
  const back = await followerOf(t, phone.home)
  back.follower.start()
  t.ok(
    await until(() => back.follower.replica.headId === fleet.services.miner.miner.latestHeadId(), 15_000),
    'the phone catches up when it reconnects',
  )
  const text = await textRun
  expectExit(t, text, 0, 'a third sync finds nothing new')
  t.match(text.stdout, new RegExp(`synced to head ${head.height} over ${head.treeSize} events .*: 0 new`))
  t.equal(back.follower.replica.coveredSize - phoneCovered, head.treeSize - phoneCovered)
  t.ok(
    back.heads.some(h => h.via === 'sync' && h.added > 0),
    'by sync requests (it missed the announcements)',
  )
  await back.close()
  t.ok(
    bytesEqual(coveredBytes(phone.home, head.treeSize), coveredBytes(fleet.l0.dir, head.treeSize)),
    'byte-identical too',
  )
})
