// The attack suite on a live fleet (real broker, pairing codes, miner, gossip, mutual TLS): no attack let in, no control turned away.
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runAttacks, tally } from '../../sim/attacks/index.ts'

// The cases the suite must hold (issue "The fleet simulator", point 2), by id; the suite may hold more.
const REQUIRED_ATTACKS = [
  'rogue-ca',
  'mis-issued',
  'stolen-certificate',
  'san-parent',
  'fake-lock-eve-ca',
  'challenge-replayed',
  'bundle-event-byte',
  'bundle-forked-head',
  'ledger-flipped-byte',
  'ledger-deleted-event',
  'ledger-reordered',
  'head-eve-signed',
  'head-fork',
  'head-inconsistent',
  'policy-narrowed',
  'revoked-ancestor',
  'guest-expired',
  // A stolen key, a hostile RSA key, floods and spam, old certificates, a rolled-back ledger file.
  'backdated-authorize',
  'backdated-policy',
  'backdated-revoke',
  'challenge-slow-rsa',
  'challenge-reflected',
  'half-open-flood',
  'certified-not-issued',
  'policy-not-delegator',
  'rekey-not-parent',
  'spam-flood',
  'spam-bundles',
  'old-parent-marker',
  'ledger-rolled-back',
  // A rogue root with the fleet root's name and key identifier, at the lock and at L0's broker.
  'rogue-ca-same-key-id',
  'rogue-ca-same-key-id-login',
]
const REQUIRED_CONTROLS = ['guest-unlocks', 'owner-unlocks', 'challenge-good', 'bundle-good']

const dir = mkdtempSync(join(tmpdir(), 'kin-sim-attacks-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const result = await runAttacks({ dir })
const byId = new Map(result.rows.map(r => [r.id, r]))

t.test('every required attack and control ran, once', async t => {
  t.equal(byId.size, result.rows.length, 'ids are unique')
  for (const id of REQUIRED_ATTACKS) t.equal(byId.get(id)?.kind, 'attack', `attack ${id} ran`)
  for (const id of REQUIRED_CONTROLS) t.equal(byId.get(id)?.kind, 'control', `control ${id} ran`)
  t.same(
    new Set(result.rows.map(r => r.family)),
    new Set(['identity', 'challenge', 'bundle', 'ledger', 'miner', 'lifecycle']),
    'every family ran',
  )
})

t.test('0 false accepts, 0 false rejects, every code in its expected set', async t => {
  const counted = tally(result.rows)
  t.equal(counted.falseAccepts, 0, 'no attack was let in')
  t.equal(counted.falseRejects, 0, 'no control was turned away')
  t.equal(counted.errors, 0, 'every case ran')
  for (const r of result.rows) {
    t.ok(r.expected.includes(r.actual), `${r.kind} ${r.id}: ${r.actual} in ${r.expected.join(' / ')} — ${r.detail}`)
    if (r.kind === 'attack') t.ok(r.refused && r.actual !== 'ALLOW' && r.actual !== 'ACCEPTED', `${r.id} was refused`)
    else t.notOk(r.refused, `${r.id} went through`)
  }
  t.equal(result.tally.ok, true)
})

t.test('specific refusals: the stage that should refuse is the one that did', async t => {
  t.equal(byId.get('rogue-ca')!.actual, 'CERT_CHAIN')
  t.match(
    byId.get('rogue-ca-same-key-id')!,
    { actual: 'CERT_CHAIN', detail: /^the handshake completed and the lock answered: .*; 8\/8 CERT_CHAIN attempts$/ },
    'a rogue root copying the key identifier: every attempt answered with its code, none reset',
  )
  t.match(
    byId.get('rogue-ca-same-key-id-login')!,
    {
      actual: 'CERT_CHAIN',
      detail: /^CONNACK 5 \(not authorized\); L0 logged login.refused CERT_CHAIN: .*; 4\/4 CERT_CHAIN attempts$/,
    },
    "the same leaf at L0's broker: CONNACK 5 and a login.refused line every time, no dropped login",
  )
  t.equal(byId.get('mis-issued')!.actual, 'CERT_UNBOUND')
  t.equal(byId.get('stolen-certificate')!.actual, 'TLS_HANDSHAKE')
  t.match(byId.get('stolen-certificate')!.detail, /alert 51/, 'the lock sent decrypt_error')
  t.equal(byId.get('own-key-bare-client')!.actual, 'ALLOW', 'the same bare client with the right key gets in')
  t.equal(byId.get('san-parent-uncertified')!.actual, 'CERT_NOT_CERTIFIED')
  t.equal(byId.get('san-parent')!.actual, 'ACCESS_SAN_PARENT')
  t.equal(
    byId.get('old-parent-marker')!.actual,
    'CERT_OLD_PARENT_MARKER',
    'a certificate with DNS:parent.<P> is refused by its own code',
  )
  t.match(byId.get('fake-lock-eve-ca')!.detail, /0 request bytes/, 'nothing reached the fake lock')
  t.equal(byId.get('challenge-replayed')!.actual, 'CHALLENGE_REPLAYED')
  t.equal(byId.get('half-open-flood')!.actual, 'CONNECTION_EVICTED')
  t.match(
    byId.get('half-open-flood')!.detail,
    /the guest got ALLOW while the flood ran; the lock closed every flood socket: 256 opened/,
    'the guest was let in during the flood, and no flood socket stayed',
  )
  t.match(byId.get('bundle-good')!.detail, /without it: ACCESS_MISSING_PROOF/, 'the offline lock needed the bundle')
  t.match(byId.get('bundle-every-byte')!.detail, /changed bundles/)
  for (const id of ['head-eve-signed', 'head-fork', 'head-inconsistent'])
    t.match(byId.get(id)!.detail, /^(\d+)\/\1 devices raised/, `${id}: every follower raised the alarm`)
  t.equal(byId.get('revoked-ancestor')!.actual, 'ACCESS_ANCESTOR_REVOKED')
  t.equal(byId.get('rekey-not-parent')!.actual, 'REKEY_NOT_PARENT', "a non-parent's rekey is refused at L0's miner")
})

t.test('the challenge cases ran over the device inbox (PROTOCOL.md §12.4), each refused at its stage', async t => {
  const rows = result.rows.filter(r => r.family === 'challenge')
  t.same(Object.fromEntries(rows.map(r => [r.id, r.actual])), {
    'challenge-good': 'ALLOW',
    'challenge-replayed': 'CHALLENGE_REPLAYED',
    'challenge-replayed-other-ask': 'CHALLENGE_UNKNOWN',
    'challenge-stolen-certificate': 'CHALLENGE_SIGNATURE',
    'challenge-slow-rsa': 'RSA_EXPONENT',
    'challenge-late': 'CHALLENGE_EXPIRED',
    'challenge-relayed': 'INBOX_SENDER_MISMATCH',
    'challenge-reflected': 'INBOX_SENDER_MISMATCH',
  })
  for (const r of rows) t.match(r.attack, /^over the inbox: /, `${r.id} says where it ran`)
  t.match(byId.get('challenge-replayed')!.detail, /already answered/, 'the lock knew the answer it had taken')
  t.match(
    byId.get('challenge-replayed-other-ask')!.detail,
    /not the one issued for request/,
    'an answer is bound to its ask',
  )
  t.match(
    byId.get('challenge-late')!.detail,
    /came \d+ s after the challenge/,
    "the lock's own clock passed the deadline",
  )
  for (const id of ['challenge-relayed', 'challenge-reflected']) {
    t.match(
      byId.get(id)!.detail,
      /asked in the name of .*the guest received nothing from the lock/,
      `${id}: the lock challenges only the session that asked`,
    )
  }
})

t.test(
  'the bundle cases ran over mutual TLS on an offline lock (DESIGN.md "Access decision" step 5), each refused at its stage',
  async t => {
    const rows = result.rows.filter(r => r.family === 'bundle')
    t.same(Object.fromEntries(rows.filter(r => r.id !== 'bundle-forked-head').map(r => [r.id, r.actual])), {
      'bundle-good': 'ALLOW',
      'bundle-event-byte': 'BUNDLE_INCLUSION',
      'bundle-head-byte': 'HEAD_SIGNATURE',
      'bundle-every-byte': 'REFUSED_ALL',
      'bundle-forged-consistency': 'HEAD_INCONSISTENT',
    })
    t.match(
      byId.get('bundle-forked-head')!.actual,
      /^HEAD_(UNPROVEN|INCONSISTENT|FORK|ROLLBACK)$/,
      "the forked miner's head is refused against the lock's own",
    )
    for (const r of rows) {
      t.match(r.attack, /^over mutual TLS: /, `${r.id} says where it ran`)
      t.match(r.detail, /^over mutual TLS/, `${r.id} was decided from the lock's answer line`)
    }
    t.match(byId.get('bundle-good')!.detail, /bundle ok/, "the lock merged the guest's bundle from its request line")
    for (const id of ['bundle-event-byte', 'bundle-head-byte', 'bundle-forked-head'])
      t.match(byId.get(id)!.detail, /bundle refused/, `${id}: the lock refused the bundle itself`)
    t.match(byId.get('bundle-every-byte')!.detail, /one request each/)
  },
)

t.test(
  "the guest's forged policy went to the miner over MQTT (PROTOCOL.md §12), and no device ever held it",
  async t => {
    const row = byId.get('policy-outsider')!
    t.equal(row.actual, 'POLICY_NOT_ANCESTOR', "the miner's refusal")
    t.match(row.attack, /^over MQTT: /)
    t.match(row.detail, /the broker acknowledged it/, "it travelled on the guest's submit topic")
    t.match(row.detail, /no head covers it: none of the \d+ ledgers/, 'the wire shows it nowhere')
  },
)

t.test("the guest's spam at the miner (DESIGN.md, Quotas): nothing of it in the ledger, no head forced", async t => {
  t.equal(byId.get('certified-not-issued')?.actual, 'CERTIFIED_NOT_ISSUED', 'a certificate the fleet CA never issued')
  t.equal(
    byId.get('policy-not-delegator')?.actual,
    'POLICY_NOT_DELEGATOR',
    'a policy from an identity that may not delegate',
  )
  t.match(
    byId.get('spam-flood')?.detail,
    /5\/5 submissions .* refused whole .*grew by 0 events/,
    'the flood refused whole, the ledger unchanged',
  )
  t.equal(byId.get('spam-bundles')?.actual, 'SEAL_ON_SCHEDULE', 'bundle requests seal nothing of their own')
})

t.test('the report holds the run', async t => {
  const { report } = result
  t.equal(report.ok, true)
  t.equal(report.attacks.length, result.rows.length)
  t.equal(
    report.attacks.filter(a => !a.refused).length,
    result.rows.filter(r => r.kind === 'control').length,
    'only the controls went through',
  )
  t.equal(report.devices.length, 9, 'L0 and the eight devices of the attacked house')
  t.same(
    report.devices
      .filter(d => d.revoked)
      .map(d => d.label)
      .sort(),
    ['L1', 'L2.2', 'L3.4'],
    'the stolen laptop, the tablet and the guest below it end revoked',
  )
  t.ok(
    report.events.some(e => e.type === 'policy') && report.events.some(e => e.type === 'revoke'),
    'the ledger shows the policy and the revocation',
  )
  t.ok(report.heads.length > 0 && report.heads.every((h, i) => h.height === i), 'heads 0..n in order')
  const guest = report.decisions.find(d => d.label.startsWith("the guest's phone opens"))!
  t.same(guest.path, ['L3.4', 'L2.2', 'L1', 'L2.1', 'L3.3'], 'the guest is judged along L3.4 → L2.2 → L1 ← L2.1 ← L3.3')
})
