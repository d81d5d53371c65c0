import t from 'tap'
import { X509Certificate } from 'node:crypto'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { portablePki } from '../../agent/portable/pki.ts'
import { isKinError, type KinErrorCode } from '../../agent/errors.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { verifyChain } from '../../agent/pki/chain.ts'
import { createFleetRoot } from '../../agent/pki/root.ts'
import { buildLeafCertificate } from '../../agent/pki/leaf-profile.ts'
import { spkiDerFromPublicKeyPem } from '../../agent/pki/keys.ts'
import type { PkiProvider } from '../../agent/ports/pki.ts'
import { parentMarker } from '../../agent/ledger/names.ts'
import { oddCertificate, type OddCertificate } from './_odd.ts'
import { DAY, freshCn, makeFleet, nowSeconds } from './_fleet.ts'

const now = nowSeconds()
const fleet = await makeFleet(now)
const leafKeys = await nodePki.generateTlsKeyPair()
const strangerKeys = await nodePki.generateTlsKeyPair()
const cn = freshCn(),
  parent = fleet.l0.cn
const rootCn = fleet.root.cn

function odd(changes: Partial<OddCertificate>): Uint8Array {
  return oddCertificate({
    cn,
    sanDns: [cn],
    sanUris: [parentMarker(parent)],
    notBefore: now - 300,
    notAfter: now + DAY,
    issuerCn: rootCn,
    issuerKeyPem: fleet.rootKeys.privateKeyPem,
    subjectPublicKeyPem: leafKeys.publicKeyPem,
    ...changes,
  })
}

function flip(der: Uint8Array, index: number): Uint8Array {
  const out = der.slice()
  out[index < 0 ? der.length + index : index]! ^= 0x01
  return out
}

// A root that expired long ago, and a leaf it signed that is itself current.
const oldRoot = await createFleetRoot({
  domain: fleet.domain,
  keyPair: strangerKeys,
  now: now - 40 * 365 * DAY,
  years: 1,
  randomBytes: nodeCrypto.randomBytes,
})
const underOldRoot = await buildLeafCertificate({
  root: oldRoot,
  rootKeyPem: strangerKeys.privateKeyPem,
  cn,
  parentCn: parent,
  spki: spkiDerFromPublicKeyPem(leafKeys.publicKeyPem),
  notBefore: now - 300,
  notAfter: now + DAY,
  randomBytes: nodeCrypto.randomBytes,
})
const good = odd({})
const tbsCnAt = Buffer.from(good).indexOf(Buffer.from(cn)) + 2

/** [name, certificate DER, the root it is checked against, expected code or 'ok']. */
const corpus: [string, Uint8Array, DeviceCertificate, KinErrorCode | 'ok'][] = [
  ['good leaf (forge-built)', good, fleet.root, 'ok'],
  ['good leaf (issued)', (await fleet.enroll(parent)).cert.der, fleet.root, 'ok'],
  ['L0 leaf, no parent marker', fleet.l0.cert.der, fleet.root, 'ok'],
  ['expired', odd({ notBefore: now - 10 * DAY, notAfter: now - 1 }), fleet.root, 'CERT_EXPIRED'],
  ['not yet valid', odd({ notBefore: now + 60, notAfter: now + DAY }), fleet.root, 'CERT_NOT_YET_VALID'],
  ['root expired', underOldRoot.der, oldRoot, 'CERT_EXPIRED'],
  ['wrong issuer key, root name copied', odd({ issuerKeyPem: strangerKeys.privateKeyPem }), fleet.root, 'CERT_CHAIN'],
  ['root key, other issuer name', odd({ issuerCn: 'kinship fleet root other.example' }), fleet.root, 'CERT_CHAIN'],
  ['tampered signature byte', flip(good, -7), fleet.root, 'CERT_CHAIN'],
  ['tampered CN byte in the signed part', flip(good, tbsCnAt), fleet.root, 'CERT_CHAIN'],
  ['SHA-1 signature by the root', odd({ digest: 'sha1' }), fleet.root, 'SIGNATURE_SHA1'],
  ['the root itself as leaf', fleet.root.der, fleet.root, 'CERT_KEY_USAGE'],
  ['CA:true leaf', odd({ isCA: true }), fleet.root, 'CERT_KEY_USAGE'],
  ['missing clientAuth EKU', odd({ extKeyUsage: { serverAuth: true } }), fleet.root, 'CERT_KEY_USAGE'],
  ['missing serverAuth EKU', odd({ extKeyUsage: { clientAuth: true } }), fleet.root, 'CERT_KEY_USAGE'],
  ['no extKeyUsage', odd({ extKeyUsage: null }), fleet.root, 'CERT_KEY_USAGE'],
  ['no digitalSignature', odd({ keyUsage: { keyEncipherment: true } }), fleet.root, 'CERT_KEY_USAGE'],
  [
    'leaf asserting keyCertSign',
    odd({ keyUsage: { digitalSignature: true, keyCertSign: true } }),
    fleet.root,
    'CERT_KEY_USAGE',
  ],
  ['SAN without DNS:<CN>', odd({ sanDns: [] }), fleet.root, 'CERT_NAMES'],
  ['no SAN at all', odd({ sanDns: [], sanUris: [] }), fleet.root, 'CERT_NAMES'],
  ['two parent entries', odd({ sanUris: [parentMarker(parent), parentMarker(freshCn())] }), fleet.root, 'CERT_NAMES'],
  ['extra DNS entry', odd({ sanDns: [cn, 'www.example.com'] }), fleet.root, 'CERT_NAMES'],
  ['IP address SAN entry', odd({ sanIp: '127.0.0.1' }), fleet.root, 'CERT_NAMES'],
  ['CN outside the fleet', odd({ cn: 'lock.example.com', sanDns: ['lock.example.com'] }), fleet.root, 'CERT_NAMES'],
  [
    'parent outside the fleet',
    odd({ sanUris: [parentMarker('abcdefghijklmnop.example.com')] }),
    fleet.root,
    'CERT_NAMES',
  ],
  [
    'parent label not base32',
    odd({ sanUris: [`kin://${fleet.domain}/parent/abcdefghijklmno1`] }),
    fleet.root,
    'CERT_NAMES',
  ],
  ['URI that is not a parent marker', odd({ sanUris: ['https://example.com/'] }), fleet.root, 'CERT_NAMES'],
  ['parent marker with a query', odd({ sanUris: [`${parentMarker(parent)}?x=1`] }), fleet.root, 'CERT_NAMES'],
  [
    'parent marker with an upper-case domain',
    odd({ sanUris: [parentMarker(parent).replace('kin://', 'kin://X')] }),
    fleet.root,
    'CERT_NAMES',
  ],
  ['parent marker as a dNSName', odd({ sanDns: [cn, parentMarker(parent)], sanUris: [] }), fleet.root, 'CERT_NAMES'],
  [
    'old DNS:parent. marker only',
    odd({ sanDns: [cn, `parent.${parent}`], sanUris: [] }),
    fleet.root,
    'CERT_OLD_PARENT_MARKER',
  ],
  [
    'old DNS:parent. marker beside the URI',
    odd({ sanDns: [cn, `parent.${parent}`] }),
    fleet.root,
    'CERT_OLD_PARENT_MARKER',
  ],
  ['own parent', odd({ sanUris: [parentMarker(cn)] }), fleet.root, 'CERT_NAMES'],
  [
    'unknown critical extension',
    odd({ extraExtensions: [{ id: '1.3.6.1.4.1.99999.1', critical: true, value: '\x05\x00' }] }),
    fleet.root,
    'CERT_PARSE',
  ],
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
