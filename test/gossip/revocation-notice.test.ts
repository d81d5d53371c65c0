import t from 'tap'
import { describeRevocation, ownRevocation, revokedError } from '../../agent/gossip/revocation-notice.ts'
import { T0, houseFleet } from '../helpers/ledger-fleet.ts'

// PROTOCOL.md §11.5: a device reads its own standing in its own verified ledger, and says it in one line.
t.test('a standing device, an unknown CN and a revocation not yet effective give no notice', async t => {
  const { f, laptop, phone } = houseFleet('notice-none')
  t.equal(ownRevocation(f.ledger.state, phone, T0 + 500), undefined, 'the phone stands')
  t.equal(
    ownRevocation(f.ledger.state, 'aaaaaaaaaaaaaaaa.nowhere.home.arpa', T0 + 500),
    undefined,
    'a CN the ledger does not know yet is not revoked',
  )
  f.revoke(laptop, phone, { reason: 'retired', effective: T0 + 5000, time: T0 + 1000 })
  t.equal(
    ownRevocation(f.ledger.state, phone, T0 + 4999),
    undefined,
    'a retirement is not told before its effective time',
  )
  t.match(
    ownRevocation(f.ledger.state, phone, T0 + 5000),
    { why: 'REVOKED', reason: 'retired', effective: T0 + 5000 },
    'and is from it',
  )
})

t.test('its own revocation names who, why, by whom and from when; the coded error carries it', async t => {
  const { f, laptop, phone, lock } = houseFleet('notice-own')
  f.revoke(laptop, phone, { reason: 'lost', effective: T0 + 1000, time: T0 + 1000 })
  const notice = ownRevocation(f.ledger.state, phone, T0 + 1000)!
  t.match(notice, {
    cn: phone,
    name: 'owner phone',
    why: 'REVOKED',
    reason: 'lost',
    subtree: false,
    by: laptop,
    byName: 'laptop',
    effective: T0 + 1000,
  })
  t.equal(
    describeRevocation(notice),
    `this device (${phone}, "owner phone") was revoked (lost) by ${laptop} ("laptop"), effective 2027-01-15T08:16:40Z: it stops serving; enroll it again to bring it back`,
  )
  t.equal(
    ownRevocation(f.ledger.state, lock, T0 + 1000),
    undefined,
    'a child authorized before a revocation without subtree stands',
  )
  const err = revokedError(notice)
  t.equal(err.code, 'IDENTITY_REVOKED')
  t.equal(err.message, describeRevocation(notice))
})

t.test('an ancestor revoked with its subtree, or from before the device was authorized, takes the device', async t => {
  const subtree = houseFleet('notice-subtree')
  subtree.f.revoke(subtree.laptop, subtree.phone, {
    reason: 'compromised',
    effective: T0 + 1000,
    subtree: true,
    time: T0 + 1000,
  })
  const a = ownRevocation(subtree.f.ledger.state, subtree.lock, T0 + 1000)!
  t.match(a, { why: 'ANCESTOR_REVOKED', ancestorCn: subtree.phone, subtree: true, by: subtree.laptop })
  t.match(
    describeRevocation(a),
    `this device (${subtree.lock}, "front-door-1") falls with its ancestor ${subtree.phone}, revoked with its subtree (compromised) by ${subtree.laptop}`,
  )

  const late = houseFleet('notice-late')
  // Discovered late: the phone's key was compromised from before it authorized the lock.
  late.f.revoke(late.laptop, late.phone, {
    reason: 'compromised',
    effective: T0 + 250,
    subtree: false,
    time: T0 + 1000,
  })
  const b = ownRevocation(late.f.ledger.state, late.lock, T0 + 1000)!
  t.match(
    describeRevocation(b),
    `falls with its ancestor ${late.phone}, revoked before this device was authorized (compromised)`,
  )
})
