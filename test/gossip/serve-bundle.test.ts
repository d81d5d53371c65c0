import t from 'tap'
import { join } from 'node:path'
import { Home } from '../../runtime/home.ts'
import { expectExit, kin, lastJson, startKin } from '../enroll/_harness.ts'
import { enrollThroughL0, gossipFleet } from './_fleet.ts'

// DESIGN.md "Access decision" step 5 over mutual TLS: a lock with no link to L0 lacks the guest's proofs; the
// guest carries its own bundle file (kin access --bundle) in the request line and is admitted; with one the lock
// cannot link to its head, denied.
t.test("kin serve on an offline lock: the guest's bundle sent with kin access --bundle admits it", async t => {
  const fleet = await gossipFleet(t, ['admin', 'member', 'device'])
  const lock = fleet.devices[2]!
  expectExit(t, await kin(['sync', '--home', lock.home]), 0, 'the lock syncs')
  const lockHead = fleet.services.miner.miner.latestHead()!
  const config = new Home(lock.home).readConfig()
  delete config.broker
  delete config['l0Cn']
  new Home(lock.home).writeConfig(config)

  const guest = await enrollThroughL0(fleet, 'guest', "guest's phone")
  await fleet.services.seal()
  expectExit(t, await kin(['sync', '--home', guest.home]), 0, 'the guest syncs')
  const bundle = join(guest.home, 'guest.bundle')
  // With a consistency proof from the head the lock holds: the offline rule (PROTOCOL.md §11.3) needs it.
  expectExit(
    t,
    await kin([
      'ledger',
      'bundle',
      guest.cn,
      '--home',
      guest.home,
      '--known-size',
      String(lockHead.treeSize),
      '--out',
      bundle,
    ]),
    0,
    'the guest exports its bundle',
  )
  const unanchored = join(guest.home, 'unanchored.bundle')
  expectExit(
    t,
    await kin(['ledger', 'bundle', guest.cn, '--home', guest.home, '--out', unanchored]),
    0,
    'and one without that proof',
  )

  const serve = startKin(['serve', '--home', lock.home, '--port', '0', '--json'])
  t.teardown(() => serve.kill())
  const listening = JSON.parse(await serve.firstLine) as { port: number }
  const target = `127.0.0.1:${listening.port}`
  const ask = (extra: string[]) =>
    kin(['access', '--home', guest.home, '--target', target, '--action', 'unlock', '--json', ...extra])
  // Without a file the two negotiate (serve-proof.test.ts): the lock states its head, the guest sends what it lacks.
  const without = await ask([])
  expectExit(t, without, 0, 'without a bundle file the guest negotiates an offline proof and is admitted')
  t.same((lastJson(without.stdout)['sent'] as { kind: string }).kind, 'proof')
  const notLinked = await ask(['--bundle', unanchored])
  expectExit(t, notLinked, 1, 'a bundle the lock cannot link to its own head is refused')
  t.equal(lastJson(notLinked.stdout)['code'], 'HEAD_UNPROVEN')
  const withBundle = await ask(['--bundle', bundle])
  expectExit(t, withBundle, 0, 'with its bundle the guest is admitted')
  t.equal(lastJson(withBundle.stdout)['code'], 'ALLOW')
})
