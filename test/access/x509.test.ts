// End to end with real certificates: agent/pki verifyChain on both providers, then binding, lineage and policy.
import t from 'tap'
import { decide } from '../../agent/access/decide.ts'
import { ChainCache } from '../../agent/access/chain-cache.ts'
import { fleetChainVerifier } from '../../agent/access/fleet-chain.ts'
import type { DecisionContext } from '../../agent/access/types.ts'
import { certifiedEvent } from '../../agent/ledger/builders.ts'
import type { DeviceCertificate } from '../../agent/pki/certificate.ts'
import type { PkiProvider } from '../../agent/ports/pki.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { portablePki } from '../../agent/portable/pki.ts'
import { issueDeviceCertificate } from '../../agent/pki/issue.ts'
import { createCsr } from '../../agent/pki/csr.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { GUEST_UNTIL, NOW } from '../helpers/access-house.ts'
import { makeRoot, makeX509House } from '../helpers/access-x509.ts'

const house = await makeX509House()

function context(
  self: string,
  provider: PkiProvider,
  extra: Partial<DecisionContext<DeviceCertificate>> = {},
): DecisionContext<DeviceCertificate> {
  return {
    self,
    ledger: house.fleet.ledger.state,
    verifyChain: fleetChainVerifier(house.root, provider),
    now: NOW,
    ...extra,
  }
}

for (const provider of [nodePki, portablePki]) {
  t.test(`${provider.name}: the guest's phone at the lock, with its real certificate`, async t => {
    const d = decide({ certificate: house.cert['L3.4'], action: 'unlock' }, context(house.cn['L3.3'], provider))
    t.equal(d.code, 'ALLOW', d.reason)
    t.same(d.path, [house.cn['L3.4'], house.cn['L2.2'], house.cn['L1'], house.cn['L2.1'], house.cn['L3.3']])
    t.equal(d.hops, 4)
    t.equal(d.commonAncestor, house.cn['L1'])
    const late = decide(
      { certificate: house.cert['L3.4'], action: 'unlock' },
      context(house.cn['L3.3'], provider, { now: GUEST_UNTIL + 1 }),
    )
    t.equal(late.code, 'CERT_EXPIRED', 'the CA capped the certificate at the authorization notAfter')
    const camera = decide({ certificate: house.cert['L3.1'], action: 'configure' }, context(house.cn['L3.3'], provider))
    t.equal(camera.code, 'POLICY_ACTION')
  })
}

t.test("Eve's certificates: another CA (CERT_CHAIN), a mis-issued one with Eve's key (CERT_UNBOUND)", async t => {
  const eveKeys = await nodePki.generateTlsKeyPair()
  const { root: eveRoot, rootKeys: eveRootKeys } = await makeRoot(NOW - 600)
  const guest = house.cn['L3.4'],
    parent = house.cn['L2.2']
  const fromEveCa = await issueDeviceCertificate({
    rootCertPem: eveRoot.pem,
    rootKeyPem: eveRootKeys.privateKeyPem,
    now: NOW - 60,
    randomBytes: nodeCrypto.randomBytes,
    csrPem: await createCsr({ cn: guest, parentCn: parent, keyPair: eveKeys }),
    auth: { cn: guest, parentCn: parent, spkiHash: nodeCrypto.sha256(eveKeys.spkiDer), notAfter: GUEST_UNTIL },
  })
  t.equal(decide({ certificate: fromEveCa, action: 'unlock' }, context(house.cn['L3.3'], nodePki)).code, 'CERT_CHAIN')
  const misIssued = await house.issue(guest, parent, eveKeys, GUEST_UNTIL)
  const d = decide({ certificate: misIssued, action: 'unlock' }, context(house.cn['L3.3'], nodePki))
  t.equal(d.code, 'CERT_UNBOUND')
  t.equal(d.peer, guest)
})

t.test(
  'a certificate whose SAN parent contradicts the ledger, even with the right key and a certified event',
  async t => {
    const guest = house.cn['L3.4']
    // The CA mis-issues the guest a certificate naming the owner's phone as parent, and the guest records it.
    const wrongParent = await house.issue(guest, house.cn['L2.1'], house.keys['L3.4'], GUEST_UNTIL)
    house.fleet.sign(certifiedEvent(house.fleet.binding(guest), wrongParent.certHash, NOW - 100), guest)
    t.equal(wrongParent.parentCn, house.cn['L2.1'])
    const d = decide({ certificate: wrongParent, action: 'unlock' }, context(house.cn['L3.3'], nodePki))
    t.equal(d.code, 'ACCESS_SAN_PARENT')
    t.same(d.path, [])
  },
)

t.test('a warm decision verifies no certificate signature', async t => {
  let signatureChecks = 0
  const counting: PkiProvider = {
    ...nodePki,
    verifySignature(algorithm, spki, message, signature) {
      signatureChecks++
      return nodePki.verifySignature(algorithm, spki, message, signature)
    },
  }
  const ctx = context(house.cn['L3.3'], counting, { chainCache: new ChainCache() })
  t.equal(decide({ certificate: house.cert['L2.1'], action: 'unlock' }, ctx).code, 'ALLOW')
  t.equal(signatureChecks, 1, 'cold: the leaf signature by the root')
  t.equal(decide({ certificate: house.cert['L2.1'], action: 'configure' }, ctx).code, 'ALLOW')
  t.equal(signatureChecks, 1, 'warm: none')
})
