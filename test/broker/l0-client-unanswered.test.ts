// L0's services on a broker that logs them in and never answers their SUBSCRIBE: the start fails with a coded
// BROKER_TIMEOUT (each SUBSCRIBE waits SUBACK_TIMEOUT_MS, then is asked again until the retry window closes) instead of
// waiting for ever with no subscription to the devices' submissions.
import t from 'tap'
import { startL0Client } from '../../broker/l0-client.ts'
import { SUBACK_TIMEOUT_MS } from '../../runtime/node/transport.ts'
import { isKinError } from '../../agent/errors.ts'
import { gossipHomes } from '../gossip/_fleet.ts'
import { silentBroker } from '../helpers/silent-broker.ts'

t.test("L0's services whose SUBSCRIBE is never answered stop with BROKER_TIMEOUT", async t => {
  const homes = await gossipHomes(t, ['admin'])
  const broker = await silentBroker(t, homes.l0.dir)
  const started = Date.now()
  const outcome = await startL0Client({ home: homes.l0.dir, broker: broker.url, subscribeRetryMs: 1000 }).then(
    async services => {
      await services.close()
      return 'started'
    },
    (err: unknown) => (isKinError(err) ? (err as { code: string }).code : `other: ${String(err)}`),
  )
  t.equal(outcome, 'BROKER_TIMEOUT', 'a coded refusal, not a start that never ends')
  t.ok(broker.subscribes.length >= 1, 'the services logged in and subscribed')
  t.comment(`gave up after ${Date.now() - started} ms (SUBACK_TIMEOUT_MS ${SUBACK_TIMEOUT_MS})`)
})
