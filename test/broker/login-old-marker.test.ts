// L0's MQTT login over real TLS with a certificate of the retired form: the fleet CA's signature, the device's own CN
// and key, but the parent named as DNS:parent.<P>. Refused with CONNACK 5 and the code CERT_OLD_PARENT_MARKER.
import t from 'tap'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { x509Builder } from '../../agent/pki/builder.ts'
import { randomSerialHex } from '../../agent/pki/_build.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import {
  connectDevice,
  end,
  enrollDirect,
  logRecord,
  makeL0Home,
  nowSeconds,
  startTestL0,
  tryConnect,
  withHomeLedger,
} from './_fleet.ts'

const l0 = await makeL0Home()
const phone = await withHomeLedger(l0, ledger =>
  enrollDirect(l0, ledger, l0.self, { role: 'member', name: 'owner phone' }),
)
const { services, logs } = await startTestL0(l0)
t.teardown(() => services.close())

t.test(
  'a device presenting its certificate in the old DNS:parent.<P> form is refused CERT_OLD_PARENT_MARKER',
  async t => {
    const now = nowSeconds(),
      root = l0.fleet.root
    const current = new DeviceCertificate(phone.certPem)
    t.equal(current.parentCn, l0.cn, 'the current certificate names L0 by the URI marker')
    // The leaf profile with the retired SAN, signed by the fleet CA's real key with the fleet's own builder (any key type).
    const old = (
      await x509Builder().buildCertificate(
        {
          subjectCn: phone.cn,
          issuerName: root.layout.subject,
          spki: current.spkiDer,
          notBefore: now - 300,
          notAfter: now + 86400,
          serialHex: randomSerialHex(nodeCrypto.randomBytes),
          extensions: {
            ca: false,
            keyUsage: ['digitalSignature'],
            tlsBothWays: true,
            altNames: { dns: [phone.cn, `parent.${l0.cn}`], uris: [] },
            authorityKeyId: root.subjectKeyId,
          },
        },
        { privateKeyPem: l0.fleet.rootKey.privateKeyPem, spkiDer: root.layout.spki, mismatch: 'not the root key' },
      )
    ).pem
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
  },
)
