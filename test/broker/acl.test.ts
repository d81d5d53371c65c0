import t from 'tap'
import { filterCovers, publishAllowed, subscribeAllowed, type AclContext } from '../../broker/acl.ts'
import type { DeviceIdentity, PairIdentity } from '../../broker/identity.ts'
import { fleetTopics, isOldSchemeTopic, parseTopic } from '../../agent/gossip/topics.ts'

const F = 'smith.home.arpa'
const topics = fleetTopics(F)
const lock = `aaaaaaaaaaaaaaaa.${F}`
const phone = `bbbbbbbbbbbbbbbb.${F}`
const mine = '0123456789abcdef'
const theirs = 'fedcba9876543210'
const ctx: AclContext = { fleet: F, ownsInvite: (cn, id) => cn === phone && id === mine, isCertified: () => true }
const device = (cn: string): DeviceIdentity => ({
  kind: 'device',
  cn,
  spkiHash: new Uint8Array(32),
  certHash: new Uint8Array(32),
  notAfter: 0,
})
const pairing: PairIdentity = { kind: 'pair', inviteId: mine }
// The topic levels of the two devices: their labels.
const lockL = 'aaaaaaaaaaaaaaaa',
  phoneL = 'bbbbbbbbbbbbbbbb'

t.test('[MQTT-4.7.1] filterCovers: a pattern covers a filter when it matches everything the filter can', async t => {
  const cases: Array<[string, string, boolean]> = [
    ['a/b', 'a/b', true],
    ['a/b', 'a/c', false],
    ['a/b', 'a', false],
    ['a/b', 'a/b/c', false],
    ['a/+', 'a/b', true],
    ['a/+', 'a/+', true],
    ['a/+', 'a/#', false],
    ['a/+', 'a', false],
    ['a/+', 'a/b/c', false],
    ['a/#', 'a', true], // [MQTT-4.7.1-2] "a/#" also matches "a"
    ['a/#', 'a/#', true],
    ['a/#', 'a/b/+', true],
    ['a/#', 'a/+/#', true],
    ['a/#', '#', false],
    ['a/#', '+/b', false],
    ['a/b', '+/b', false],
    ['a/b', '#', false],
    ['#', 'anything/at/all', true],
    ['+/b', 'a/b', true],
  ]
  for (const [pattern, filter, want] of cases)
    t.equal(filterCovers(pattern, filter), want, `${pattern} covers ${filter}: ${want}`)
})

t.test(
  "a device publishes on its own submit and sync request, any fleet inbox under its own CN, and its invites' client leaves",
  async t => {
    const allowed = [topics.submit(lock), topics.syncReq(lock), topics.inbox(phone, lock), topics.inbox(lock, lock)]
    for (const topic of allowed) t.ok(publishAllowed(device(lock), topic, ctx), topic)
    for (const leaf of ['request', 'authorize', 'csr'] as const)
      t.ok(publishAllowed(device(phone), topics.pair(mine, leaf), ctx), `phone: ${leaf}`)
    const refused = [
      topics.submit(phone),
      topics.syncReq(phone),
      topics.syncResp(lock),
      topics.head,
      topics.events,
      `${topics.base}/dev/not-a-device/inbox/${lockL}`,
      `${topics.base}/dev/${lockL}/inbox/${lockL}/extra`,
      `${topics.base}/dev/${lockL}/inbox`,
      `${topics.base}/dev/${lockL}`,
      // [DESIGN "Bounded inputs"] an inbox message names its true sender: never another device's label
      topics.inbox(phone, phone),
      topics.inbox(lock, phone),
      `${topics.base}/dev/${phoneL}/inbox/someone`,
      topics.inbox(phone, '+'),
      // the CN in place of the label (the scheme before dotless topics), and another fleet's topic id
      `${topics.base}/dev/${phone}/inbox/${lock}`,
      `${topics.base}/ledger/submit/${lock}`,
      `kin/smith_home_arpa_x/ledger/submit/${lockL}`,
      topics.pair(mine, 'request'), // the lock did not register this invite
      `kin/other_fleet/ledger/submit/${lockL}`,
      '$SYS/broker/x',
      'elsewhere',
    ]
    for (const topic of refused) t.notOk(publishAllowed(device(lock), topic, ctx), `lock may not publish ${topic}`)
    t.notOk(publishAllowed(device(phone), topics.pair(mine, 'cert'), ctx), "the CA's answer is L0's alone")
    t.notOk(publishAllowed(device(phone), topics.pair(theirs, 'authorize'), ctx), "another parent's invite")
    t.notOk(publishAllowed(device(phone), `${topics.base}/pair/${mine}/request/x`, ctx), 'a pairing leaf is one level')
  },
)

t.test('a pairing session publishes only its own request and csr leaves', async t => {
  for (const leaf of ['request', 'csr', 'authorize'] as const)
    t.ok(publishAllowed(pairing, topics.pair(mine, leaf), ctx), leaf)
  for (const topic of [
    topics.pair(mine, 'cert'),
    topics.pair(theirs, 'request'),
    topics.submit(lock),
    topics.inbox(phone, lock),
    `${topics.base}/pair/${mine}`,
  ]) {
    t.notOk(publishAllowed(pairing, topic, ctx), topic)
  }
})

t.test('a device subscribes to head, events, its own sync response and inbox, and its own invites', async t => {
  const allowed = [topics.head, topics.events, topics.syncResp(lock), topics.inboxAll(lock), topics.inbox(lock, phone)]
  for (const f of allowed) t.ok(subscribeAllowed(device(lock), f, ctx), f)
  t.ok(subscribeAllowed(device(phone), topics.pairAll(mine), ctx), 'own invite, all leaves')
  t.ok(subscribeAllowed(device(phone), topics.pair(mine, 'cert'), ctx), 'own invite, one leaf')
  t.ok(subscribeAllowed(device(phone), `${topics.base}/pair/${mine}/+`, ctx), 'own invite, + leaf')
  const refused = [
    topics.inboxAll(phone),
    topics.inbox(phone, lock),
    `${topics.base}/dev/${lockL}/inbox/#`,
    topics.syncResp(phone),
    topics.submitAll,
    topics.submit(lock),
    topics.syncReqAll,
    `${topics.base}/dev/+/inbox/+`,
    `${topics.base}/dev/+/inbox/${lockL}`,
    `${topics.base}/ledger/#`,
    `${topics.base}/ledger/+`,
    `${topics.base}/#`,
    'kin/#',
    '#',
    '+/+/ledger/head',
    `${topics.base}/pair/+/cert`,
    `${topics.base}/pair/#`,
    topics.pairAll(theirs),
    '$SYS/#',
  ]
  for (const f of refused) t.notOk(subscribeAllowed(device(lock), f, ctx), `lock may not subscribe ${f}`)
  t.notOk(subscribeAllowed(device(lock), topics.pairAll(mine), ctx), "the phone's invite is not the lock's")
  t.notOk(subscribeAllowed(device(phone), `${topics.base}/pair/+/#`, ctx), 'a wildcard invite id reaches other invites')
})

t.test('a pairing session subscribes only under its own pairing topic', async t => {
  for (const f of [topics.pairAll(mine), topics.pair(mine, 'authorize'), topics.pair(mine, 'cert')])
    t.ok(subscribeAllowed(pairing, f, ctx), f)
  for (const f of [
    topics.pairAll(theirs),
    `${topics.base}/pair/+/cert`,
    topics.head,
    topics.inboxAll(phone),
    'kin/#',
    '#',
  ])
    t.notOk(subscribeAllowed(pairing, f, ctx), f)
})

t.test("a freshly enrolled device without its certified event in L0's ledger may only submit", async t => {
  const fresh: AclContext = { ...ctx, isCertified: () => false }
  t.ok(publishAllowed(device(lock), topics.submit(lock), fresh), 'its own submit topic')
  for (const topic of [topics.syncReq(lock), topics.inbox(phone, lock), topics.submit(phone)])
    t.notOk(publishAllowed(device(lock), topic, fresh), topic)
  for (const f of [topics.head, topics.events, topics.inboxAll(lock), topics.syncResp(lock)])
    t.notOk(subscribeAllowed(device(lock), f, fresh), f)
  t.ok(publishAllowed(pairing, topics.pair(mine, 'csr'), fresh), 'pairing sessions are not affected')
})

t.test('topics hold no dotted level: the fleet id and device labels, built and parsed back to CNs', async t => {
  t.equal(topics.base, 'kin/smith_home_arpa')
  t.equal(topics.inbox(phone, lock), `kin/smith_home_arpa/dev/${phoneL}/inbox/${lockL}`)
  t.equal(topics.submit(lock), `kin/smith_home_arpa/ledger/submit/${lockL}`)
  t.equal(topics.syncReq(lock), `kin/smith_home_arpa/ledger/sync/${lockL}/req`)
  for (const topic of [
    topics.submit(lock),
    topics.syncReq(lock),
    topics.syncResp(lock),
    topics.inbox(phone, lock),
    topics.inboxAll(lock),
    topics.head,
    topics.events,
    topics.pair(mine, 'csr'),
  ]) {
    t.notOk(
      topic.split('/').some(level => level.includes('.')),
      `no dot in ${topic}`,
    )
    t.notOk(isOldSchemeTopic(topic), topic)
  }
  t.same(parseTopic(F, topics.inbox(phone, lock)), { kind: 'inbox', target: phone, sender: lock })
  t.same(parseTopic(F, topics.submit(lock)), { kind: 'submit', cn: lock })
  t.same(parseTopic(F, topics.syncResp(phone)), { kind: 'syncResp', cn: phone })
  t.same(parseTopic(F, topics.pair(mine, 'cert')), { kind: 'pair', inviteId: mine, rest: ['cert'] })
  t.equal(parseTopic('smith.home', topics.head), undefined, "another fleet's topics are not this one's")
  t.equal(parseTopic(F, `${topics.base}/ledger/submit/${lock}`), undefined, 'a CN is not a label level')
  t.ok(isOldSchemeTopic(`kin/${F}/ledger/head`), 'the fleet domain as a level')
  t.ok(isOldSchemeTopic(`kin/+/dev/${lock}/inbox/+`), 'a CN as a level')
  t.notOk(isOldSchemeTopic('other/a.b'), 'only kinship topics')
  t.throws(
    () => topics.submit(`${lockL}.other.fleet`),
    { code: 'CERT_NAMES' },
    'a name of another fleet has no level here',
  )
  t.throws(
    () => topics.inbox(phone, `a.b.${F}`),
    { code: 'CERT_NAMES' },
    'a label with a dot cannot stand as one level',
  )
})
