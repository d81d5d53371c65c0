import t from 'tap'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { portablePki } from '../../agent/portable/pki.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import type { Binding } from '../../agent/ledger/types.ts'
import { createFleetRoot } from '../../agent/pki/root.ts'
import { createCsr } from '../../agent/pki/csr.ts'
import { issueDeviceCertificate } from '../../agent/pki/issue.ts'
import { verifyChain } from '../../agent/pki/chain.ts'
import { verifyBinding } from '../../agent/pki/binding.ts'
import { buildLeafCertificate } from '../../agent/pki/leaf-profile.ts'
import { spkiDerFromPublicKeyPem } from '../../agent/pki/keys.ts'
import { DAY, makeFleet, nowSeconds, type Member } from './_fleet.ts'

const now = nowSeconds()

/** A binding record in the ledger's shape, as the ledger would hold it after authorize + certified. */
function bindingOf(member: Member, parentCn: string, certHashes: string[]): Binding {
  return {
    id: toHex(nodeCrypto.randomBytes(32)),
    cn: member.cn,
    label: member.cn.split('.')[0]!,
    parentCn,
    parentBindingId: toHex(nodeCrypto.randomBytes(32)),
    spkiHash: member.auth.spkiHash,
    ledgerKey: nodeCrypto.randomBytes(32),
    role: 'device',
    depth: 0,
    notAfter: member.auth.notAfter,
    time: now,
    kind: 'lock',
    name: 'front-door lock',
    generation: 0,
    certHashes,
    revocations: [],
    supersededBy: undefined,
  }
}

function ledgerOf(bindings: Binding[]) {
  const byCn = new Map(bindings.map(b => [b.cn, b]))
  return { currentBinding: (cn: string): Binding | undefined => byCn.get(cn) }
}

const fleet = await makeFleet(now)
const victim = await fleet.enroll(fleet.l0.cn)
const ledger = ledgerOf([bindingOf(victim, fleet.l0.cn, [victim.cert.certHashHex])])

t.test('the genuine certificate passes verifyChain and verifyBinding', async t => {
  for (const provider of [nodePki, portablePki]) {
    const info = verifyChain(victim.cert, fleet.root, now, provider)
    t.equal(verifyBinding(info, ledger).cn, victim.cn, provider.name)
  }
})

t.test("Eve's own CA copies the victim's CN and SAN parent: CERT_CHAIN on both paths", async t => {
  const eveKeys = await nodePki.generateTlsKeyPair()
  // With the fleet's domain even the issuer Name is byte-identical to the fleet root's: only the signature tells them apart.
  for (const [what, domain] of [
    ['same root name', fleet.domain],
    ['other root name', 'cowboy-bottling.example'],
  ] as const) {
    const eveRootKeys = await nodePki.generateTlsKeyPair()
    const eveRoot = await createFleetRoot({ domain, keyPair: eveRootKeys, now, randomBytes: nodeCrypto.randomBytes })
    // Eve's CA signs whatever she likes, with the fleet's own leaf profile.
    const forged = await buildLeafCertificate({
      root: eveRoot,
      rootKeyPem: eveRootKeys.privateKeyPem,
      cn: victim.cn,
      parentCn: fleet.l0.cn,
      spki: spkiDerFromPublicKeyPem(eveKeys.publicKeyPem),
      notBefore: now - 300,
      notAfter: now + DAY,
      randomBytes: nodeCrypto.randomBytes,
    })
    t.same(
      [forged.cn, forged.parentCn, forged.sanDns],
      [victim.cert.cn, victim.cert.parentCn, victim.cert.sanDns],
      `${what}: names copied exactly`,
    )
    t.ok(nodePki.verifyCertificateSignature(forged.der, eveRoot.der), `${what}: a real signature by Eve's root`)
    t.ok(
      portablePki.verifyCertificateSignature(forged.der, eveRoot.der),
      `${what}: a real signature by Eve's root (portable)`,
    )
    for (const provider of [nodePki, portablePki]) {
      t.throws(
        () => verifyChain(forged, fleet.root, now, provider),
        { name: 'VerificationError', code: 'CERT_CHAIN' },
        `${what}: ${provider.name} refuses`,
      )
    }
  }
})

t.test(
  "the fleet CA mis-issues for the victim's CN with another key: chain passes, binding refuses (CERT_UNBOUND)",
  async t => {
    const eveKeys = await nodePki.generateTlsKeyPair()
    // A fleet CA tricked into issuing: the authorization it was shown named Eve's key.
    const misIssued = await issueDeviceCertificate({
      ...fleet.ca,
      csrPem: await createCsr({ cn: victim.cn, parentCn: fleet.l0.cn, keyPair: eveKeys }),
      auth: { cn: victim.cn, parentCn: fleet.l0.cn, spkiHash: nodeCrypto.sha256(eveKeys.spkiDer), notAfter: now + DAY },
    })
    for (const provider of [nodePki, portablePki]) {
      const info = verifyChain(misIssued, fleet.root, now, provider)
      t.equal(info.cn, victim.cn, `${provider.name}: the chain alone cannot tell`)
      t.throws(
        () => verifyBinding(info, ledger),
        { name: 'VerificationError', code: 'CERT_UNBOUND' },
        `${provider.name}: the ledger can`,
      )
    }
  },
)

t.test(
  'verifyBinding: unknown CN is CERT_UNBOUND; right key but unrecorded certificate is CERT_NOT_CERTIFIED',
  async t => {
    const stranger = await fleet.enroll(fleet.l0.cn)
    const info = verifyChain(stranger.cert, fleet.root, now, nodePki)
    t.throws(() => verifyBinding(info, ledger), { code: 'CERT_UNBOUND' })
    // A second certificate for the same key, never recorded by a certified event.
    const reissued = await issueDeviceCertificate({ ...fleet.ca, csrPem: victim.csrPem, auth: victim.auth })
    t.not(reissued.certHashHex, victim.cert.certHashHex, 'a fresh serial makes a different certificate')
    t.throws(() => verifyBinding(verifyChain(reissued, fleet.root, now, nodePki), ledger), {
      code: 'CERT_NOT_CERTIFIED',
    })
    const uncertified = ledgerOf([bindingOf(victim, fleet.l0.cn, [])])
    t.throws(() => verifyBinding(verifyChain(victim.cert, fleet.root, now, nodePki), uncertified), {
      code: 'CERT_NOT_CERTIFIED',
    })
  },
)
