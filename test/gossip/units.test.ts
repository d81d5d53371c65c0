import t from 'tap'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { KinError } from '../../agent/errors.ts'
import { AccessSession } from '../../agent/access/session.ts'
import { backoffDelay } from '../../agent/gossip/backoff.ts'
import { alarmOf, isAlarm } from '../../agent/gossip/alarm.ts'
import { MAX_PRESENTED_BUNDLE_BYTES, decideWithProofs } from '../../agent/gossip/missing-proof.ts'
import { MAX_SUBMISSION_BYTES, MAX_SUBMISSION_EVENTS, submissionBatches } from '../../agent/gossip/submit-batches.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import { makeServeHouse } from '../serve/_house.ts'

t.test('backoff: exponential, bounded, jittered within the upper half, never zero', async t => {
  const o = { initialMs: 100, maxMs: 1000 }
  t.same(
    [0, 1, 2, 3, 4, 10].map(a => backoffDelay(a, o, () => 0)),
    [50, 100, 200, 400, 500, 500],
    'the lower bound doubles up to half the cap',
  )
  t.same(
    [0, 1, 2, 3, 4, 10].map(a => backoffDelay(a, o, () => 0.999999)),
    [100, 200, 400, 800, 1000, 1000],
    'the upper bound doubles up to the cap',
  )
  const seen = new Set(Array.from({ length: 50 }, () => backoffDelay(3, o)))
  t.ok(seen.size > 10, 'Math.random spreads retries')
  t.ok([...seen].every(d => d >= 400 && d <= 800))
  t.equal(
    backoffDelay(5000, o, () => 0.5),
    750,
    'huge attempt numbers stay bounded',
  )
  t.equal(
    backoffDelay(0, {}, () => 0),
    125,
    'defaults: 250 ms first',
  )
  t.throws(() => backoffDelay(-1, o), RangeError)
  t.throws(() => backoffDelay(0, { initialMs: 0 }), RangeError)
})

t.test('submission batches: in order, at most 256 events and ~62 KiB each', async t => {
  const fake = (n: number, size: number): EncodedEvent[] =>
    Array.from({ length: n }, (_, i) => ({ bytes: new Uint8Array(size), idHex: String(i) }) as unknown as EncodedEvent)
  t.same(submissionBatches([]), [])
  const many = fake(600, 10)
  const b = submissionBatches(many)
  t.same(
    b.map(x => x.length),
    [MAX_SUBMISSION_EVENTS, MAX_SUBMISSION_EVENTS, 600 - 2 * MAX_SUBMISSION_EVENTS],
  )
  t.same(
    b.flat().map(e => e.idHex),
    many.map(e => e.idHex),
    'order kept',
  )
  const big = submissionBatches(fake(40, 4000))
  t.ok(
    big.every(x => x.reduce((n, e) => n + e.bytes.length + 3, 0) <= MAX_SUBMISSION_BYTES),
    'bytes bounded',
  )
  t.equal(big.flat().length, 40)
})

t.test('alarms: which refusals are alarms, and the evidence they carry', async t => {
  t.ok(isAlarm(new KinError('HEAD_FORK', 'x')))
  t.ok(isAlarm(new KinError('HEAD_ROOT_MISMATCH', 'x')))
  t.notOk(isAlarm(new KinError('DECODE_CBOR', 'x')), 'a message that does not decode is an error, not an alarm')
  t.notOk(isAlarm(new KinError('BROKER_CLOSED', 'x')))
  const held = new Uint8Array([1, 2]),
    offered = new Uint8Array([3])
  t.match(alarmOf(new KinError('HEAD_SIGNATURE', 'bad'), 'head', 7, { held, offered }), {
    code: 'HEAD_SIGNATURE',
    source: 'head',
    heldHead: '0102',
    offeredHead: '03',
    time: 7,
  })
  t.match(
    alarmOf(new KinError('HEAD_FORK', 'f', { detail: { heldHead: 'aa', offeredHead: 'bb' } }), 'events', 1, {
      held,
      offered,
    }),
    { heldHead: 'aa', offeredHead: 'bb' },
    "the replica's evidence wins",
  )
})

// DESIGN.md "Access decision" step 5 without a network: the bundle the peer presents, or a fetch that fails.
t.test('decideWithProofs: presented bundle, forged bundle, oversize, no source, a fetch that fails', async t => {
  const house = await makeServeHouse()
  const lock = house.cn['L3.3'],
    guest = house.cn['L3.4']
  const own = house.fleet.device(lock).ledger
  const session = new AccessSession({
    self: lock,
    root: house.fleet.fleet.root,
    pki: nodePki,
    sha256: nodeCrypto.sha256,
    clock: { now: () => Math.floor(Date.now() / 1000) },
    ledger: () => own.state,
  })
  const der = house.fleet.device(guest).certificate.der
  const anchor = { minerKey: own.state.genesis!.body.minerKey, genesisId: own.state.genesis!.event.idHex }
  const bundle = await house.bundle(guest)
  const presented = await decideWithProofs(session, der, 'unlock', { crypto: nodeCrypto, anchor, presented: bundle })
  t.match(presented, {
    decision: { allow: true, code: 'ALLOW' },
    first: { code: 'ACCESS_MISSING_PROOF' },
    proof: { source: 'presented', outcome: 'ok', anchoring: 'unanchored' },
  })
  t.ok(presented.proof!.merged > 0, "the bundle's events were merged for the decision")
  t.equal(session.decide(der, 'unlock').code, 'ACCESS_MISSING_PROOF', "into a copy: the session's ledger is unchanged")

  const tampered = bundle.slice()
  tampered[tampered.length - 40]! ^= 1
  const forged = await decideWithProofs(session, der, 'unlock', {
    crypto: nodeCrypto,
    anchor,
    presented: tampered,
    fetch: async () => bundle,
  })
  t.match(
    forged,
    { decision: { allow: false }, proof: { source: 'presented', outcome: 'refused' } },
    'a forged bundle is a deny, and the miner is not asked instead',
  )
  t.not(forged.decision.code, 'INTERNAL')

  const huge = await decideWithProofs(session, der, 'unlock', {
    crypto: nodeCrypto,
    anchor,
    presented: new Uint8Array(MAX_PRESENTED_BUNDLE_BYTES + 1),
  })
  t.match(huge, { decision: { allow: false, code: 'DECODE_OVERSIZE' } })

  const none = await decideWithProofs(session, der, 'unlock', { crypto: nodeCrypto, anchor })
  t.match(
    none,
    { decision: { allow: false, code: 'ACCESS_MISSING_PROOF' }, proof: { outcome: 'unavailable' } },
    'no proof at all: fail closed',
  )

  let asked: [string, number] | undefined
  const failed = await decideWithProofs(session, der, 'unlock', {
    crypto: nodeCrypto,
    anchor,
    deadlineMs: 123,
    fetch: async (cn, ms) => {
      asked = [cn, ms]
      throw new KinError('BROKER_UNREACHABLE', 'no L0')
    },
  })
  t.same(asked, [guest, 123], "the miner is asked for the peer's bundle with the deadline")
  t.match(failed, {
    decision: { allow: false, code: 'ACCESS_MISSING_PROOF', reason: /within 123 ms \(BROKER_UNREACHABLE: no L0\)/ },
    proof: { outcome: 'unavailable', code: 'BROKER_UNREACHABLE' },
  })
  const fetched = await decideWithProofs(session, der, 'unlock', {
    crypto: nodeCrypto,
    anchor,
    fetch: async () => bundle,
  })
  t.match(fetched, { decision: { allow: true }, proof: { source: 'miner', outcome: 'ok' } })

  const known = await decideWithProofs(session, house.fleet.device(house.cn['L2.1']).certificate.der, 'unlock', {
    crypto: nodeCrypto,
    anchor,
    fetch: async () => {
      throw new Error('not asked')
    },
  })
  t.match(
    known,
    { decision: { allow: true }, first: undefined, proof: undefined },
    'a decision that needs no proof asks nobody',
  )
})
