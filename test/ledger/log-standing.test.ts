import t from 'tap'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { memoryStorage } from '../../agent/portable/memory-storage.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import { MAX_CLOCK_SKEW } from '../../agent/ledger/validate.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import { LedgerFleet, T0, codeOf, houseFleet } from '../helpers/ledger-fleet.ts'
import { openMiner } from '../miner/helpers.ts'

// DESIGN.md "Whose clock counts: the log's": standing is judged by log position, claimed times are bounded at intake.

/** The stolen laptop's three back-dated events (not applied): a new admin child, a guest-widening policy on the lock, a revocation of the owner's branch. */
function backDated(
  f: LedgerFleet,
  laptop: string,
  phone: string,
  lock: string,
  time: number,
): Record<string, EncodedEvent> {
  const { unsigned } = f.authorizeUnsigned(laptop, { role: 'admin', kind: 'laptop', name: 'thief', time })
  return {
    authorize: f.sign(unsigned, laptop, false),
    policy: f.policy(
      laptop,
      lock,
      { subtree: false, rules: [{ action: '*', roles: ['guest'], from: 0, to: 0 }] },
      time,
      false,
    ),
    revoke: f.revoke(laptop, phone, { reason: 'compromised', effective: time, subtree: true, time }, false),
  }
}

/** A device's replay of `log` from scratch, without any clock (what sync and reopening a ledger file do). */
function replay(log: readonly EncodedEvent[]): Ledger {
  const l = new Ledger(nodeCrypto)
  for (const e of log) l.ingest(e)
  return l
}

t.test('a stolen key revoked in the log signs nothing new, whatever time it claims', async t => {
  const { f, laptop, phone, lock } = houseFleet('standing-stolen')
  const R = T0 + 10_000
  f.revoke(f.l0, laptop, { reason: 'compromised', effective: R, subtree: false, time: R })
  for (const back of [1, 60, 3600]) {
    for (const [type, e] of Object.entries(backDated(f, laptop, phone, lock, R - back))) {
      t.equal(
        codeOf(() => f.ledger.check(e)),
        'ISSUER_REVOKED_IN_LOG',
        `${type} dated ${back} s before the revocation: refused on a device (no clock)`,
      )
      t.equal(
        codeOf(() => f.ledger.check(e, { now: R + 10, intake: { now: R + 10, headTime: R } })),
        back > MAX_CLOCK_SKEW - 10 ? 'TIME_TOO_OLD' : 'ISSUER_REVOKED_IN_LOG',
        `${type} dated ${back} s before: refused at the miner's intake`,
      )
    }
  }
  for (const [type, e] of Object.entries(backDated(f, laptop, phone, lock, R + 5))) {
    t.equal(
      codeOf(() => f.ledger.check(e)),
      'VOID_AFTER_REVOKE',
      `${type} dated after the effective time: void, as before`,
    )
  }
  t.equal(
    f.ledger.state.invalidAt(f.binding(phone), R + 100),
    undefined,
    "the owner's phone, authorized before the revocation, still stands",
  )
  t.equal(
    codeOf(() => f.policy(phone, lock, { subtree: false }, R + 20)),
    undefined,
    'and its key still signs',
  )
})

t.test(
  'an ancestor revoked with its subtree: descendants sign nothing new either, whatever time they claim',
  async t => {
    const { f, laptop, lock } = houseFleet('standing-subtree')
    const R = T0 + 10_000
    f.revoke(f.l0, laptop, { reason: 'lost', effective: R, subtree: true, time: R })
    const { unsigned } = f.authorizeUnsigned(lock, { role: 'device', time: R - 30 })
    t.equal(
      codeOf(() => f.ledger.check(f.sign(unsigned, lock, false))),
      'ISSUER_REVOKED_IN_LOG',
      "the lock's back-dated event",
    )
    // Without subtree the descendants keep standing: the revocation is the laptop's alone.
    const g = houseFleet('standing-subtree')
    g.f.revoke(g.f.l0, g.laptop, { reason: 'lost', effective: R, subtree: false, time: R })
    t.equal(
      codeOf(() => g.f.policy(g.phone, g.lock, { subtree: false }, R - 30)),
      undefined,
      'no subtree: the phone still signs, even with an older time',
    )
  },
)

t.test('events logged before the revocation still count, on replay too', async t => {
  const { f, laptop, phone, lock } = houseFleet('standing-before')
  const R = T0 + 10_000
  const child = f.enroll(laptop, { role: 'member', kind: 'tablet', time: R - 100 })
  const policy = f.policy(laptop, lock, { subtree: false }, R - 50)
  f.revoke(f.l0, laptop, { reason: 'compromised', effective: R, subtree: false, time: R + 200 })
  const device = replay(f.ledger.state.log)
  t.equal(device.size, f.ledger.size, 'a device replaying the log (no clock) takes every event')
  t.equal(
    device.state.invalidAt(device.state.currentBinding(child)!, R + 1000),
    undefined,
    'the child authorized before the effective time stands',
  )
  t.ok(device.state.has(policy.idHex), 'and so does the policy')
  t.equal(device.state.invalidAt(device.state.currentBinding(phone)!, R + 1000), undefined)
  // A revocation that reaches back (effective before it was logged) voids what the key signed after its effective time.
  const late = f.enroll(phone, { role: 'guest', kind: 'phone', time: R + 300 })
  const g = houseFleet('standing-before-void')
  const gLate = g.f.enroll(g.phone, { role: 'guest', kind: 'phone', time: R + 50 })
  g.f.revoke(g.f.l0, g.phone, { reason: 'compromised', effective: R, subtree: false, time: R + 100 })
  t.equal(
    g.f.ledger.state.invalidAt(g.f.binding(gLate), R + 200)?.code,
    'ANCESTOR_REVOKED',
    'a back-dated revocation voids the child logged after its effective time',
  )
  t.equal(
    f.ledger.state.invalidAt(f.binding(late), R + 400),
    undefined,
    "control: the phone's own child stands (the laptop's revocation has no subtree)",
  )
})

t.test('a revocation effective in the future lets the key sign until the log reaches it', async t => {
  const { f, laptop, phone, lock } = houseFleet('standing-future')
  const F = T0 + 20_000
  f.revoke(f.l0, laptop, { reason: 'retired', effective: F, subtree: false, time: T0 + 10_000 })
  const early = backDated(f, laptop, phone, lock, T0 + 10_010)
  t.equal(
    codeOf(() => f.ledger.ingest(early['policy']!)),
    undefined,
    'before the effective time, on a device',
  )
  t.equal(
    codeOf(() => f.ledger.check(early['authorize']!, { now: T0 + 10_020, intake: { now: T0 + 10_020 } })),
    undefined,
    "and at the miner's intake",
  )
  t.equal(
    codeOf(() => f.ledger.check(early['authorize']!, { now: F, intake: { now: F } })),
    'TIME_TOO_OLD',
    'the miner, once its clock passed the effective time, refuses what was dated before it',
  )
  const edge = backDated(f, laptop, phone, lock, F - 10)
  t.equal(
    codeOf(() => f.ledger.check(edge['authorize']!, { now: F + 5, intake: { now: F + 5 } })),
    'ISSUER_REVOKED_IN_LOG',
    '… also inside its clock skew',
  )
  t.equal(
    codeOf(() => f.ledger.check(edge['authorize']!)),
    undefined,
    'a device whose log has not reached the effective time takes it',
  )
  f.enroll(f.l0, { role: 'member', time: F + 1, certify: false })
  t.equal(f.ledger.state.logTime, F + 1, "the log's time moved past the effective time")
  t.equal(
    codeOf(() => f.ledger.check(edge['authorize']!)),
    'ISSUER_REVOKED_IN_LOG',
    'after that, the device refuses it too',
  )
})

t.test("the miner's clock bounds claimed times; replay does not", async t => {
  const { f, phone } = houseFleet('standing-clock')
  const now = T0 + 10_000
  const at = (time: number): EncodedEvent => f.policy(phone, phone, { subtree: false }, time, false)
  const intake = (headTime?: number) => ({ now, intake: { now, headTime } })
  t.equal(
    codeOf(() => f.ledger.check(at(now - MAX_CLOCK_SKEW), intake())),
    undefined,
    'exactly the skew behind: taken',
  )
  t.equal(
    codeOf(() => f.ledger.check(at(now - MAX_CLOCK_SKEW - 1), intake())),
    'TIME_TOO_OLD',
    'one second more: refused',
  )
  t.equal(
    codeOf(() => f.ledger.check(at(now + MAX_CLOCK_SKEW), intake())),
    undefined,
    'exactly the skew ahead: taken',
  )
  t.equal(
    codeOf(() => f.ledger.check(at(now + MAX_CLOCK_SKEW + 1), intake())),
    'TIME_IN_FUTURE',
    'one second more: refused',
  )
  t.equal(
    codeOf(() => f.ledger.check(at(now - 10), intake(now + MAX_CLOCK_SKEW - 10))),
    undefined,
    'the skew behind the last head: taken',
  )
  t.equal(
    codeOf(() => f.ledger.check(at(now - 10), intake(now + MAX_CLOCK_SKEW - 9))),
    'TIME_BEFORE_HEAD',
    "before the last head less the skew (the miner's clock went back): refused",
  )
  t.equal(
    codeOf(() => f.ledger.check(at(T0 + 400))),
    undefined,
    'a device applying an old logged event has no intake clock: taken',
  )
  t.equal(
    codeOf(() => f.ledger.check(at(T0 + 400), { now })),
    undefined,
    'nor does a clock of its own bound the past',
  )
})

t.test('the miner refuses old and pre-head times at submit, and a back-dated event of a revoked key', async t => {
  const { f, laptop, phone, lock } = houseFleet('standing-miner')
  const storage = memoryStorage()
  const miner = await openMiner(f, storage, nodeCrypto, undefined, true)
  const history = f.events.map(e => e.bytes)
  const old = await miner.submit(history, T0 + 10_000)
  t.same([...new Set(old.refused.map(r => r.code))], ['TIME_TOO_OLD'], 'a history hours old is refused at intake')
  const now = T0 + 250
  const fresh = await miner.submit(history, now)
  t.equal(fresh.accepted.length, history.length, 'the same history, within the skew of the miner clock, is taken')
  t.ok(await miner.seal(now))
  const R = now + 100
  const revocation = f.revoke(f.l0, laptop, { reason: 'compromised', effective: R, subtree: false, time: R })
  t.equal((await miner.submit([revocation.bytes], R)).accepted.length, 1)
  await miner.seal(R)
  for (const [type, e] of Object.entries(backDated(f, laptop, phone, lock, R - 60))) {
    const r = await miner.submit([e.bytes], R + 30)
    t.same(
      r.refused.map(x => x.code),
      ['ISSUER_REVOKED_IN_LOG'],
      `${type} dated a minute before the revocation`,
    )
  }
  const stale = f.policy(phone, lock, { subtree: false }, R - MAX_CLOCK_SKEW - 50, false)
  t.same(
    (await miner.submit([stale.bytes], R - 400)).refused.map(x => x.code),
    ['TIME_BEFORE_HEAD'],
    'a clock stepped back behind the last head',
  )
  const owner = f.policy(phone, lock, { subtree: false }, R - 60, false)
  t.equal(
    (await miner.submit([owner.bytes], R + 30)).accepted.length,
    1,
    "the owner's phone, a minute back-dated, is still taken: it is not revoked",
  )
  await miner.close()
})
