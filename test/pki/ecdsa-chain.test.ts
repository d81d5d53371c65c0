// DESIGN.md "Key types": chains with ECDSA P-256 keys and signatures verify on every path (node:crypto, portable,
// kin-core), fleets mixing RSA and P-256 work, and what kinship does not accept is refused with its own code before
// any signature arithmetic. Certificates are built with @peculiar/x509 (test/pki/_ecdsa.ts).
import t from 'tap'
import { verifyChain } from '../../agent/pki/chain.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { portablePki } from '../../agent/portable/pki.ts'
import { verifyCertificateChain } from '../../agent/core.ts'
import { parseCsr } from '../../agent/pki/csr-parse.ts'
import { nodeVerifier } from '../../runtime/node/verifier.ts'
import { nodeSigning } from '../../runtime/node/signing.ts'
import { portableSigning } from '../../agent/portable/signing.ts'
import { ECDSA_P256, RSA_2048, ecdsaLeaf, ecdsaRoot, keyPair, privateKeyPem } from './_ecdsa.ts'
import { DOMAIN, nowSeconds } from './_fleet.ts'
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { webcrypto } from 'node:crypto'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { checkCsrAgainstAuthorization } from '../../agent/pki/csr-check.ts'
import { parentMarker } from '../../agent/ledger/names.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import {
  ChallengeVerifier,
  answerChallenge,
  decodeChallenge,
  encodeChallengeAnswer,
} from '../../agent/access/challenge.ts'
import { refusalDecision } from '../../agent/access/session.ts'

const now = nowSeconds()
const ecRootKeys = await keyPair(ECDSA_P256),
  rsaRootKeys = await keyPair(RSA_2048)
const ecRoot = await ecdsaRoot(ecRootKeys, now),
  rsaRoot = await ecdsaRoot(rsaRootKeys, now, RSA_2048)
const ecKeys = await keyPair(ECDSA_P256),
  rsaKeys = await keyPair(RSA_2048)
const parentCn = `abcdefghijklmnop.${DOMAIN}`

function codeOf(f: () => unknown): string {
  try {
    f()
    return 'ok'
  } catch (e) {
    return (e as { code?: string }).code ?? `NOT_A_KIN_ERROR ${e}`
  }
}
function verdicts(leaf: Uint8Array, root: Uint8Array): string[] {
  return [
    codeOf(() => verifyChain(leaf, root, now, nodePki)),
    codeOf(() => verifyChain(leaf, root, now, portablePki)),
    codeOf(() => verifyCertificateChain(leaf, root, now)),
  ]
}
function outerAlgorithmTo(der: Uint8Array, lastOidByte: number): Uint8Array {
  // ecdsa-with-SHA256 1.2.840.10045.4.3.2 last appears in the outer signatureAlgorithm.
  const copy = der.slice(),
    oid = Buffer.from('2a8648ce3d040302', 'hex')
  const at = Buffer.from(copy).lastIndexOf(oid)
  copy[at + oid.length - 1] = lastOidByte
  return copy
}

t.test('P-256 and RSA in every combination verify on node, portable and kin-core', async t => {
  for (const [what, rootKeys, root, subjectKey, signingAlgorithm] of [
    ['P-256 root, P-256 leaf', ecRootKeys, ecRoot, ecKeys.publicKey, ECDSA_P256],
    ['P-256 root, RSA leaf', ecRootKeys, ecRoot, rsaKeys.publicKey, ECDSA_P256],
    ['RSA root, P-256 leaf', rsaRootKeys, rsaRoot, ecKeys.publicKey, RSA_2048],
  ] as const) {
    const leaf = await ecdsaLeaf({ rootKeys, subjectKey, now, parentCn, signingAlgorithm })
    t.same(verdicts(leaf.der, root), ['ok', 'ok', 'ok'], what)
    const info = verifyChain(leaf.der, root, now, portablePki)
    t.same(verifyCertificateChain(leaf.der, root, now), info, `${what}: kin-core's ChainInfo is agent/pki's`)
  }
})

t.test('refusals, each with its own code on every path, before any signature arithmetic', async t => {
  const p384 = await keyPair({ name: 'ECDSA', namedCurve: 'P-384' })
  const ed = await keyPair({ name: 'Ed25519' })
  const good = (await ecdsaLeaf({ rootKeys: ecRootKeys, subjectKey: ecKeys.publicKey, now, parentCn })).der
  const tampered = good.slice()
  tampered[tampered.length - 5]! ^= 1
  const otherRoot = await keyPair(ECDSA_P256)
  const cases: [string, Uint8Array, Uint8Array, string][] = [
    [
      'leaf key on P-384',
      (await ecdsaLeaf({ rootKeys: ecRootKeys, subjectKey: p384.publicKey, now, parentCn })).der,
      ecRoot,
      'EC_CURVE',
    ],
    [
      'root key on P-384',
      (
        await ecdsaLeaf({
          rootKeys: p384,
          subjectKey: ecKeys.publicKey,
          now,
          parentCn,
          signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
        })
      ).der,
      await ecdsaRoot(p384, now, { name: 'ECDSA', hash: 'SHA-256' }),
      'EC_CURVE',
    ],
    [
      'leaf key Ed25519',
      (await ecdsaLeaf({ rootKeys: ecRootKeys, subjectKey: ed.publicKey, now, parentCn })).der,
      ecRoot,
      'KEY_TYPE',
    ],
    [
      'ECDSA with SHA-1',
      (
        await ecdsaLeaf({
          rootKeys: ecRootKeys,
          subjectKey: ecKeys.publicKey,
          now,
          parentCn,
          signingAlgorithm: { name: 'ECDSA', hash: 'SHA-1' },
        })
      ).der,
      ecRoot,
      'SIGNATURE_SHA1',
    ],
    [
      'ECDSA with SHA-384',
      (
        await ecdsaLeaf({
          rootKeys: ecRootKeys,
          subjectKey: ecKeys.publicKey,
          now,
          parentCn,
          signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' },
        })
      ).der,
      ecRoot,
      'SIGNATURE_ALGORITHM',
    ],
    ['outer algorithm differs from inner', outerAlgorithmTo(good, 0x03), ecRoot, 'SIGNATURE_ALGORITHM_MISMATCH'],
    ['ECDSA signature checked against an RSA root', good, rsaRoot, 'SIGNATURE_KEY_MISMATCH'],
    [
      'another P-256 key signed it',
      (await ecdsaLeaf({ rootKeys: otherRoot, subjectKey: ecKeys.publicKey, now, parentCn })).der,
      ecRoot,
      'CERT_CHAIN',
    ],
    ['signature byte flipped', tampered, ecRoot, 'CERT_CHAIN'],
  ]
  for (const [what, leaf, root, code] of cases) t.same(verdicts(leaf, root), [code, code, code], what)
})

t.test("L0 checks a P-256 CSR's signature on both paths (docs/PAIRING.md step 5)", async t => {
  const cn = `qrstuvwxyzabcdef.${DOMAIN}`
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: `CN=${cn}`,
      keys: ecKeys,
      signingAlgorithm: ECDSA_P256,
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: cn }])],
    },
    webcrypto as never,
  )
  const der = new Uint8Array(csr.rawData)
  t.equal(parseCsr(der, { verifier: nodeVerifier }).signatureValid, true, 'node')
  t.equal(parseCsr(der).signatureValid, true, 'portable')
  t.same(parseCsr(der).sanDns, [cn])
  const damaged = der.slice()
  damaged[damaged.length - 3]! ^= 1
  t.equal(parseCsr(damaged, { verifier: nodeVerifier }).signatureValid, false, 'node: damaged')
  t.equal(parseCsr(damaged).signatureValid, false, 'portable: damaged')
})

t.test('challenge signatures with a P-256 key: node and portable sign, both verify', async t => {
  const pem = await privateKeyPem(ecKeys.privateKey)
  const spki = new Uint8Array(await webcrypto.subtle.exportKey('spki', ecKeys.publicKey))
  const message = new TextEncoder().encode('kinship/challenge/v1\0…')
  for (const signer of [nodeSigning, portableSigning]) {
    const signature = signer.sign(pem, message)
    for (const verifier of [nodeSigning, portableSigning]) {
      t.equal(verifier.verify(spki, message, signature), true, `${signer.name} signs, ${verifier.name} verifies`)
      t.equal(
        verifier.verify(spki, message.subarray(1), signature),
        false,
        `${signer.name} signs, ${verifier.name} refuses another message`,
      )
    }
  }
  const p384 = await keyPair({ name: 'ECDSA', namedCurve: 'P-384' })
  const p384Pem = await privateKeyPem(p384.privateKey)
  t.equal(
    codeOf(() => nodeSigning.sign(p384Pem, message)),
    'BAD_ARGUMENT',
    'node refuses to sign with P-384',
  )
})

t.test('the CA refuses a CSR by its algorithm and key before any arithmetic, each with its own code', async t => {
  const cn = `qrstuvwxyzabcdef.${DOMAIN}`
  async function csrWith(keys: Awaited<ReturnType<typeof keyPair>>, signingAlgorithm: object): Promise<Uint8Array> {
    const csr = await x509.Pkcs10CertificateRequestGenerator.create(
      {
        name: `CN=${cn}`,
        keys,
        signingAlgorithm: signingAlgorithm as never,
        extensions: [
          new x509.SubjectAlternativeNameExtension([
            { type: 'dns', value: cn },
            { type: 'url', value: parentMarker(parentCn) },
          ]),
        ],
      },
      webcrypto as never,
    )
    return new Uint8Array(csr.rawData)
  }
  const spkiHashOf = async (keys: Awaited<ReturnType<typeof keyPair>>): Promise<Uint8Array> =>
    nodeCrypto.sha256(new Uint8Array(await webcrypto.subtle.exportKey('spki', keys.publicKey)))
  const p384 = await keyPair({ name: 'ECDSA', namedCurve: 'P-384' })
  const cases: [string, Awaited<ReturnType<typeof keyPair>>, object, string][] = [
    ['P-256, ecdsa-with-SHA256', ecKeys, ECDSA_P256, 'ok'],
    ['P-256, ecdsa-with-SHA1', ecKeys, { name: 'ECDSA', hash: 'SHA-1' }, 'SIGNATURE_SHA1'],
    ['P-256, ecdsa-with-SHA384', ecKeys, { name: 'ECDSA', hash: 'SHA-384' }, 'SIGNATURE_ALGORITHM'],
    ['P-384 key', p384, { name: 'ECDSA', hash: 'SHA-256' }, 'EC_CURVE'],
    ['RSA-2048, sha256WithRSAEncryption', rsaKeys, RSA_2048, 'ok'],
  ]
  for (const [what, keys, algorithm, code] of cases) {
    const auth = { cn, parentCn, spkiHash: await spkiHashOf(keys), notAfter: now + 86400 }
    const csr = await csrWith(keys, algorithm)
    t.equal(
      codeOf(() => checkCsrAgainstAuthorization(csr, auth, nodeCrypto)),
      code,
      what,
    )
  }
})

t.test('a challenge answered with a P-256 key is proven; one from an Ed25519 certificate is KEY_TYPE', async t => {
  const leaf = await ecdsaLeaf({ rootKeys: ecRootKeys, subjectKey: ecKeys.publicKey, now, parentCn })
  const pem = await privateKeyPem(ecKeys.privateKey)
  const verifierCn = `zyxwvutsrqponmlk.${DOMAIN}`
  for (const signing of [nodeSigning, portableSigning]) {
    const verifier = new ChallengeVerifier({
      self: verifierCn,
      randomBytes: nodeCrypto.randomBytes,
      signing,
      clock: { now: () => now },
    })
    const decider = {
      certificate: (der: Uint8Array) => new DeviceCertificate(der),
      decide: () => refusalDecision('POLICY_ACTION', 'proven; the decision itself is not under test', 'unlock', now),
    }
    const answer = answerChallenge(
      verifier.issue('unlock'),
      { certificateDer: leaf.der, privateKeyPem: pem, verifierCn, action: 'unlock' },
      nodeSigning,
    )
    t.equal(
      verifier.verify(answer, decider).code,
      'POLICY_ACTION',
      `${signing.name}: possession proven, the decision runs`,
    )
    const forged = answerChallenge(
      verifier.issue('unlock'),
      {
        certificateDer: leaf.der,
        privateKeyPem: await privateKeyPem((await keyPair(ECDSA_P256)).privateKey),
        verifierCn,
        action: 'unlock',
      },
      nodeSigning,
    )
    t.equal(verifier.verify(forged, decider).code, 'CHALLENGE_SIGNATURE', `${signing.name}: another P-256 key`)
  }
  const ed = await keyPair({ name: 'Ed25519' })
  const edLeaf = await ecdsaLeaf({ rootKeys: ecRootKeys, subjectKey: ed.publicKey, now, parentCn })
  const verifier = new ChallengeVerifier({
    self: verifierCn,
    randomBytes: nodeCrypto.randomBytes,
    signing: nodeSigning,
    clock: { now: () => now },
  })
  const challenge = decodeChallenge(verifier.issue('unlock'))
  const answer = encodeChallengeAnswer({
    nonce: challenge.nonce,
    certificateDer: edLeaf.der,
    signature: new Uint8Array(64),
  })
  t.equal(
    verifier.verify(answer, {
      certificate: der => new DeviceCertificate(der),
      decide: () => {
        throw new Error('not reached')
      },
    }).code,
    'KEY_TYPE',
  )
})
