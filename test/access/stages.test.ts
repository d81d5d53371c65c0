// Chain, binding and lineage stages: each refusal with its own code, on the house ledger.
import t from 'tap'
import { decide, isMissingProof } from '../../agent/access/decide.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import { base32 } from '../../agent/ledger/names.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { House, NOW } from '../helpers/access-house.ts'

t.test('a revoked peer: ACCESS_REVOKED', async t => {
  const h = new House()
  h.fleet.revoke(h.cn['L2.2'], h.cn['L3.4'], { reason: 'lost' })
  const d = decide({ certificate: h.cert('L3.4'), action: 'unlock' }, h.context('L3.3'))
  t.equal(d.code, 'ACCESS_REVOKED')
  t.equal(d.allow, false)
  t.equal(d.peer, h.cn['L3.4'])
  t.same(d.path, [], 'refused before the lineage stage')
})

t.test('a revoked ancestor (subtree): ACCESS_ANCESTOR_REVOKED; the rest of the house is unaffected', async t => {
  const h = new House()
  h.fleet.revoke(h.cn['L1'], h.cn['L2.2'], { subtree: true, reason: 'compromised' })
  const guest = decide({ certificate: h.cert('L3.4'), action: 'unlock' }, h.context('L3.3'))
  t.equal(guest.code, 'ACCESS_ANCESTOR_REVOKED')
  t.match(guest.reason, h.cn['L2.2'])
  const camera = decide({ certificate: h.cert('L3.1'), action: 'view' }, h.context('L3.3'))
  t.equal(camera.code, 'ALLOW', camera.reason)
})

t.test('a SAN parent the ledger contradicts: ACCESS_SAN_PARENT', async t => {
  const h = new House()
  // The guest's certificate claims the owner's phone as parent; the ledger says the tablet authorized it.
  const d = decide({ certificate: h.cert('L3.4', { parentCn: h.cn['L2.1'] }), action: 'unlock' }, h.context('L3.3'))
  t.equal(d.code, 'ACCESS_SAN_PARENT')
  t.match(d.reason, h.cn['L2.2'])
  const noParent = decide({ certificate: h.cert('L3.4', { parentCn: undefined }), action: 'view' }, h.context('L3.3'))
  t.equal(noParent.code, 'ACCESS_SAN_PARENT')
  const l0WithParent = decide(
    { certificate: h.cert('L0', { parentCn: h.cn['L1'] }), action: 'view' },
    h.context('L3.3'),
  )
  t.equal(l0WithParent.code, 'ACCESS_SAN_PARENT')
})

t.test('missing proof: a replica without the guest asks for a merge, then allows', async t => {
  const h = new House()
  const guestLabel = h.cn['L3.4'].split('.')[0]
  const replica = new Ledger(nodeCrypto)
  const withheld = h.fleet.events.filter(e => base32(e.event.subject) === guestLabel)
  t.equal(withheld.length, 2, 'authorize + certified')
  replica.ingestMany(h.fleet.events.filter(e => !withheld.includes(e)))
  const ctx = h.context('L3.3', { ledger: replica.state })
  const d = decide({ certificate: h.cert('L3.4'), action: 'unlock' }, ctx)
  t.equal(d.code, 'ACCESS_MISSING_PROOF')
  t.equal(d.retry, true)
  t.equal(d.missing, h.cn['L3.4'])
  t.equal(isMissingProof(d), true)
  // The guest's proof bundle arrives; the caller retries once.
  t.equal(replica.ingestMany(withheld).accepted.length, 2)
  const again = decide({ certificate: h.cert('L3.4'), action: 'unlock' }, ctx)
  t.equal(again.code, 'ALLOW', again.reason)
  t.equal(isMissingProof(again), false)
})

t.test('missing proof of the deciding device itself', async t => {
  const h = new House()
  const lockLabel = h.cn['L3.3'].split('.')[0]
  const replica = new Ledger(nodeCrypto)
  replica.ingestMany(h.fleet.events.filter(e => base32(e.event.subject) !== lockLabel))
  const d = decide({ certificate: h.cert('L3.4'), action: 'unlock' }, h.context('L3.3', { ledger: replica.state }))
  t.equal(d.code, 'ACCESS_MISSING_PROOF')
  t.equal(d.missing, h.cn['L3.3'])
})

t.test('an ancestor binding absent from the state: ACCESS_MISSING_PROOF naming the ancestor', async t => {
  const h = new House()
  h.fleet.ledger.state.bindings.delete(h.fleet.binding(h.cn['L2.2']).id)
  const d = decide({ certificate: h.cert('L3.4'), action: 'view' }, h.context('L3.3'))
  t.equal(d.code, 'ACCESS_MISSING_PROOF')
  t.equal(d.retry, true)
  t.equal(d.missing, h.cn['L2.2'])
  t.equal(isMissingProof(d), true)
  const self = decide({ certificate: h.cert('L3.1'), action: 'view' }, h.context('L3.4'))
  t.equal(self.code, 'ACCESS_MISSING_PROOF', "a gap above the deciding device's own lineage")
  t.equal(self.missing, h.cn['L2.2'])
})

t.test('a lineage the ledger cannot follow to genesis (a loop in a damaged state): ACCESS_LINEAGE_GAP', async t => {
  const h = new House()
  // Corrupt the state on purpose: the laptop's parent becomes the guest, a loop validation would never admit.
  h.fleet.binding(h.cn['L1']).parentBindingId = h.fleet.binding(h.cn['L3.4']).id
  const d = decide({ certificate: h.cert('L3.4'), action: 'view' }, h.context('L3.3'))
  t.equal(d.code, 'ACCESS_LINEAGE_GAP')
  t.equal(d.retry, false)
  t.equal(isMissingProof(d), false)
})

t.test('unbound key and uncertified certificate', async t => {
  const h = new House()
  const other = decide(
    { certificate: h.cert('L3.4', { spkiHash: new Uint8Array(32).fill(7) }), action: 'view' },
    h.context('L3.3'),
  )
  t.equal(other.code, 'CERT_UNBOUND')
  t.equal(other.retry, true, 'a key the ledger never saw may be a rekey not merged yet')
  const uncertified = decide(
    { certificate: h.cert('L3.4', { certHash: new Uint8Array(32).fill(9) }), action: 'view' },
    h.context('L3.3'),
  )
  t.equal(uncertified.code, 'CERT_NOT_CERTIFIED')
  t.equal(uncertified.retry, true)
  // After a rekey the old certificate's key is history: no retry will help.
  const old = h.cert('L3.4')
  h.fleet.rekey(h.cn['L2.2'], h.cn['L3.4'])
  const stale = decide({ certificate: old, action: 'view' }, h.context('L3.3'))
  t.equal(stale.code, 'CERT_UNBOUND')
  t.equal(stale.retry, false)
  t.match(stale.reason, /rekey/)
})

t.test('chain refusals pass through with their own codes; no peer, no path', async t => {
  const h = new House()
  const forged = decide({ certificate: h.cert('L3.4', { cn: 'forged.example' }), action: 'unlock' }, h.context('L3.3'))
  t.equal(forged.code, 'CERT_CHAIN')
  t.equal(forged.peer, undefined)
  t.same(forged.path, [])
  const expired = decide({ certificate: h.cert('L3.4', { notAfter: NOW - 1 }), action: 'unlock' }, h.context('L3.3'))
  t.equal(expired.code, 'CERT_EXPIRED')
  const early = decide({ certificate: h.cert('L3.4', { notBefore: NOW + 60 }), action: 'unlock' }, h.context('L3.3'))
  t.equal(early.code, 'CERT_NOT_YET_VALID')
  const mismatch = decide({ certificate: h.cert('L3.4'), action: 'unlock', chain: h.cert('L3.1') }, h.context('L3.3'))
  t.equal(mismatch.code, 'CERT_CHAIN', 'a pre-verified chain for another certificate')
})

t.test('a verifier that throws a bare error denies (fail closed) with INTERNAL', async t => {
  const h = new House()
  const d = decide(
    { certificate: h.cert('L3.4'), action: 'unlock' },
    h.context('L3.3', {
      verifyChain: () => {
        throw new Error('boom')
      },
    }),
  )
  t.equal(d.allow, false)
  t.equal(d.code, 'INTERNAL')
  t.match(d.reason, /boom/)
})
