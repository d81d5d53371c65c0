import t, { type Test } from 'tap'
import { createPrivateKey, createPublicKey } from 'node:crypto'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { createPortablePki, portablePki } from '../../agent/portable/pki.ts'
import type { TlsKeyPair } from '../../agent/ports/pki.ts'
import { pemToDer } from '../../agent/pki/pem.ts'
import { createCsr } from '../../agent/pki/csr.ts'
import { issueDeviceCertificate } from '../../agent/pki/issue.ts'
import { verifyChain } from '../../agent/pki/chain.ts'
import { createFleetRoot } from '../../agent/pki/root.ts'
import { DAY, freshCn, makeFleet, nowSeconds } from './_fleet.ts'

const now = nowSeconds()
const fleet = await makeFleet(now)

async function checkUsable(t: Test, keys: TlsKeyPair): Promise<void> {
  t.match(keys.privateKeyPem, /^-----BEGIN PRIVATE KEY-----\n/, 'PKCS#8 PEM')
  const priv = createPrivateKey(keys.privateKeyPem),
    pub = createPublicKey(keys.publicKeyPem)
  t.equal(priv.asymmetricKeyType, 'rsa')
  t.equal(priv.asymmetricKeyDetails?.modulusLength, 2048)
  t.equal(priv.asymmetricKeyDetails?.publicExponent, 65537n)
  t.same(
    new Uint8Array(createPublicKey(priv).export({ type: 'spki', format: 'der' })),
    keys.spkiDer,
    'public key belongs to the private key',
  )
  t.same(new Uint8Array(pub.export({ type: 'spki', format: 'der' })), keys.spkiDer)
  t.same(pemToDer(keys.publicKeyPem, 'PUBLIC KEY', 'BAD_ARGUMENT'), keys.spkiDer)
  const cn = freshCn()
  const cert = await issueDeviceCertificate({
    ...fleet.ca,
    csrPem: await createCsr({ cn, parentCn: fleet.l0.cn, keyPair: keys }),
    auth: { cn, parentCn: fleet.l0.cn, spkiHash: nodeCrypto.sha256(keys.spkiDer), notAfter: now + DAY },
  })
  t.same(cert.spkiDer, keys.spkiDer)
  for (const verifier of [nodePki, portablePki])
    t.equal(verifyChain(cert, fleet.root, now, verifier).cn, cn, `verified by ${verifier.name}`)
  const root = await createFleetRoot({ domain: 'other.example', keyPair: keys, now })
  t.ok(nodePki.verifyCertificateSignature(root.der, root.der), 'self-signed root from this key verifies')
}

t.test('node: RSA-2048 key pairs, PKCS#8 PEM, usable by CSR, issuance and as a root; each one fresh', async t => {
  const [a, b] = await Promise.all([nodePki.generateTlsKeyPair(), nodePki.generateTlsKeyPair()])
  await checkUsable(t, a)
  t.notSame(a.spkiDer, b.spkiDer)
})

// Pure-JavaScript RSA key generation takes seconds: the test makes exactly one portable key.
t.test('portable: an RSA-2048 key pair from pure JavaScript, equally usable', async t => {
  const draws: number[] = []
  // Counting draws proves forge took its randomness from the provider's source, i.e. did not hand off to node:crypto.
  const counting = createPortablePki({
    ...nodeCrypto,
    randomBytes: n => {
      draws.push(n)
      return nodeCrypto.randomBytes(n)
    },
  })
  t.equal(counting.name, portablePki.name)
  const keys = await counting.generateTlsKeyPair()
  t.ok(draws.length > 0, `forge drew ${draws.length} times from the provider's randomBytes`)
  await checkUsable(t, keys)
})
