// The rekey invite of `kin rekey CN` (docs/PROTOCOL.md §8.2d) as L0 reads it: the child's CN is a signed eighth field,
// L0 checks that the child exists and is the sender's own, and a revoked child may still be rekeyed. Pure: a ledger
// in memory, no broker (test/cli/rekey-child.test.ts runs the same over the wire).
import t from 'tap'
import { decodeInvite, signInvite, verifyInvite, type Invite } from '../../agent/enroll/invite.ts'
import { decodeCbor, encodeCbor } from '../../agent/codec/cbor.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { codeOf, houseFleet, T0 } from '../helpers/ledger-fleet.ts'

const { f, laptop, phone, lock } = houseFleet('rekey-invite')
const now = T0 + 1000

function inviteOf(parentCn: string, rekeyCn: string | undefined): Invite {
  return {
    inviteId: '0123456789abcdef',
    loginVerifier: 'ab'.repeat(32),
    parentCn,
    role: 'device',
    name: 'front-door-1',
    expires: now + 600,
    time: now,
    ...(rekeyCn === undefined ? {} : { rekeyCn }),
  }
}

const signed = (parentCn: string, rekeyCn: string | undefined): Uint8Array =>
  signInvite(nodeCrypto, inviteOf(parentCn, rekeyCn), f.secrets.get(parentCn)!)

t.test('the child CN is an eighth signed field; an invite without one decodes as before', async t => {
  const rekey = signed(phone, lock)
  t.equal((decodeCbor(rekey) as unknown[]).length, 10, "['invite', 7 fields, child CN, signature]")
  t.equal(decodeInvite(rekey).invite.rekeyCn, lock)
  const plain = signed(phone, undefined)
  t.equal((decodeCbor(plain) as unknown[]).length, 9)
  t.equal(decodeInvite(plain).invite.rekeyCn, undefined)
  t.same(verifyInvite(nodeCrypto, f.ledger.state, rekey, now), inviteOf(phone, lock), 'L0 accepts it')
  // Another child's CN under the same signature: the signature covers the field.
  const v = decodeCbor(rekey) as unknown[]
  v[8] = laptop
  t.equal(
    codeOf(() => verifyInvite(nodeCrypto, f.ledger.state, encodeCbor(v as never), now)),
    'BAD_SIGNATURE',
  )
  v[8] = 42
  t.equal(
    codeOf(() => decodeInvite(encodeCbor(v as never))),
    'DECODE_FIELD',
    'a CN is text',
  )
})

t.test("L0 registers a rekey invite only for the sender's own child", async t => {
  t.equal(
    codeOf(() => verifyInvite(nodeCrypto, f.ledger.state, signed(laptop, lock), now)),
    'REKEY_NOT_CHILD',
    'a grandchild',
  )
  t.equal(
    codeOf(() => verifyInvite(nodeCrypto, f.ledger.state, signed(phone, phone), now)),
    'REKEY_NOT_CHILD',
    'itself',
  )
  t.equal(
    codeOf(() => verifyInvite(nodeCrypto, f.ledger.state, signed(phone, 'nosuchlabel.smith.home.arpa'), now)),
    'SUBJECT_UNKNOWN',
    'a CN the ledger does not know',
  )
  t.equal(
    codeOf(() => verifyInvite(nodeCrypto, f.ledger.state, signed(laptop, f.l0), now)),
    'SUBJECT_UNKNOWN',
    'L0, which no parent rekeys',
  )
  f.revoke(phone, lock, { reason: 'compromised', effective: now - 10, time: now - 5 })
  t.equal(
    verifyInvite(nodeCrypto, f.ledger.state, signed(phone, lock), now).rekeyCn,
    lock,
    'a child revoked as compromised is what a rekey is for',
  )
})
