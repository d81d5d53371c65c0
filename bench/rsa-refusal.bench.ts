/** @module Refusing hostile RSA keys: the worst CSRs and challenge answers against a normal CSR check and answer check, in one run. */
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { nodePki } from '../runtime/node/pki.ts'
import { nodeSigning } from '../runtime/node/signing.ts'
import { isKinError } from '../agent/errors.ts'
import { cnOf } from '../agent/ledger/names.ts'
import { createFleetRoot } from '../agent/pki/root.ts'
import { createCsr } from '../agent/pki/csr.ts'
import { checkCsrAgainstAuthorization } from '../agent/pki/csr-check.ts'
import { issueDeviceCertificate } from '../agent/pki/issue.ts'
import { DeviceCertificate } from '../agent/pki/certificate.ts'
import {
  ChallengeVerifier,
  answerChallenge,
  decodeChallengeAnswer,
  encodeChallengeAnswer,
} from '../agent/access/challenge.ts'
import type { Decision } from '../agent/access/types.ts'
import type { TlsSigning } from '../agent/ports/signing.ts'
import { CoreCertificate, coreVerifier } from '../agent/core.ts'
import { signatureByKeyValid } from '../agent/pki/verifier.ts'
import {
  certificateWithKey,
  csrWithKey,
  signatureFor,
  slowRsaKey,
  type SlowRsaShape,
} from '../test/helpers/slow-rsa.ts'

const DOMAIN = 'bench.home.arpa'
const SHAPES: SlowRsaShape[] = ['huge-exponent', 'huge-modulus', 'modulus-16384']

/** Runs `fn` until `minMs` have passed or `maxOps` runs are done; at least one run. Returns what the last run gave. */
function rate<T>(fn: () => T, minMs: number, maxOps: number): { ops: number; msPerOp: number; last: T } {
  let ops = 0,
    last: T
  const start = performance.now()
  do {
    last = fn()
    ops++
  } while (ops < maxOps && performance.now() - start < minMs)
  const ms = performance.now() - start
  return { ops, msPerOp: Math.round((ms / ops) * 1000) / 1000, last: last! }
}

function codeOf(fn: () => unknown): string {
  try {
    fn()
    return 'ACCEPTED'
  } catch (e) {
    return isKinError(e) ? e.code : 'THREW'
  }
}

export async function run(emit: (row: object) => void): Promise<void> {
  const now = Math.floor(Date.now() / 1000)
  const [rootKeys, deviceKeys] = await Promise.all([nodePki.generateTlsKeyPair(), nodePki.generateTlsKeyPair()])
  const root = await createFleetRoot({ domain: DOMAIN, keyPair: rootKeys, now, randomBytes: nodeCrypto.randomBytes })
  const cn = cnOf(nodeCrypto.randomBytes(10), DOMAIN),
    parentCn = cnOf(nodeCrypto.randomBytes(10), DOMAIN)
  const csrPem = await createCsr({ cn, parentCn, keyPair: deviceKeys })
  const auth = { cn, parentCn, spkiHash: nodeCrypto.sha256(deviceKeys.spkiDer), notAfter: now + 86400 }

  // The CA's CSR check (parse, names, key parameters, key, self-signature) as L0 runs it, with forge's RSAVP1.
  const normal = rate(() => codeOf(() => checkCsrAgainstAuthorization(csrPem, auth, nodeCrypto)), 1500, 2000)
  emit({
    bench: 'rsa.csr-check',
    case: 'normal RSA-2048 CSR',
    code: normal.last,
    ops: normal.ops,
    msPerOp: normal.msPerOp,
  })
  for (const shape of SHAPES) {
    const key = slowRsaKey(shape)
    const worst = csrWithKey(csrPem, key)
    const hostileAuth = { ...auth, spkiHash: nodeCrypto.sha256(key.spkiDer) }
    const r = rate(() => codeOf(() => checkCsrAgainstAuthorization(worst, hostileAuth, nodeCrypto)), 1500, 2000)
    emit({
      bench: 'rsa.csr-check',
      case: `worst CSR: ${shape}`,
      modulusBits: key.modulusBits,
      exponentBytes: key.exponentBytes,
      csrPemBytes: worst.length,
      code: r.last,
      ops: r.ops,
      msPerOp: r.msPerOp,
      vsNormal: Math.round((r.msPerOp / normal.msPerOp) * 100) / 100,
    })
  }

  // The challenge-answer check (agent/access/challenge.ts) up to the decision, on node:crypto and on kin-core's
  // BigInt verifier (what a small engine runs), with a decider that allows: only the proof of possession is timed.
  const leaf = await issueDeviceCertificate({
    rootCertPem: root,
    rootKeyPem: rootKeys.privateKeyPem,
    now,
    randomBytes: nodeCrypto.randomBytes,
    crypto: nodeCrypto,
    csrPem,
    auth,
  })
  const coreSigning: TlsSigning = {
    name: 'core',
    sign: () => {
      throw new Error('verifies only')
    },
    verify: (spki, message, signature) => signatureByKeyValid(coreVerifier, spki, message, signature),
  }
  const allow = (): Decision => ({ allow: true, code: 'ALLOW' }) as Decision
  for (const signing of [nodeSigning, coreSigning]) {
    const certificate =
      signing === coreSigning
        ? (der: Uint8Array): { cn: string; spkiDer: Uint8Array } => new CoreCertificate(der)
        : (der: Uint8Array): { cn: string; spkiDer: Uint8Array } => new DeviceCertificate(der)
    const verifier = new ChallengeVerifier({
      self: cn,
      randomBytes: nodeCrypto.randomBytes,
      clock: { now: () => now },
      signing,
      capacity: 4096,
    })
    const answerFor = (challenge: Uint8Array) =>
      answerChallenge(
        challenge,
        { certificateDer: leaf.der, privateKeyPem: deviceKeys.privateKeyPem, verifierCn: cn, action: 'unlock' },
        nodeSigning,
      )
    // Answers are signed ahead: only the verifier's work is timed.
    const genuine = Array.from({ length: 200 }, () => answerFor(verifier.issue('unlock')))
    let i = 0
    const ok = rate(
      () => verifier.verify(genuine[i++ % genuine.length]!, { certificate, decide: allow }).code,
      1500,
      genuine.length,
    )
    emit({
      bench: 'rsa.answer-check',
      verifier: signing.name,
      case: 'genuine answer, RSA-2048',
      code: ok.last,
      ops: ok.ops,
      msPerOp: ok.msPerOp,
    })
    for (const shape of ['huge-exponent', 'modulus-16384'] as SlowRsaShape[]) {
      const key = slowRsaKey(shape)
      // The signature field holds at most 1 KiB: a 16,384-bit key is sent with a 256-byte signature, as long as fits.
      const signature = key.k <= 1024 ? signatureFor(key) : nodeCrypto.randomBytes(256)
      const worst = encodeChallengeAnswer({
        ...decodeChallengeAnswer(answerFor(verifier.issue('unlock'))),
        certificateDer: certificateWithKey(leaf.der, key),
        signature,
      })
      const r = rate(() => verifier.verify(worst, { certificate, decide: allow }).code, 1500, 2000)
      emit({
        bench: 'rsa.answer-check',
        verifier: signing.name,
        case: `worst answer: ${shape}`,
        answerBytes: worst.length,
        code: r.last,
        ops: r.ops,
        msPerOp: r.msPerOp,
        vsGenuine: Math.round((r.msPerOp / ok.msPerOp) * 100) / 100,
      })
    }
  }
}
