// L0's MQTT login over real TLS with a certificate of the retired form: the fleet CA's signature, the device's own CN
// and key, but the parent named as DNS:parent.<P>. Refused with CONNACK 5 and the code CERT_OLD_PARENT_MARKER.
import t from 'tap'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { toBinary } from '../../agent/pki/_forge.ts'
import { derToPem } from '../../agent/pki/pem.ts'
import { oddCertificate } from '../pki/_odd.ts'
import { connectDevice, end, enrollDirect, logRecord, makeL0Home, nowSeconds, startTestL0, tryConnect, withHomeLedger } from './_fleet.ts'

const l0 = await makeL0Home()
const phone = await withHomeLedger(l0, ledger => enrollDirect(l0, ledger, l0.self, { role: 'member', name: 'owner phone' }))
const { services, logs } = await startTestL0(l0)
t.teardown(() => services.close())

t.test('a device presenting its certificate in the old DNS:parent.<P> form is refused CERT_OLD_PARENT_MARKER', async t => {
  const now = nowSeconds(), root = l0.fleet.root
  const current = new DeviceCertificate(phone.certPem)
  t.equal(current.parentCn, l0.cn, 'the current certificate names L0 by the URI marker')
  const old = derToPem(oddCertificate({
    cn: phone.cn, sanDns: [phone.cn, `parent.${l0.cn}`], notBefore: now - 300, notAfter: now + 86400,
    issuerCn: root.cn, issuerKeyPem: l0.fleet.rootKey.privateKeyPem, subjectPublicKeyPem: current.publicKeyPem,
    extraExtensions: [{ name: 'subjectKeyIdentifier' }, { name: 'authorityKeyIdentifier', keyIdentifier: toBinary(root.subjectKeyId!) }],
  }), 'CERTIFICATE')
  const o = await tryConnect(services, { clientId: phone.cn, cert: old, key: phone.keyPem })
  t.equal(o.client, undefined)
  t.equal(o.returnCode, 5, 'not authorized')
  const rec = await logRecord(logs, r => r.event === 'login.refused' && r.clientId === phone.cn)
  t.equal(rec.code, 'CERT_OLD_PARENT_MARKER')
  t.match(String(rec.message ?? rec.reason ?? ''), /renew/, 'the log says what to do')
  // The control: the same device, key and client id with its current certificate logs in.
  const client = await connectDevice(services, phone)
  t.ok(client.connected)
  await end(client)
})
