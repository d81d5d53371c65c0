import t from 'tap'
import {
  connectDevice,
  end,
  enrollDirect,
  logRecord,
  makeL0Home,
  nextMessage,
  publishRefused,
  startTestL0,
  subscribeGranted,
  submission,
  withHomeLedger,
} from './_fleet.ts'

// A dotted fleet domain: the scheme before dotless topics wrote it as a level (NATS refuses that, RabbitMQ splits it).
const l0 = await makeL0Home({ domain: 'smith.home.arpa' })
const { phone, tablet, lock } = await withHomeLedger(l0, async ledger => {
  const phone = await enrollDirect(l0, ledger, l0.self, { role: 'member' })
  const tablet = await enrollDirect(l0, ledger, l0.self, { role: 'member' })
  const lock = await enrollDirect(l0, ledger, phone, { role: 'device', kind: 'lock' })
  return { phone, tablet, lock }
})
const { services, logs } = await startTestL0(l0)
t.teardown(() => services.close())
const topics = services.topics
const label = (cn: string): string => cn.slice(0, 16)

t.test('the topics a device uses hold no dot in any level: the fleet id and labels', async t => {
  t.equal(topics.base, 'kin/smith_home_arpa')
  for (const topic of [
    topics.submit(lock.cn),
    topics.syncReq(lock.cn),
    topics.syncResp(lock.cn),
    topics.inbox(phone.cn, lock.cn),
    topics.inboxAll(lock.cn),
    topics.head,
    topics.events,
  ]) {
    t.notOk(
      topic.split('/').some(level => level.includes('.')),
      topic,
    )
  }
  t.equal(topics.inbox(phone.cn, lock.cn), `kin/smith_home_arpa/dev/${label(phone.cn)}/inbox/${label(lock.cn)}`)
})

t.test('[MQTT-4.7.1] + and # filters match the dotless topics over the real broker', async t => {
  const c = await connectDevice(services, tablet)
  t.same(await subscribeGranted(c, [topics.inboxAll(tablet.cn), topics.head]), [1, 1])
  const got: string[] = []
  const two = new Promise<void>(resolve =>
    c.on('message', topic => {
      if (topic.includes('/dev/')) {
        got.push(topic)
        if (got.length === 2) resolve()
      }
    }),
  )
  const p = await connectDevice(services, phone)
  const k = await connectDevice(services, lock)
  await p.publishAsync(topics.inbox(tablet.cn, phone.cn), Buffer.from('from the phone'), { qos: 1 })
  await k.publishAsync(topics.inbox(tablet.cn, lock.cn), Buffer.from('from the lock'), { qos: 1 })
  await two
  t.same(
    got.sort(),
    [topics.inbox(tablet.cn, phone.cn), topics.inbox(tablet.cn, lock.cn)].sort(),
    "one + filter gets every sender's level",
  )
  await end(k)
  // L0's services read every submission through `ledger/submit/+`: the phone's label level names it as the sender.
  await p.publishAsync(topics.submit(phone.cn), Buffer.from('not a submission'), { qos: 1 })
  const rec = await logRecord(logs, r => r.event === 'payload.dropped' && r.topic === topics.submit(phone.cn))
  t.equal(rec.from, phone.cn, 'the miner read the sender CN back from the label level')
  await end(p)
  await end(c)
})

t.test(
  'the ACL compares the label level with the session CN: publishing under another label closes the connection',
  async t => {
    const watcher = await connectDevice(services, tablet)
    t.same(await subscribeGranted(watcher, [topics.inboxAll(tablet.cn)]), [1])
    const seen: string[] = []
    watcher.on('message', topic => seen.push(topic))
    const asPhone = topics.inbox(tablet.cn, phone.cn)
    const rec = await publishRefused(services, logs, lock, asPhone, Buffer.from("in the phone's name"))
    t.equal(rec.cn, lock.cn)
    t.equal(rec.code, 'ACL_DENIED')
    const p = await connectDevice(services, phone)
    const marker = nextMessage(watcher, asPhone)
    await p.publishAsync(asPhone, Buffer.from('marker'), { qos: 1 })
    t.equal((await marker).toString(), 'marker')
    t.same(seen, [asPhone], "only the true sender's message arrived")
    await end(p)
    await end(watcher)
  },
)

t.test(
  "a device of the old scheme: a dotted subscribe gets SUBACK 0x80 and TOPIC_OLD_SCHEME in L0's log, the session goes on",
  async t => {
    const c = await connectDevice(services, lock)
    const old = [
      `kin/${l0.domain}/ledger/head`,
      `kin/${l0.domain}/dev/${lock.cn}/inbox/+`,
      `kin/${l0.domain}/ledger/sync/${lock.cn}/resp`,
    ]
    t.same(
      await subscribeGranted(c, [...old, topics.head]),
      [128, 128, 128, 1],
      'the dotted filters fail, the dotless one is granted',
    )
    for (const topic of old) {
      const rec = await logRecord(logs, r => r.event === 'acl.refused' && r.op === 'subscribe' && r.topic === topic)
      t.equal(rec.code, 'TOPIC_OLD_SCHEME', topic)
      t.equal(rec.cn, lock.cn)
      t.match(rec.message, /no dots/)
    }
    t.ok(c.connected, 'still connected')
    // A dotless filter the ACL refuses is an ACL refusal, not an old-scheme one.
    t.same(await subscribeGranted(c, [topics.inboxAll(phone.cn)]), [128])
    const acl = await logRecord(
      logs,
      r => r.event === 'acl.refused' && r.op === 'subscribe' && r.topic === topics.inboxAll(phone.cn),
    )
    t.equal(acl.code, 'ACL_DENIED')
    await end(c)
  },
)

t.test(
  'a device of the old scheme: a dotted publish closes the connection with TOPIC_OLD_SCHEME; nothing enters the ledger',
  async t => {
    const size = services.ledger.ledger.size
    const topic = `kin/${l0.domain}/ledger/submit/${lock.cn}`
    const submitted = Buffer.from(submission(services.ledger.ledger.state.log.slice(0, 1)))
    const rec = await publishRefused(services, logs, lock, topic, submitted)
    t.equal(rec.code, 'TOPIC_OLD_SCHEME')
    t.equal(rec.cn, lock.cn)
    t.equal(services.ledger.ledger.size, size, 'the ledger did not grow')
  },
)
