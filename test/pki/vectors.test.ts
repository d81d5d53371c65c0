import t from 'tap'
import { readFileSync } from 'node:fs'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { portablePki } from '../../agent/portable/pki.ts'
import { fromHex, toHex } from '../../agent/codec/bytes.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { verifyChain } from '../../agent/pki/chain.ts'
import { parseCsr } from '../../agent/pki/csr-parse.ts'
import { checkCsrAgainstAuthorization } from '../../agent/pki/csr-check.ts'

// Made by the openssl CLI alone (test/fixtures/pki/make-openssl-vectors.mjs): kinship must read what OpenSSL writes.
const v = JSON.parse(readFileSync(new URL('../vectors/pki/openssl-fleet.json', import.meta.url), 'utf8'))

t.test('DeviceCertificate reads the fields OpenSSL reports', async t => {
  for (const [name, want] of [
    ['root', v.root],
    ['leaf', v.leaf],
  ] as const) {
    for (const sha256 of [undefined, nodeCrypto.sha256]) {
      const cert = new DeviceCertificate(want.pem, { sha256 })
      t.equal(cert.cn, want.cn, `${name} cn`)
      t.equal(cert.serialHex, want.serialHex, `${name} serial`)
      t.equal(cert.notBefore, want.notBefore, `${name} notBefore (UTCTime)`)
      t.equal(cert.notAfter, want.notAfter, `${name} notAfter (GeneralizedTime, after 2049)`)
      t.equal(toHex(cert.spkiHash), want.spkiHash, `${name} spkiHash`)
      t.equal(toHex(cert.certHash), want.certHash, `${name} certHash`)
      t.equal(cert.certHashHex, want.certHash, `${name} certHashHex`)
      t.equal(cert.isCA, want.isCA, `${name} isCA`)
      t.same(cert.keyUsage, want.keyUsage, `${name} keyUsage`)
      t.equal(new DeviceCertificate(cert.der).pem, cert.pem, `${name} DER and PEM round-trip`)
    }
  }
  const leaf = new DeviceCertificate(v.leaf.pem)
  t.same(leaf.sanDns, v.leaf.sanDns)
  t.same(leaf.sanUris, v.leaf.sanUris, 'the parent marker is a URI SAN')
  t.equal(leaf.parentCn, v.leaf.parentCn)
  t.same(leaf.extKeyUsage, v.leaf.extKeyUsage)
  t.equal(new DeviceCertificate(v.root.pem).parentCn, undefined, 'a root has no parent')
})

for (const provider of [nodePki, portablePki]) {
  t.test(`${provider.name}: verifyChain accepts the OpenSSL-made leaf under the OpenSSL-made root`, async t => {
    const info = verifyChain(v.leaf.pem, v.root.pem, v.leaf.notBefore + 60, provider)
    t.equal(info.cn, v.leaf.cn)
    t.equal(info.parentCn, v.leaf.parentCn)
    t.equal(toHex(info.spkiHash), v.leaf.spkiHash)
    t.equal(toHex(info.certHash), v.leaf.certHash)
    t.equal(info.notAfter, v.leaf.notAfter)
    t.throws(() => verifyChain(v.leaf.pem, v.root.pem, v.leaf.notBefore - 1, provider), { code: 'CERT_NOT_YET_VALID' })
  })
}

t.test('parseCsr reads an OpenSSL-made CSR and the CA check accepts it', async t => {
  const csr = parseCsr(v.csr.pem)
  t.equal(csr.cn, v.csr.cn)
  t.same(csr.sanDns, v.csr.sanDns)
  t.same(csr.sanUris, v.csr.sanUris)
  t.equal(csr.parentCn, v.csr.parentCn)
  t.equal(csr.signatureValid, true)
  t.equal(toHex(nodeCrypto.sha256(csr.spkiDer)), v.csr.spkiHash)
  const auth = { cn: v.csr.cn, parentCn: v.csr.parentCn, spkiHash: fromHex(v.csr.spkiHash), notAfter: v.leaf.notAfter }
  t.equal(checkCsrAgainstAuthorization(v.csr.pem, auth, nodeCrypto).cn, v.csr.cn)
})

t.test(
  'an OpenSSL-made leaf and CSR with the retired DNS:parent.<CN> marker are refused with their own codes',
  async t => {
    const old = new DeviceCertificate(v.oldLeaf.pem)
    t.same(
      [old.sanDns, old.sanUris, old.parentCn],
      [v.oldLeaf.sanDns, v.oldLeaf.sanUris, undefined],
      'read as DNS names, naming no parent',
    )
    for (const provider of [nodePki, portablePki]) {
      t.throws(
        () => verifyChain(v.oldLeaf.pem, v.root.pem, v.oldLeaf.notBefore + 60, provider),
        { code: v.oldLeaf.refusal, message: /renew/ },
        provider.name,
      )
    }
    const csr = parseCsr(v.oldCsr.pem)
    t.same([csr.sanDns, csr.sanUris, csr.signatureValid], [v.oldCsr.sanDns, v.oldCsr.sanUris, true])
    const auth = {
      cn: v.oldCsr.cn,
      parentCn: v.csr.parentCn,
      spkiHash: fromHex(v.oldCsr.spkiHash),
      notAfter: v.leaf.notAfter,
    }
    t.throws(() => checkCsrAgainstAuthorization(v.oldCsr.pem, auth, nodeCrypto), { code: v.oldCsr.refusal })
  },
)
