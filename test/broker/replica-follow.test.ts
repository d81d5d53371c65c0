import t from 'tap'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { memoryStorage } from '../../agent/portable/memory-storage.ts'
import { createEnrollRequest } from '../../agent/enroll/request.ts'
import { authorizeChild } from '../../agent/enroll/parent.ts'
import { PersistentLedger } from '../../agent/ledger/persistent.ts'
import { Replica } from '../../agent/ledger/replica.ts'
import { decodeLedgerResponse } from '../../agent/gossip/ledger-wire.ts'
import { encodeSyncRequest } from '../../agent/ledger/sync.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import {
  connectDevice,
  end,
  enrollDirect,
  makeL0Home,
  nextMessage,
  nowSeconds,
  startTestL0,
  subscribeGranted,
  submission,
  withHomeLedger,
} from './_fleet.ts'

// The contract with the device side: what L0 publishes is what agent/ledger/replica.ts consumes, unchanged.

const l0 = await makeL0Home()
const phone = await withHomeLedger(l0, ledger => enrollDirect(l0, ledger, l0.self, { role: 'member' }))
const { services } = await startTestL0(l0)
t.teardown(() => services.close())
const topics = services.topics
const minerKey = services.ledger.ledger.state.genesis!.body.minerKey
const keys = await createEnrollRequest(nodeCrypto, nodePki, { kind: 'camera', name: 'camera' })

function authorizations(n: number): EncodedEvent[] {
  const now = nowSeconds()
  return Array.from({ length: n }, () =>
    authorizeChild(
      nodeCrypto,
      services.ledger.ledger,
      { cn: phone.cn, ledgerSeed: phone.ledgerSeed },
      keys.request,
      { role: 'device', notAfter: now + 86400 },
      now,
    ),
  )
}

t.test(
  'a device replica catches up by sync rounds, then follows ledger/events to the same head and the same log as L0',
  async t => {
    // Enough events that catching up takes more than one round.
    const client = await connectDevice(services, phone)
    const burst = authorizations(300)
    await client.publishAsync(topics.submit(phone.cn), Buffer.from(submission(burst.slice(0, 200))), { qos: 1 })
    await client.publishAsync(topics.submit(phone.cn), Buffer.from(submission(burst.slice(200))), { qos: 1 })
    while (!services.ledger.ledger.state.has(burst[299]!.idHex)) await new Promise(r => setTimeout(r, 10))
    await services.seal()

    const storage = memoryStorage()
    const ledger = await PersistentLedger.open(nodeCrypto, await storage.openAppendFile('ledger.cbor'))
    const replica = await Replica.open(nodeCrypto, ledger, await storage.openAppendFile('sync.cbor'), { minerKey })
    t.same(await subscribeGranted(client, [topics.syncResp(phone.cn), topics.events]), [1, 1])

    let rounds = 0
    for (;;) {
      const reply = nextMessage(client, topics.syncResp(phone.cn))
      await client.publishAsync(topics.syncReq(phone.cn), Buffer.from(encodeSyncRequest(replica.syncRequest())), {
        qos: 1,
      })
      const bytes = new Uint8Array(await reply)
      t.equal(decodeLedgerResponse(bytes).kind, 'sync')
      const outcome = await replica.applySyncResponse(bytes, minerKey, nowSeconds())
      rounds++
      if (!outcome.more) {
        t.equal(outcome.status, 'advanced')
        break
      }
      if (rounds > 10) throw new Error('no end to the sync rounds')
    }
    t.ok(rounds >= 2, `caught up in ${rounds} rounds`)
    t.equal(replica.headId, services.miner.miner.latestHeadId(), "the replica holds L0's head")

    // Then it follows: each announcement on ledger/events advances it without a request.
    for (const n of [1, 5]) {
      const announced = nextMessage(client, topics.events)
      await client.publishAsync(topics.submit(phone.cn), Buffer.from(submission(authorizations(n))), { qos: 1 })
      const outcome = await replica.applySyncResponse(new Uint8Array(await announced), minerKey, nowSeconds())
      t.equal(outcome.status, 'advanced', `${n} new event(s) adopted from the announcement`)
      t.equal(outcome.added, n)
      t.equal(replica.headId, services.miner.miner.latestHeadId())
    }
    t.same(ledger.ledger.state.ids(), services.ledger.ledger.state.ids(), 'the same events in the same order as L0')
    await replica.close()
    await ledger.close()
    await end(client)
  },
)
