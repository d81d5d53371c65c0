import t from 'tap'
import { toHex } from '../../agent/codec/bytes.ts'
import { certifiedEvent } from '../../agent/ledger/builders.ts'
import { admitCertified, type IssuedLookup } from '../../broker/admission.ts'
import { T0, houseFleet } from '../helpers/ledger-fleet.ts'

t.test('admitCertified: a certified event only for a certificate the fleet CA issued to that CN and key', async t => {
  const { f, phone, lock } = houseFleet('admission')
  const issued = new Map<string, { cn: string; spkiHash: string }>()
  const lookup: IssuedLookup = { get: h => issued.get(h) }
  const certHash = f.bytes(32)
  const e = f.sign(certifiedEvent(f.binding(lock), certHash, T0 + 400), lock, false)
  const admit = () => admitCertified(lookup, f.ledger.state, e)?.code

  t.equal(admit(), 'CERTIFIED_NOT_ISSUED', 'a hash the CA never issued')
  issued.set(toHex(certHash), { cn: phone, spkiHash: toHex(f.binding(lock).spkiHash) })
  t.equal(admit(), 'CERTIFIED_NOT_ISSUED', "issued, but to the lock's parent")
  issued.set(toHex(certHash), { cn: lock, spkiHash: toHex(f.bytes(32)) })
  t.equal(admit(), 'CERTIFIED_NOT_ISSUED', 'issued to the lock, for another key than its binding holds')
  issued.set(toHex(certHash), { cn: lock, spkiHash: toHex(f.binding(lock).spkiHash) })
  t.equal(admit(), undefined, "issued to the lock's binding: admitted (validation then allows it once per binding)")
  const policy = f.policy(phone, lock, {}, T0 + 500, false)
  t.equal(admitCertified(lookup, f.ledger.state, policy), undefined, "other event types are not this rule's")
})
