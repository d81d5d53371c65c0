import t from 'tap'
import { X509Certificate } from 'node:crypto'
import { nodePki } from '../../runtime/node/pki.ts'
import { portablePki } from '../../agent/portable/pki.ts'
import { isKinError } from '../../agent/errors.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { verifyChain } from '../../agent/pki/chain.ts'
import type { PkiProvider } from '../../agent/ports/pki.ts'
import { certificateCorpus, type CorpusCase } from '../helpers/certificate-corpus.ts'
import { nowSeconds } from './_fleet.ts'

const now = nowSeconds()
const { fleet, odd, cases } = await certificateCorpus(now)

/** The shared corpus, plus a leaf the native path refuses for its missing serverAuth EKU. */
const corpus: CorpusCase[] = [
  ...cases,
  ['missing serverAuth EKU', odd({ extKeyUsage: { clientAuth: true } }), fleet.root, 'CERT_KEY_USAGE'],
]

function verdict(der: Uint8Array, root: DeviceCertificate, provider: PkiProvider): string {
  try {
    verifyChain(der, root, now, provider)
    return 'ok'
  } catch (e) {
    if (isKinError(e)) return e.code
    throw e
  }
}

t.test('native and portable paths give the same verdict and code for every certificate', async t => {
  for (const [name, der, root, expected] of corpus) {
    const native = verdict(der, root, nodePki),
      portable = verdict(der, root, portablePki)
    t.equal(native, expected, `${name}: native`)
    t.equal(portable, native, `${name}: portable agrees`)
  }
})

t.test('the providers agree on the bare signature check (root as issuer)', async t => {
  for (const [name, der, root] of corpus) {
    t.equal(
      portablePki.verifyCertificateSignature(der, root.der),
      nodePki.verifyCertificateSignature(der, root.der),
      name,
    )
  }
})

t.test('DeviceCertificate fields match what node:crypto X509Certificate reports', async t => {
  for (const [name, der] of corpus) {
    let cert: DeviceCertificate
    try {
      cert = new DeviceCertificate(der)
    } catch (e) {
      t.ok(isKinError(e, 'CERT_PARSE'), `${name}: refused at parse`)
      continue
    }
    const x = new X509Certificate(der)
    t.equal(x.subject, `CN=${cert.cn}`, `${name}: subject`)
    t.equal(Date.parse(x.validFrom) / 1000, cert.notBefore, `${name}: notBefore`)
    t.equal(Date.parse(x.validTo) / 1000, cert.notAfter, `${name}: notAfter`)
    // X509Certificate.ca is OpenSSL's X509_check_ca: basicConstraints cA and, when keyUsage is present, keyCertSign.
    t.equal(x.ca, cert.isCA && (cert.keyUsage === undefined || cert.keyUsage.includes('keyCertSign')), `${name}: CA`)
    t.equal(x.serialNumber.toLowerCase(), cert.serialHex, `${name}: serial`)
    t.equal(x.fingerprint256.replace(/:/g, '').toLowerCase(), toHex(cert.certHash), `${name}: certHash`)
    t.same(new Uint8Array(x.publicKey.export({ type: 'spki', format: 'der' })), cert.spkiDer, `${name}: SPKI`)
    const san = [
      ...cert.sanDns.map(d => `DNS:${d}`),
      ...cert.sanUris.map(u => `URI:${u}`),
      ...(cert.sanOtherCount > 0 ? ['IP Address:127.0.0.1'] : []),
    ].join(', ')
    t.equal(x.subjectAltName ?? '', san, `${name}: SAN`)
    const ekuNames: Record<string, string> = { '1.3.6.1.5.5.7.3.1': 'serverAuth', '1.3.6.1.5.5.7.3.2': 'clientAuth' }
    t.same(
      (x.keyUsage ?? []).map(o => ekuNames[o] ?? o),
      cert.extKeyUsage ?? [],
      `${name}: extKeyUsage`,
    )
  }
})
