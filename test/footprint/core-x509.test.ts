// kin-core's own X.509 path (agent/core.ts: DER reader, BigInt RSA) against agent/pki and node:crypto on the same inputs.
import t from 'tap'
import { createSign, createVerify, generateKeyPairSync } from 'node:crypto'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { isKinError } from '../../agent/errors.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { verifyChain } from '../../agent/pki/chain.ts'
import { CoreCertificate, corePki, oidText, verifyCertificateChain, verifyRsaSha256 } from '../../agent/core.ts'
import { checkPublicKeyParameters, readRsaPublicKey } from '../../agent/pki/key-parameters.ts'
import { certificateCorpus, flip, type CorpusCase } from '../helpers/certificate-corpus.ts'
import { nowSeconds } from '../pki/_fleet.ts'

const now = nowSeconds()
const { fleet, good, odd, cases } = await certificateCorpus(now)

// The corpus test/pki/corpus.test.ts holds the native and forge paths to, plus a year-2050+ leaf and a non-critical
// unknown extension.
const corpus: CorpusCase[] = [
  ...cases,
  ['valid past 2050 (GeneralizedTime)', odd({ notAfter: Date.UTC(2051, 0, 2) / 1000 }), fleet.root, 'ok'],
  [
    'unknown non-critical extension',
    odd({ extraExtensions: [{ id: '1.3.6.1.4.1.99999.1', critical: false, value: '\x05\x00' }] }),
    fleet.root,
    'ok',
  ],
]

function codeOf(run: () => unknown): string {
  try {
    run()
    return 'ok'
  } catch (e) {
    if (isKinError(e)) return e.code
    return `NOT_A_KIN_ERROR: ${String(e)}`
  }
}

t.test('kin-core reaches the verdict and code agent/pki reaches on the native path, for every certificate', async t => {
  for (const [name, der, root, expected] of corpus) {
    const native = codeOf(() => verifyChain(der, root, now, nodePki))
    t.equal(native, expected, `${name}: native`)
    t.equal(
      codeOf(() => verifyCertificateChain(der, root.der, now)),
      native,
      `${name}: kin-core agrees`,
    )
  }
})

t.test('the BigInt signature check agrees with node:crypto on every certificate of the corpus', async t => {
  for (const [name, der, root] of corpus) {
    t.equal(corePki.verifyCertificateSignature(der, root.der), nodePki.verifyCertificateSignature(der, root.der), name)
  }
})

t.test('CoreCertificate reads the fields DeviceCertificate reads', async t => {
  let compared = 0
  for (const [name, der] of corpus) {
    let device: DeviceCertificate
    try {
      device = new DeviceCertificate(der)
    } catch (e) {
      t.ok(isKinError(e, 'CERT_PARSE'), `${name}: agent/pki refuses it at parse`)
      t.equal(
        codeOf(() => new CoreCertificate(der)),
        'CERT_PARSE',
        `${name}: so does kin-core`,
      )
      continue
    }
    const core = new CoreCertificate(der)
    compared++
    for (const field of ['cn', 'notBefore', 'notAfter', 'isCA', 'pathLength', 'sanOtherCount', 'parentCn'] as const) {
      t.equal(core[field], device[field], `${name}: ${field}`)
    }
    for (const field of [
      'sanDns',
      'sanUris',
      'keyUsage',
      'extKeyUsage',
      'parentCns',
      'subjectKeyId',
      'spkiHash',
      'certHash',
      'der',
    ] as const) {
      t.same(core[field], device[field], `${name}: ${field}`)
    }
    t.same(core.layout, device.layout, `${name}: layout`)
  }
  t.ok(compared >= corpus.length - 2, `compared ${compared} certificates field by field`)
})

// The readers differ in where they stop on damage: forge refuses some fields kin-core only carries to the signature
// check (an inner algorithm it compares byte for byte), and the other way round. Both deny; the code is then
// CERT_PARSE on one side and CERT_CHAIN on the other.
t.test(
  'damaged certificates: kin-core refuses whenever agent/pki refuses, with the same or the neighbouring code',
  async t => {
    let refused = 0
    for (let i = 0; i < good.length; i += 3) {
      const damaged = flip(good, i)
      const core = codeOf(() => verifyCertificateChain(damaged, fleet.root.der, now))
      const native = codeOf(() => verifyChain(damaged, fleet.root, now, nodePki))
      t.notMatch(core, /^NOT_A_KIN_ERROR/, `byte ${i}: a coded answer`)
      if (native !== 'ok') {
        t.not(core, 'ok', `byte ${i}: kin-core also refuses (${native})`)
        const neighbours = [core, native].sort().join(' ') === 'CERT_CHAIN CERT_PARSE'
        t.ok(core === native || neighbours, `byte ${i}: kin-core says ${core}, agent/pki ${native}`)
        refused++
      }
    }
    for (const length of [0, 1, 2, 10, 100, good.length - 1]) {
      t.equal(
        codeOf(() => new CoreCertificate(good.subarray(0, length))),
        'CERT_PARSE',
        `truncated to ${length} bytes`,
      )
    }
    t.ok(refused > good.length / 6, `${refused} damaged certificates refused by both`)
  },
)

t.test('RSASSA-PKCS1-v1_5 SHA-256 (RFC 8017 §8.2.2): BigInt verification against node:crypto', async t => {
  // DESIGN.md "Key types": a 1024-bit key is refused before any arithmetic, even with a valid signature.
  const small = generateKeyPairSync('rsa', { modulusLength: 1024 })
  const smallSpki = new Uint8Array(small.publicKey.export({ type: 'spki', format: 'der' }))
  t.equal(
    codeOf(() => checkPublicKeyParameters(smallSpki, 'key')),
    'RSA_KEY_SIZE',
    '1024 bits: RSA_KEY_SIZE',
  )
  t.notOk(
    verifyRsaSha256(
      smallSpki,
      new Uint8Array(1),
      new Uint8Array(createSign('sha256').update(new Uint8Array(1)).sign(small.privateKey)),
    ),
    '1024 bits: a valid signature is refused',
  )
  for (const bits of [2048, 3072]) {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: bits })
    const spki = new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }))
    t.equal(readRsaPublicKey(spki).modulus.length, bits / 8, `${bits}: modulus length`)
    for (let i = 0; i < 4; i++) {
      const message = nodeCrypto.randomBytes(i * 37)
      const signature = new Uint8Array(createSign('sha256').update(message).sign(privateKey))
      t.ok(verifyRsaSha256(spki, message, signature), `${bits}/${i}: valid signature`)
      t.equal(createVerify('sha256').update(message).verify(publicKey, signature), true)
      t.notOk(verifyRsaSha256(spki, Uint8Array.from([...message, 1]), signature), `${bits}/${i}: other message`)
      t.notOk(verifyRsaSha256(spki, message, flip(signature, i * 11)), `${bits}/${i}: damaged signature`)
      t.notOk(verifyRsaSha256(spki, message, signature.subarray(1)), `${bits}/${i}: short signature`)
    }
    // §5.2.2: a signature representative s >= n is refused, not reduced.
    const tooBig = readRsaPublicKey(spki).modulus
    t.notOk(verifyRsaSha256(spki, new Uint8Array(1), tooBig), `${bits}: s = n`)
  }
  const ed = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'der' })
  t.notOk(
    verifyRsaSha256(new Uint8Array(ed), new Uint8Array(1), new Uint8Array(256)),
    'an Ed25519 key is not an RSA key',
  )
  t.notOk(verifyRsaSha256(new Uint8Array(3), new Uint8Array(1), new Uint8Array(256)), 'garbage key')
})

t.test('X.690 §8.19 OBJECT IDENTIFIERs', async t => {
  const cases: [string, string][] = [
    ['551d11', '2.5.29.17'],
    ['2b0601050507030' + '1', '1.3.6.1.5.5.7.3.1'],
    ['2a864886f70d01010b', '1.2.840.113549.1.1.11'],
    ['2b06010401868d1f01', '1.3.6.1.4.1.99999.1'],
    ['8837', '2.999'],
    ['00', '0.0'],
  ]
  for (const [hex, dotted] of cases) t.equal(oidText(Buffer.from(hex, 'hex')), dotted, dotted)
  for (const bad of ['', '2b80', '2b8001', '2b06ff'])
    t.equal(
      codeOf(() => oidText(Buffer.from(bad, 'hex'))),
      'CERT_PARSE',
      `"${bad}" refused`,
    )
  t.equal(toHex(fleet.root.certHash), toHex(new CoreCertificate(fleet.root.der).certHash), 'root hash')
})
