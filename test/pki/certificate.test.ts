import t from 'tap'
import { createHash } from 'node:crypto'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import { DeviceCertificate, tryParseCertificate } from '../../agent/pki/certificate.ts'
import { fleetDomainOfRootCn, fleetRootCn } from '../../agent/pki/root-name.ts'
import { createFleetRoot } from '../../agent/pki/root.ts'
import { makeFleet, nowSeconds } from './_fleet.ts'

const now = nowSeconds()
const fleet = await makeFleet(now)
const child = await fleet.enroll(fleet.l0.cn)

t.test('fields of an issued certificate', async t => {
  let hashed = 0
  const cert = new DeviceCertificate(child.cert.pem, {
    sha256: d => {
      hashed++
      return nodeCrypto.sha256(d)
    },
  })
  t.equal(cert.cn, child.cn)
  t.same(cert.sanDns, [child.cn], 'the CN is the one DNS name: no DNS:parent. entry')
  t.same(cert.sanUris, [`kin://${fleet.domain}/parent/${fleet.l0.cn.split('.')[0]}`])
  t.equal(cert.parentCn, fleet.l0.cn)
  t.same(cert.parentCns, [fleet.l0.cn])
  t.equal(cert.isCA, false)
  t.same(cert.keyUsage, ['digitalSignature', 'keyEncipherment'])
  t.same(cert.extKeyUsage, ['serverAuth', 'clientAuth'])
  t.same(cert.spkiDer, child.keys.spkiDer)
  t.equal(cert.publicKeyPem, child.keys.publicKeyPem)
  t.equal(toHex(cert.spkiHash), createHash('sha256').update(child.keys.spkiDer).digest('hex'))
  t.equal(toHex(cert.certHash), createHash('sha256').update(cert.der).digest('hex'))
  t.equal(hashed, 2)
  t.equal(cert.spkiHash, cert.spkiHash, 'cached: the same array on every read')
  t.equal(cert.certHash, cert.certHash)
  t.equal(hashed, 2, 'no hashing after the first read')
  t.equal(cert.pem, child.cert.pem)
  t.equal(DeviceCertificate.from(cert), cert, 'from() returns a parsed certificate as is')
})

t.test("the DER is copied: later changes to the caller's bytes do not reach the certificate", async t => {
  const bytes = child.cert.der.slice()
  const cert = new DeviceCertificate(bytes)
  bytes.fill(0)
  t.equal(cert.cn, child.cn)
  t.equal(toHex(cert.certHash), child.cert.certHashHex)
})

t.test('root: CA, no parent, its CN names the fleet domain', async t => {
  t.equal(fleet.root.isCA, true)
  t.equal(fleet.root.pathLength, 0)
  t.equal(fleet.root.parentCn, undefined)
  t.equal(fleet.root.cn, fleetRootCn(fleet.domain))
  t.equal(fleetDomainOfRootCn(fleet.root.cn), fleet.domain)
  t.throws(() => fleetDomainOfRootCn('Cowboy Bottling Root CA'), { code: 'CERT_CHAIN' })
  t.throws(() => fleetDomainOfRootCn('kinship fleet root NOT A DOMAIN'), { code: 'CERT_CHAIN' })
  await t.rejects(createFleetRoot({ domain: 'Bad Domain', keyPair: fleet.rootKeys, now }), { code: 'FLEET_DOMAIN' })
  await t.rejects(
    createFleetRoot({
      domain: fleet.domain,
      keyPair: { ...fleet.rootKeys, publicKeyPem: fleet.l0.keys.publicKeyPem },
      now,
    }),
    { code: 'BAD_ARGUMENT' },
  )
})

t.test('tryParseCertificate: null for garbage, the certificate otherwise', async t => {
  t.equal(tryParseCertificate(new Uint8Array([1, 2, 3])), null)
  t.equal(tryParseCertificate(child.cert.der)?.cn, child.cn)
})
