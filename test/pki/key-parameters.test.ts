// DESIGN.md "Key types": RSA parameters are checked before any RSA arithmetic (modulus 2048–4096 bits, exponent 65537),
// by one function every path uses: CSR, certificate chain, challenge answer; node:crypto, forge and kin-core's BigInt.
import t from 'tap'
import { generateKeyPairSync } from 'node:crypto'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { portablePki } from '../../agent/portable/pki.ts'
import { nodeSigning } from '../../runtime/node/signing.ts'
import { portableSigning } from '../../agent/portable/signing.ts'
import { corePki, verifyCertificateChain, verifyRsaSha256 as coreVerify } from '../../agent/core.ts'
import { isKinError } from '../../agent/errors.ts'
import { checkPublicKeyParameters, isAcceptedRsaKey, publicKeyKind } from '../../agent/pki/key-parameters.ts'
import { checkCsrAgainstAuthorization } from '../../agent/pki/csr-check.ts'
import { verifyChain } from '../../agent/pki/chain.ts'
import { buildLeafCertificate } from '../../agent/pki/leaf-profile.ts'
import { spkiDerFromPublicKeyPem } from '../../agent/pki/keys.ts'
import {
  ChallengeVerifier,
  answerChallenge,
  decodeChallengeAnswer,
  encodeChallengeAnswer,
} from '../../agent/access/challenge.ts'
import type { Decision } from '../../agent/access/types.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import {
  certificateWithKey,
  csrWithKey,
  rsaSpki,
  signatureFor,
  slowRsaKey,
  type SlowRsaShape,
} from '../helpers/slow-rsa.ts'
import { DAY, makeFleet, nowSeconds } from './_fleet.ts'
import { decodeEnrollRequest, encodeEnrollRequest } from '../../agent/enroll/request.ts'

const now = nowSeconds()
const fleet = await makeFleet(now)
const member = await fleet.enroll(fleet.l0.cn)

function codeOf(run: () => unknown): string {
  try {
    run()
    return 'none'
  } catch (e) {
    return isKinError(e) ? e.code : `not a KinError: ${String(e)}`
  }
}

/** A modulus of exactly `bits` bits (top bit set, odd). */
function modulusOf(bits: number): Uint8Array {
  const bytes = Math.ceil(bits / 8),
    top = (bits - 1) % 8
  const n = new Uint8Array(nodeCrypto.randomBytes(bytes))
  n[0] = (n[0]! & ((1 << top) - 1)) | (1 << top)
  n[bytes - 1]! |= 1
  return n
}
const F4 = new Uint8Array([1, 0, 1])

t.test(
  'bounds: 2048–4096 bits and 65537 accepted; one bit less or more, or any other exponent, refused with its code',
  async t => {
    for (const bits of [2048, 3072, 4096])
      t.equal(checkPublicKeyParameters(rsaSpki(modulusOf(bits), F4), 'key'), 'rsa', `${bits} bits`)
    for (const bits of [512, 1024, 2047, 4097, 16384])
      t.equal(
        codeOf(() => checkPublicKeyParameters(rsaSpki(modulusOf(bits), F4), 'key')),
        'RSA_KEY_SIZE',
        `${bits} bits`,
      )
    for (const e of ['03', '010003', '0100000001', '7f' + 'ff'.repeat(2000)]) {
      t.equal(
        codeOf(() => checkPublicKeyParameters(rsaSpki(modulusOf(2048), Buffer.from(e, 'hex')), 'key')),
        'RSA_EXPONENT',
        `exponent ${e.slice(0, 12)}`,
      )
    }
    // The size is judged before the exponent: both wrong is RSA_KEY_SIZE.
    t.equal(
      codeOf(() => checkPublicKeyParameters(rsaSpki(modulusOf(1024), Buffer.from('03', 'hex')), 'key')),
      'RSA_KEY_SIZE',
    )
    // X.690 §8.3.2: 65537 with a redundant leading zero is not a DER INTEGER.
    t.equal(
      codeOf(() => checkPublicKeyParameters(rsaSpki(modulusOf(2048), Buffer.from('00010001', 'hex')), 'key')),
      'CERT_PARSE',
      '00 01 00 01',
    )
    t.equal(
      codeOf(() => checkPublicKeyParameters(new Uint8Array(3), 'key', 'CSR_PARSE')),
      'CSR_PARSE',
      "garbage: the caller's parse code",
    )
    const err = (() => {
      try {
        checkPublicKeyParameters(slowRsaKey('huge-exponent').spkiDer, 'CSR key')
        return undefined
      } catch (e) {
        return e as Error
      }
    })()
    t.match(
      err?.message,
      /CSR key: RSA public exponent a \d+-byte number, kinship accepts only 65537/,
      'the message says which key and why',
    )
  },
)

t.test('key-type aware: ECDSA P-256 and Ed25519 keys are not refused by the RSA check', async t => {
  const ec = new Uint8Array(
    generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' }),
  )
  const ed = new Uint8Array(generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'der' }))
  t.equal(publicKeyKind(ec), 'ec')
  t.equal(checkPublicKeyParameters(ec, 'key'), 'ec')
  t.equal(checkPublicKeyParameters(ed, 'key'), 'ed25519')
  t.notOk(isAcceptedRsaKey(ec), 'but it is no RSA key to verify with')
  t.ok(isAcceptedRsaKey(member.keys.spkiDer), "a device's RSA-2048 key is")
})

t.test(
  'every RSA verifier answers false for a hostile key, without computing (node:crypto, forge, kin-core BigInt)',
  async t => {
    const message = new Uint8Array([1, 2, 3])
    const shapes: SlowRsaShape[] = ['huge-exponent', 'huge-modulus', 'modulus-16384', 'modulus-512']
    for (const shape of shapes) {
      const key = slowRsaKey(shape)
      const signature = signatureFor(key)
      t.notOk(coreVerify(key.spkiDer, message, signature), `${shape}: kin-core`)
      t.notOk(nodeSigning.verify(key.spkiDer, message, signature), `${shape}: node:crypto`)
      t.notOk(portableSigning.verify(key.spkiDer, message, signature), `${shape}: forge`)
      // A fleet root carrying the hostile key: the certificate signature check does no arithmetic with it either.
      const hostileRoot = certificateWithKey(fleet.root.der, key)
      for (const pki of [nodePki, portablePki, corePki])
        t.notOk(
          pki.verifyCertificateSignature(member.cert.der, hostileRoot),
          `${shape}: ${pki.name} certificate signature`,
        )
    }
  },
)

t.test(
  'a certificate signed by the fleet root whose key is 512 bits: RSA_KEY_SIZE from the chain, on every path',
  async t => {
    const small = generateKeyPairSync('rsa', {
      modulusLength: 512,
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    })
    const cert = await buildLeafCertificate({
      root: fleet.root,
      rootKeyPem: fleet.rootKeys.privateKeyPem,
      cn: member.cn,
      parentCn: fleet.l0.cn,
      spki: spkiDerFromPublicKeyPem(small.publicKey),
      notBefore: now - 60,
      notAfter: now + DAY,
      randomBytes: nodeCrypto.randomBytes,
    })
    t.ok(nodePki.verifyCertificateSignature(cert.der, fleet.root.der), 'the fleet root did sign it')
    for (const pki of [nodePki, portablePki])
      t.equal(
        codeOf(() => verifyChain(cert, fleet.root, now, pki)),
        'RSA_KEY_SIZE',
        pki.name,
      )
    t.equal(
      codeOf(() => verifyCertificateChain(cert.der, fleet.root.der, now)),
      'RSA_KEY_SIZE',
      'kin-core',
    )
    t.equal(verifyChain(member.cert, fleet.root, now, nodePki).cn, member.cn, 'a 2048-bit device still passes')
  },
)

t.test('the worst CSRs: refused by their key before the self-signature is looked at', async t => {
  for (const [shape, code] of [
    ['huge-exponent', 'RSA_EXPONENT'],
    ['huge-modulus', 'RSA_KEY_SIZE'],
    ['modulus-16384', 'RSA_KEY_SIZE'],
    ['modulus-16KiB', 'CSR_PARSE'],
  ] as const) {
    const key = slowRsaKey(shape)
    const csrPem = csrWithKey(member.csrPem, key)
    const auth = { ...member.auth, spkiHash: nodeCrypto.sha256(key.spkiDer) }
    t.equal(
      codeOf(() => checkCsrAgainstAuthorization(csrPem, auth, nodeCrypto)),
      code,
      `${shape} (${key.modulusBits}-bit modulus, ${key.exponentBytes}-byte exponent)`,
    )
    // Held to an authorization for another key, the verdict is the same: the key's parameters come first.
    if (code !== 'CSR_PARSE')
      t.equal(
        codeOf(() => checkCsrAgainstAuthorization(csrPem, member.auth, nodeCrypto)),
        code,
        `${shape} under another key's authorization`,
      )
  }
  t.equal(checkCsrAgainstAuthorization(member.csrPem, member.auth, nodeCrypto).cn, member.cn, 'the genuine CSR passes')
})

t.test('the worst challenge answer: refused RSA_EXPONENT before the signature, the challenge left open', async t => {
  let clock = now
  const verifier = new ChallengeVerifier({
    self: fleet.l0.cn,
    randomBytes: nodeCrypto.randomBytes,
    clock: { now: () => clock },
    signing: nodeSigning,
  })
  const decider = {
    certificate: (der: Uint8Array) => new DeviceCertificate(der),
    decide: (): Decision => ({ allow: true, code: 'ALLOW' }) as Decision,
  }
  const challenge = verifier.issue('unlock')
  const key = slowRsaKey('huge-exponent')
  const genuine = answerChallenge(
    challenge,
    {
      certificateDer: member.cert.der,
      privateKeyPem: member.keys.privateKeyPem,
      verifierCn: fleet.l0.cn,
      action: 'unlock',
    },
    nodeSigning,
  )
  // The same nonce, the member's certificate carrying the hostile key, a signature of the length that reaches RSAVP1.
  const worst = encodeChallengeAnswer({
    ...decodeChallengeAnswer(genuine),
    certificateDer: certificateWithKey(member.cert.der, key),
    signature: signatureFor(key),
  })
  const refused = verifier.verify(worst, decider)
  t.same([refused.allow, refused.code], [false, 'RSA_EXPONENT'], refused.reason)
  clock += 1
  t.equal(
    verifier.verify(genuine, decider).code,
    'ALLOW',
    'the genuine answer to the same challenge still goes through',
  )
})

t.test(
  'the parent refuses an enroll request for an RSA key kinship refuses, before it authorizes anything',
  async t => {
    const request = {
      spkiDer: member.keys.spkiDer,
      ledgerKey: nodeCrypto.randomBytes(32),
      kind: 'lock',
      name: 'back door',
    }
    t.same(decodeEnrollRequest(encodeEnrollRequest(request)).spkiDer, member.keys.spkiDer, 'an RSA-2048 key is taken')
    t.equal(
      codeOf(() =>
        decodeEnrollRequest(encodeEnrollRequest({ ...request, spkiDer: slowRsaKey('modulus-512').spkiDer })),
      ),
      'RSA_KEY_SIZE',
    )
    t.equal(
      codeOf(() =>
        decodeEnrollRequest(
          encodeEnrollRequest({
            ...request,
            spkiDer: rsaSpki(modulusOf(2048), Buffer.from('7f' + 'ff'.repeat(1000), 'hex')),
          }),
        ),
      ),
      'RSA_EXPONENT',
    )
    t.equal(
      codeOf(() => decodeEnrollRequest(encodeEnrollRequest({ ...request, spkiDer: nodeCrypto.randomBytes(300) }))),
      'DECODE_FIELD',
      'bytes that are no key',
    )
  },
)
