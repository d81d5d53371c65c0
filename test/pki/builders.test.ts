import t from 'tap'
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { portablePki } from '../../agent/portable/pki.ts'
import { createFleetRoot } from '../../agent/pki/root.ts'
import { createCsr, parseCsr } from '../../agent/pki/csr.ts'
import { issueDeviceCertificate } from '../../agent/pki/issue.ts'
import { verifyChain } from '../../agent/pki/chain.ts'
import { csrLayout } from '../../agent/pki/layout.ts'
import { pemToDer } from '../../agent/pki/pem.ts'
import { forgeBuilder, nativeBuilder, x509Builder } from '../../agent/pki/builder.ts'
import { DEFAULT_TLS_KEY_TYPE, TLS_KEY_TYPES, parseTlsKeyType, tlsKeyTypeOf } from '../../agent/pki/key-type.ts'
import type { TlsKeyType } from '../../agent/ports/pki.ts'
import { DOMAIN, freshCn, nowSeconds } from './_fleet.ts'

const now = nowSeconds()
const fixedSerial = (n: number): Uint8Array => new Uint8Array(n).fill(0x5a)

t.test('key types: P-256 by default, rsa2048 by choice, anything else KEY_TYPE_UNKNOWN', async t => {
  t.equal(DEFAULT_TLS_KEY_TYPE, 'p256')
  t.same(TLS_KEY_TYPES, ['p256', 'rsa2048'])
  for (const bad of ['rsa', 'RSA2048', 'ed25519', 'p384', '', undefined, 2048])
    t.throws(() => parseTlsKeyType(bad), { code: 'KEY_TYPE_UNKNOWN' }, `${String(bad)} refused`)
  await t.rejects(
    nodePki.generateTlsKeyPair('rsa4096' as TlsKeyType),
    { code: 'KEY_TYPE_UNKNOWN' },
    'node provider refuses an unknown type',
  )
  await t.rejects(
    portablePki.generateTlsKeyPair('p384' as TlsKeyType),
    { code: 'KEY_TYPE_UNKNOWN' },
    'portable provider refuses an unknown type',
  )
  t.equal(x509Builder(), nativeBuilder, 'Node has WebCrypto: the native builder runs')
})

t.test('both providers make P-256 keys node:crypto signs with and whose SPKI is what they say', async t => {
  for (const provider of [nodePki, portablePki]) {
    const keys = await provider.generateTlsKeyPair('p256')
    t.equal(keys.keyType, 'p256', provider.name)
    t.equal(tlsKeyTypeOf(keys.spkiDer), 'p256')
    const privateKey = createPrivateKey(keys.privateKeyPem)
    t.equal(privateKey.asymmetricKeyDetails?.namedCurve, 'prime256v1', `${provider.name}: PKCS#8 P-256`)
    const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' })
    t.same(new Uint8Array(spki), keys.spkiDer, `${provider.name}: SPKI is the private key's public half`)
    const signature = sign('sha256', Buffer.from('kinship'), privateKey)
    t.ok(
      verify('sha256', Buffer.from('kinship'), keys.publicKeyPem, signature),
      `${provider.name}: the pair signs and verifies`,
    )
  }
})

t.test(
  'native and forge builders write the same RSA root, leaf and CSR, byte for byte before the signature',
  async t => {
    const [rootKeys, deviceKeys] = await Promise.all([
      nodePki.generateTlsKeyPair('rsa2048'),
      nodePki.generateTlsKeyPair('rsa2048'),
    ])
    const cn = freshCn(),
      parentCn = freshCn()
    const roots = await Promise.all(
      [nativeBuilder, forgeBuilder].map(builder =>
        createFleetRoot({ domain: DOMAIN, keyPair: rootKeys, now, randomBytes: fixedSerial, builder }),
      ),
    )
    t.same(roots[0]!.layout.signed, roots[1]!.layout.signed, 'root TBSCertificate identical')
    t.same(roots[0]!.der, roots[1]!.der, 'root identical (PKCS#1 v1.5 signatures are deterministic)')
    const csrs = await Promise.all(
      [nativeBuilder, forgeBuilder].map(builder => createCsr({ cn, parentCn, keyPair: deviceKeys, builder })),
    )
    const info = csrs.map(pem => csrLayout(pemToDer(pem, 'CERTIFICATE REQUEST', 'CSR_PARSE')).signed)
    t.same(info[0], info[1], 'CertificationRequestInfo identical')
    const auth = { cn, parentCn, spkiHash: nodeCrypto.sha256(deviceKeys.spkiDer), notAfter: now + 86400 }
    const leaves = await Promise.all(
      [nativeBuilder, forgeBuilder].map(builder =>
        issueDeviceCertificate({
          rootCertPem: roots[0]!,
          rootKeyPem: rootKeys.privateKeyPem,
          now,
          randomBytes: fixedSerial,
          csrPem: csrs[0]!,
          auth,
          builder,
        }),
      ),
    )
    t.same(leaves[0]!.der, leaves[1]!.der, 'leaf identical')
    t.same(leaves[0]!.keyUsage, ['digitalSignature', 'keyEncipherment'], 'an RSA leaf may encipher keys')
  },
)

t.test(
  'P-256: the native builder signs ecdsa-with-SHA256 with a DER signature value; forge refuses with KEY_TYPE_UNSUPPORTED',
  async t => {
    const [rootKeys, deviceKeys] = await Promise.all([
      nodePki.generateTlsKeyPair('p256'),
      nodePki.generateTlsKeyPair('p256'),
    ])
    const root = await createFleetRoot({ domain: DOMAIN, keyPair: rootKeys, now })
    t.same(
      root.layout.algorithm,
      Uint8Array.from(Buffer.from('300a06082a8648ce3d040302', 'hex')),
      'ecdsa-with-SHA256, no parameters (RFC 5758 §3.2)',
    )
    // RFC 5758 §3.2: Ecdsa-Sig-Value SEQUENCE { r INTEGER, s INTEGER }, not WebCrypto's raw 64-byte r||s.
    t.equal(root.layout.signature[0], 0x30, 'the signature value is a DER SEQUENCE')
    t.ok(
      root.layout.signature.length >= 8 &&
        root.layout.signature.length <= 72 &&
        root.layout.signature[1] === root.layout.signature.length - 2,
      'of the length its header says',
    )
    const cn = freshCn(),
      parentCn = freshCn()
    const csrPem = await createCsr({ cn, parentCn, keyPair: deviceKeys })
    const csr = parseCsr(csrPem)
    t.ok(csr.signatureValid, 'the P-256 CSR proves possession')
    const tampered = pemToDer(csrPem, 'CERTIFICATE REQUEST', 'CSR_PARSE')
    tampered[tampered.length - 5]! ^= 1
    t.notOk(parseCsr(tampered).signatureValid, 'a flipped signature bit does not')
    const cert = await issueDeviceCertificate({
      rootCertPem: root,
      rootKeyPem: rootKeys.privateKeyPem,
      now,
      randomBytes: nodeCrypto.randomBytes,
      csrPem: csr,
      auth: { cn, parentCn, spkiHash: nodeCrypto.sha256(deviceKeys.spkiDer), notAfter: now + 86400 },
    })
    t.same(cert.keyUsage, ['digitalSignature'], 'RFC 5480 §3: no keyEncipherment for an EC key')
    t.ok(nodePki.verifyCertificateSignature(cert.der, root.der), 'node verifies the P-256 signature')
    t.equal(verifyChain(cert, root, now, nodePki).cn, cn, 'verifyChain accepts a P-256 leaf under a P-256 root')
    t.ok(cert.der.length < 700, `a P-256 certificate is small (${cert.der.length} bytes)`)
    await t.rejects(createFleetRoot({ domain: DOMAIN, keyPair: rootKeys, now, builder: forgeBuilder }), {
      code: 'KEY_TYPE_UNSUPPORTED',
    })
    await t.rejects(createCsr({ cn, parentCn, keyPair: deviceKeys, builder: forgeBuilder }), {
      code: 'KEY_TYPE_UNSUPPORTED',
    })
  },
)

t.test('mixed fleets: a P-256 root certifies RSA devices and an RSA root certifies P-256 devices', async t => {
  for (const [rootType, deviceType] of [
    ['p256', 'rsa2048'],
    ['rsa2048', 'p256'],
  ] as const) {
    const [rootKeys, deviceKeys] = await Promise.all([
      nodePki.generateTlsKeyPair(rootType),
      nodePki.generateTlsKeyPair(deviceType),
    ])
    const root = await createFleetRoot({ domain: DOMAIN, keyPair: rootKeys, now })
    const cn = freshCn(),
      parentCn = freshCn()
    const cert = await issueDeviceCertificate({
      rootCertPem: root,
      rootKeyPem: rootKeys.privateKeyPem,
      now,
      randomBytes: nodeCrypto.randomBytes,
      csrPem: await createCsr({ cn, parentCn, keyPair: deviceKeys }),
      auth: { cn, parentCn, spkiHash: nodeCrypto.sha256(deviceKeys.spkiDer), notAfter: now + 86400 },
    })
    t.equal(verifyChain(cert, root, now, nodePki).cn, cn, `${deviceType} leaf under a ${rootType} root`)
    t.equal(tlsKeyTypeOf(cert.spkiDer), deviceType)
  }
})

t.test('a signer whose private key is not the public key it claims: BAD_ARGUMENT on both builders', async t => {
  const [a, b] = await Promise.all([nodePki.generateTlsKeyPair('p256'), nodePki.generateTlsKeyPair('p256')])
  await t.rejects(
    createFleetRoot({ domain: DOMAIN, keyPair: { ...a, publicKeyPem: b.publicKeyPem }, now }),
    { code: 'BAD_ARGUMENT' },
    'native, P-256',
  )
  const [c, d] = await Promise.all([nodePki.generateTlsKeyPair('rsa2048'), nodePki.generateTlsKeyPair('p256')])
  await t.rejects(
    createFleetRoot({ domain: DOMAIN, keyPair: { ...c, publicKeyPem: d.publicKeyPem }, now }),
    { code: 'BAD_ARGUMENT' },
    'native, RSA private key with a P-256 public key',
  )
  const e = await nodePki.generateTlsKeyPair('rsa2048')
  await t.rejects(
    createFleetRoot({ domain: DOMAIN, keyPair: { ...c, publicKeyPem: e.publicKeyPem }, now, builder: forgeBuilder }),
    { code: 'BAD_ARGUMENT' },
    'forge, RSA',
  )
})
