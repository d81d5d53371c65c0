import t from 'tap'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { Home } from '../../runtime/home.ts'
import { expectExit, kin, lastJson } from '../enroll/_harness.ts'
import { gossipFleet, homeLedger, startKinLines, syncHome, until } from './_fleet.ts'

// DESIGN.md "Ledger" (revoke) and "Access decision": a revocation gossips from the miner to the lock, which denies
// from its own ledger as soon as the event arrives.
t.test('kin revoke: the lock following the ledger denies the revoked device within one gossip round', async t => {
  const fleet = await gossipFleet(t, ['admin', 'member', 'device', 'member', 'member'])
  const [admin, phone, lock, tablet, other] = fleet.devices as Array<(typeof fleet.devices)[0]>
  // The lock asks for a fresh ledger (policy maxHeadAge): only the verified head's time, passed by its follower, satisfies it.
  const lockHome = new Home(lock!.home)
  lockHome.writeConfig({ ...lockHome.readConfig(), policy: { maxHeadAge: 600 } })
  const serve = startKinLines(t, ['serve', '--home', lock!.home, '--json'])
  const listening = await serve.waitJson(d => d['listening'] === true, 20_000)
  t.match(
    listening,
    { listening: true, cn: lock!.cn, following: true },
    'kin serve on an enrolled home follows the ledger',
  )
  const target = `127.0.0.1:${listening['port']}`
  const minerHead = () => fleet.services.miner.miner.latestHead()!
  await serve.waitJson(d => (d['head'] as { height?: number } | undefined)?.height === minerHead().height, 20_000)
  const headLines = () =>
    serve.lines
      .map(l => JSON.parse(l) as Record<string, unknown>)
      .filter(d => d['head'] !== undefined && d['listening'] === undefined)

  // The requesters check the lock too (mutual authentication): they sync first, as they learn of it from L0.
  await Promise.all([phone, tablet, other].map(d => syncHome(t, d!.home)))
  const ask = (who: string) => kin(['access', '--home', who, '--target', target, '--action', 'unlock', '--json'])
  const before = await Promise.all([ask(phone!.home), ask(tablet!.home)])
  before.forEach(b => expectExit(t, b, 0, "the phone and the tablet may unlock before (the lock's head is fresh)"))

  // The admin (the phone's parent) revokes it from its own home (which predates the phone: kin revoke catches up first).
  t.notOk(homeLedger(admin!.home).state.currentBinding(phone!.cn), "the admin's ledger does not know the phone yet")
  const revoked = await kin(['revoke', '--home', admin!.home, phone!.cn, '--reason', 'lost', '--json'])
  expectExit(t, revoked, 0, 'kin revoke exits 0 once L0 holds the event')
  const r = lastJson(revoked.stdout) as {
    id: string
    recorded: string
    delivered: boolean
    reason: string
    by: string
    head: { height: number }
  }
  t.same(
    [r.recorded, r.delivered, r.reason, r.by],
    ['ledger', true, 'lost', admin!.cn],
    "recorded in the admin's ledger and sealed by L0",
  )
  t.ok(homeLedger(admin!.home).state.has(r.id), "the admin's ledger holds it")
  t.notOk(existsSync(join(admin!.home, 'ledger.lock')), 'and its lock is released')
  const arrived = await serve.waitJson(
    d => (d['head'] as { height?: number } | undefined)?.height === r.head.height,
    20_000,
  )
  t.match(
    arrived,
    { via: 'events', added: 1 },
    "the lock got it from the miner's announcement: one gossip round, no sync request",
  )
  const after = await ask(phone!.home)
  expectExit(t, after, 1, 'the phone is denied')
  t.match(lastJson(after.stdout), { stage: 'answer', code: 'ACCESS_REVOKED' })

  // L0 revokes the tablet from its own home while its broker runs: through the broker, not behind its back.
  const [byL0, withoutBroker] = await Promise.all([
    kin(['revoke', '--home', fleet.l0.dir, tablet!.cn, '--broker', fleet.url, '--json']),
    kin(['revoke', '--home', fleet.l0.dir, other!.cn, '--json']),
  ])
  expectExit(t, byL0, 0, "kin revoke on L0's home exits 0")
  const l0r = lastJson(byL0.stdout) as { id: string; recorded: string; note: string }
  t.same(l0r.recorded, 'broker', 'the running broker recorded it')
  t.match(l0r.note, /submitted to the miner of 'kin broker'/)
  expectExit(t, withoutBroker, 2, "without --broker, L0's home says the broker owns its ledger")
  t.match(lastJson(withoutBroker.stdout), { code: 'USAGE', message: /owns L0's ledger/ })
  await until(
    () =>
      headLines().some(
        d =>
          (d['head'] as { treeSize: number }).treeSize >= fleet.services.miner.miner.latestHead()!.treeSize &&
          fleet.services.ledger.ledger.state.has(l0r.id),
      ),
    20_000,
  )
  t.ok(await until(() => homeLedger(lock!.home).state.has(l0r.id), 10_000), "the lock has L0's revocation too")
  // With refusals alongside: a member revoking a device outside its subtree; a home whose ledger kin serve follows.
  const [tabletAfter, notAncestor, busy, stillAllowed] = await Promise.all([
    ask(tablet!.home),
    kin(['revoke', '--home', other!.home, lock!.cn, '--json']),
    kin(['revoke', '--home', lock!.home, other!.cn, '--json']),
    ask(other!.home),
  ])
  expectExit(t, tabletAfter, 1, 'the tablet is denied')
  t.match(lastJson(tabletAfter.stdout), { code: 'ACCESS_REVOKED' })
  expectExit(t, notAncestor, 1, 'a revoke the ledger refuses exits 1')
  t.match(lastJson(notAncestor.stdout), { code: 'REVOKE_NOT_ALLOWED' })
  expectExit(
    t,
    busy,
    1,
    'on a home kin serve follows, kin revoke is carried out by kin serve: its ledger refuses a revoke from a non-ancestor',
  )
  t.match(lastJson(busy.stdout), { code: 'REVOKE_NOT_ALLOWED' })
  expectExit(t, stillAllowed, 0, 'the other member still unlocks')

  serve.signal('SIGTERM')
  const stopped = await serve.done
  t.equal(stopped.status, 0, 'kin serve stops cleanly')
  t.notOk(existsSync(join(lock!.home, 'ledger.lock')), 'and releases the ledger lock')

  // L0 with its broker stopped: the revocation goes into L0's ledger file, and the miner seals it on the next start.
  await fleet.stop()
  const offline = await kin(['revoke', '--home', fleet.l0.dir, other!.cn, '--json'])
  expectExit(t, offline, 0, "kin revoke on L0's home without a broker exits 0")
  const off = lastJson(offline.stdout) as { id: string; recorded: string }
  t.equal(off.recorded, 'ledger')
  await fleet.start()
  const sealed = fleet.services.miner.miner.latestHead()!
  t.ok(
    fleet.services.miner.miner.indexOf(off.id) !== undefined &&
      fleet.services.miner.miner.indexOf(off.id)! < sealed.treeSize,
    'the restarted miner sealed it',
  )
})
