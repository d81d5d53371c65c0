import t from 'tap'
import {
  closed,
  connectDevice,
  end,
  enrollDirect,
  logRecord,
  makeInvite,
  makeL0Home,
  nextMessage,
  publishRefused,
  registerInvite,
  startTestL0,
  subscribeGranted,
  submission,
  tryPairing,
  withHomeLedger,
} from './_fleet.ts'

const l0 = await makeL0Home()
const { phone, tablet, lock } = await withHomeLedger(l0, async ledger => {
  const phone = await enrollDirect(l0, ledger, l0.self, { role: 'member' })
  const tablet = await enrollDirect(l0, ledger, l0.self, { role: 'member' })
  const lock = await enrollDirect(l0, ledger, phone, { role: 'device', kind: 'lock' })
  return { phone, tablet, lock }
})
const { services, logs } = await startTestL0(l0)
t.teardown(() => services.close())
const topics = services.topics

// The phone registers an invite, as `kin invite` does, so that its ACL covers that invite's pairing topics.
// (No assertion at the top level: tap would end the root test while setup still awaits.)
const phoneClient = await connectDevice(services, phone)
t.teardown(() => end(phoneClient))
const phoneInvite = makeInvite(phone, { role: 'device' })
const phoneInviteReply = await registerInvite(services, phoneClient, phone, phoneInvite.registration)

t.test('L0 accepts an invite registered by a member and answers on its inbox', async t => {
  t.same(phoneInviteReply, ['invite-ok', phoneInvite.invite.inviteId])
  t.equal(services.invites.get(phoneInvite.invite.inviteId)?.state, 'pending')
  await logRecord(
    logs,
    r => r.event === 'invite.registered' && r.inviteId === phoneInvite.invite.inviteId && r.parentCn === phone.cn,
  )
})

t.test('a device subscribes to what the topic table allows it', async t => {
  const c = await connectDevice(services, lock)
  t.same(
    await subscribeGranted(c, [topics.head, topics.events, topics.syncResp(lock.cn), topics.inboxAll(lock.cn)]),
    [1, 1, 1, 1],
  )
  await end(c)
  t.same(
    await subscribeGranted(phoneClient, [topics.pairAll(phoneInvite.invite.inviteId)]),
    [1],
    'the parent follows its own invite',
  )
})

t.test('[MQTT-3.9.3] forbidden subscriptions get SUBACK 0x80 and deliver nothing; the session goes on', async t => {
  const c = await connectDevice(services, tablet)
  const forbidden = [
    topics.inboxAll(phone.cn),
    topics.pairAll(phoneInvite.invite.inviteId),
    'kin/#',
    `${topics.base}/#`,
    `${topics.base}/ledger/submit/+`,
    `${topics.base}/dev/+/inbox/+`,
    topics.inbox('+', tablet.cn),
    `${topics.base}/pair/+/csr`,
    '#',
    '$SYS/#',
  ]
  t.same(
    await subscribeGranted(c, forbidden),
    forbidden.map(() => 128),
  )
  t.ok(c.connected, 'still connected')
  const rec = await logRecord(logs, r => r.event === 'acl.refused' && r.op === 'subscribe' && r.topic === 'kin/#')
  t.equal(rec.cn, tablet.cn)
  t.equal(rec.code, 'ACL_DENIED')
  // Nothing leaks through a refused filter: the phone's inbox gets a message, then the tablet's own inbox a marker.
  t.same(await subscribeGranted(c, [topics.inboxAll(tablet.cn)]), [1])
  const first = new Promise<string>(resolve => c.once('message', topic => resolve(topic)))
  await phoneClient.publishAsync(topics.inbox(phone.cn, phone.cn), Buffer.from('for the phone only'), { qos: 1 })
  await phoneClient.publishAsync(topics.inbox(tablet.cn, phone.cn), Buffer.from('marker'), { qos: 1 })
  t.equal(await first, topics.inbox(tablet.cn, phone.cn), "the first message the tablet sees is its own inbox's marker")
  await end(c)
})

t.test(
  '[MQTT-3.3.5-2] publishing as another CN on submit closes the connection; nothing enters the ledger',
  async t => {
    const size = services.ledger.ledger.size
    const rec = await publishRefused(
      services,
      logs,
      lock,
      topics.submit(phone.cn),
      Buffer.from(submission(services.ledger.ledger.state.log.slice(0, 1))),
    )
    t.equal(rec.cn, lock.cn)
    t.equal(services.ledger.ledger.size, size)
    t.notOk(
      logs.some(r => r.event === 'ledger.refused' && r.from === phone.cn),
      'the service never saw it',
    )
  },
)

t.test('only L0 publishes ledger/head: a device that tries is disconnected and subscribers see nothing', async t => {
  const watcher = await connectDevice(services, tablet)
  const retained = nextMessage(watcher, topics.head)
  t.same(await subscribeGranted(watcher, [topics.head]), [1])
  t.same(
    new Uint8Array(await retained),
    services.miner.miner.latestHeadBytes(),
    "the miner's head comes first, retained",
  )
  const first = nextMessage(watcher, topics.head)
  const c = await connectDevice(services, lock)
  const gone = closed(c)
  c.publish(topics.head, Buffer.from('forged head'), { qos: 1 })
  await gone
  await logRecord(
    logs,
    r => r.event === 'acl.refused' && r.op === 'publish' && r.topic === topics.head && r.cn === lock.cn,
  )
  await services.publish(topics.head, new TextEncoder().encode('from L0'))
  t.equal((await first).toString(), 'from L0', 'the forged head never reached a subscriber')
  await end(watcher)
})

t.test("a device publishes to another device's inbox (challenges) under its own CN, and it arrives", async t => {
  const c = await connectDevice(services, lock)
  const got = nextMessage(phoneClient, topics.inbox(phone.cn, lock.cn))
  await c.publishAsync(topics.inbox(phone.cn, lock.cn), Buffer.from('challenge'), { qos: 1 })
  t.equal((await got).toString(), 'challenge')
  await end(c)
})

t.test(
  '[DESIGN "Bounded inputs"] an inbox message under another sender label closes the connection and reaches nobody',
  async t => {
    const firstTopic = new Promise<string>(resolve => phoneClient.once('message', topic => resolve(topic)))
    const asTablet = topics.inbox(phone.cn, tablet.cn)
    const rec = await publishRefused(services, logs, lock, asTablet, Buffer.from("ask in the tablet's name"))
    t.equal(rec.cn, lock.cn)
    t.equal(rec.code, 'ACL_DENIED')
    const tabletClient = await connectDevice(services, tablet)
    await tabletClient.publishAsync(asTablet, Buffer.from('marker'), { qos: 1 })
    t.equal(await firstTopic, asTablet, 'the first message the phone sees is the real marker')
    await end(tabletClient)
  },
)

t.test(
  "L0 answers an invite registration only to the session of the parent that signed it (no reflection through L0's inbox)",
  async t => {
    const c = await connectDevice(services, lock)
    const reflected = makeInvite(phone, { role: 'device' })
    const firstTopic = new Promise<string>(resolve => phoneClient.once('message', topic => resolve(topic)))
    await c.publishAsync(topics.inbox(l0.cn, lock.cn), Buffer.from(reflected.registration), { qos: 1 })
    const rec = await logRecord(logs, r => r.event === 'invite.refused' && r.inviteId === reflected.invite.inviteId)
    t.equal(rec.code, 'INBOX_SENDER_MISMATCH')
    t.equal(rec.sender, lock.cn)
    t.equal(services.invites.get(reflected.invite.inviteId), undefined, 'nothing registered')
    await c.publishAsync(topics.inbox(phone.cn, lock.cn), Buffer.from('marker'), { qos: 1 })
    t.equal(await firstTopic, topics.inbox(phone.cn, lock.cn), 'the phone got no answer from L0, only the marker')
    await end(c)
  },
)

t.test("a device may not publish on another parent's pairing topic", async () => {
  const c = await connectDevice(services, tablet)
  const gone = closed(c)
  c.publish(topics.pair(phoneInvite.invite.inviteId, 'authorize'), Buffer.from('x'), { qos: 1 })
  await gone
  await logRecord(
    logs,
    r =>
      r.event === 'acl.refused' &&
      r.cn === tablet.cn &&
      r.topic === topics.pair(phoneInvite.invite.inviteId, 'authorize'),
  )
})

t.test('a pairing session stays under its own pairing topic', async t => {
  const other = makeInvite(tablet, { role: 'device' })
  const tabletClient = await connectDevice(services, tablet)
  t.same(await registerInvite(services, tabletClient, tablet, other.registration), ['invite-ok', other.invite.inviteId])

  const login = await tryPairing(services, phoneInvite.invite.inviteId, phoneInvite.secrets.loginProof)
  const child = login.client!
  t.ok(child.connected, "the pairing login of the phone's invite works")
  const id = phoneInvite.invite.inviteId
  t.same(await subscribeGranted(child, [topics.pair(id, 'authorize'), topics.pair(id, 'cert')]), [1, 1])
  t.same(
    await subscribeGranted(child, [
      topics.pairAll(other.invite.inviteId),
      topics.head,
      topics.inboxAll(l0.cn),
      'kin/#',
    ]),
    [128, 128, 128, 128],
  )
  // The child's request reaches the parent, which follows its invite.
  t.same(await subscribeGranted(phoneClient, [topics.pairAll(id)]), [1])
  const request = nextMessage(phoneClient, topics.pair(id, 'request'))
  await child.publishAsync(topics.pair(id, 'request'), Buffer.from('sealed request'), { qos: 1 })
  t.equal((await request).toString(), 'sealed request')
  const gone = closed(child)
  child.publish(topics.pair(other.invite.inviteId, 'request'), Buffer.from('x'), { qos: 1 })
  await gone
  const rec = await logRecord(
    logs,
    r => r.event === 'acl.refused' && r.op === 'publish' && r.kind === 'pair' && r.inviteId === id,
  )
  t.equal(rec.topic, topics.pair(other.invite.inviteId, 'request'))
  await end(tabletClient)
})
