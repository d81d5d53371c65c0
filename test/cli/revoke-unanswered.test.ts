// kin revoke on a device whose broker logs it in and then never answers its SUBSCRIBE (a NATS cluster that lost a
// node did that): the revocation is recorded here and reported pending (exit 4, EVENT_PENDING), within --timeout and
// the session's end grace, never a silent exit 0. Before, the follower's close waited for ever on that SUBSCRIBE and
// the process ran out of work with status 0 and no output.
import t from 'tap'
import { expectExit, kin, lastJson } from '../enroll/_harness.ts'
import { gossipHomes, homeLedger } from '../gossip/_fleet.ts'
import { silentBroker } from '../helpers/silent-broker.ts'

t.test('kin revoke whose broker never answers its SUBSCRIBE: exit 4, EVENT_PENDING, the event kept here', async t => {
  const homes = await gossipHomes(t, ['admin', 'device'], { start: 'all' })
  const broker = await silentBroker(t, homes.l0.dir)
  const [admin, camera] = homes.writeHomes(broker.url)

  const started = Date.now()
  const run = await kin(
    ['revoke', '--home', admin!.home, camera!.cn, '--reason', 'lost', '--timeout', '3s', '--json'],
    {
      timeoutMs: 120_000,
    },
  )
  const took = Date.now() - started
  t.ok(broker.subscribes.length > 0, 'the device logged in and subscribed')
  expectExit(t, run, 4, 'exit 4: recorded here, not sealed')
  t.match(lastJson(run.stdout), { ok: false, code: 'EVENT_PENDING', detail: { recorded: true, delivered: false } })
  t.ok(
    homeLedger(admin!.home).state.log.some(e => e.event.type === 'revoke'),
    "the revocation is in the admin's own ledger",
  )
  t.comment(`kin revoke took ${took} ms with --timeout 3s`)
})
