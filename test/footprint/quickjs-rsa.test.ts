// kin-core in QuickJS under 1 MiB of heap: the worst challenge answer (a certificate whose RSA key has a 14 KiB
// exponent, a signature of the modulus length) is refused RSA_EXPONENT before any BigInt arithmetic; before the
// check, one such answer did not finish in 30 s here. The engine's deadline interrupts a run that computes.
import t from 'tap'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodeSigning } from '../../runtime/node/signing.ts'
import { answerChallenge, decodeChallengeAnswer, encodeChallengeAnswer } from '../../agent/access/challenge.ts'
import { certificateWithKey, signatureFor, slowRsaKey, type SlowRsaShape } from '../helpers/slow-rsa.ts'
import { makeFleet, nowSeconds } from '../pki/_fleet.ts'
import { CoreVm, HEAP_PEAK_BUDGET, SMALL_DEVICE } from './_quickjs.ts'

const now = nowSeconds()
const fleet = await makeFleet(now)
const member = await fleet.enroll(fleet.l0.cn)
const eve = await fleet.enroll(fleet.l0.cn)

// A minute would be "did not finish": a refusal takes milliseconds, so the deadline only ever catches a regression.
const vm = await CoreVm.load({ ...SMALL_DEVICE, deadlineMs: 60_000 })
t.teardown(() => vm.dispose())

const ISSUE = `
  globalThis.pool = input.entropy; globalThis.drawn = 0
  globalThis.verifier = kinCore.challengeVerifier({ self: input.self, clock: { now: () => input.now },
    randomBytes: n => { const out = pool.slice(drawn, drawn + n); drawn += n; return out } })
  return Array.from(verifier.issue('unlock'), b => (b < 16 ? '0' : '') + b.toString(16)).join('')
`
// The answer is refused before any decision, so no ledger state is needed to reach the verdict.
const ANSWER = `
  const d = kinCore.decideOnAnswer(verifier, input.answer, null, input.now, { self: input.self, root: input.root })
  return { allow: d.allow, code: d.code, reason: d.reason }
`

/** A fresh challenge from the verifier inside QuickJS, and a genuine answer to it signed with the member's key. */
function challengeAndAnswer(): Uint8Array {
  const challenge = new Uint8Array(
    Buffer.from(vm.value<string>(ISSUE, { entropy: nodeCrypto.randomBytes(64), self: fleet.l0.cn, now }), 'hex'),
  )
  return answerChallenge(
    challenge,
    {
      certificateDer: member.cert.der,
      privateKeyPem: member.keys.privateKeyPem,
      verifierCn: fleet.l0.cn,
      action: 'unlock',
    },
    nodeSigning,
  )
}

t.test('the worst challenge answers inside QuickJS: refused by their key, not computed', async t => {
  for (const [shape, code] of [
    ['huge-exponent', 'RSA_EXPONENT'],
    ['modulus-16384', 'RSA_KEY_SIZE'],
    ['modulus-512', 'RSA_KEY_SIZE'],
  ] as Array<[SlowRsaShape, string]>) {
    const key = slowRsaKey(shape)
    // A signature answer carries at most 1 KiB: the 16,384-bit key's full-length signature is refused as oversized.
    const signature = key.k <= 1024 ? signatureFor(key) : signatureFor(slowRsaKey('huge-exponent'))
    const worst = encodeChallengeAnswer({
      ...decodeChallengeAnswer(challengeAndAnswer()),
      certificateDer: certificateWithKey(member.cert.der, key),
      signature,
    })
    const started = Date.now()
    const d = vm.value<{ allow: boolean; code: string; reason: string }>(ANSWER, {
      answer: worst,
      self: fleet.l0.cn,
      now,
      root: fleet.root.der,
    })
    t.same([d.allow, d.code], [false, code], `${shape}: ${d.reason} (${Date.now() - started} ms)`)
  }
})

t.test(
  'an ordinary answer still reaches the RSA check inside QuickJS: the wrong key is CHALLENGE_SIGNATURE',
  async t => {
    const genuine = decodeChallengeAnswer(challengeAndAnswer())
    const wrong = encodeChallengeAnswer({ ...genuine, certificateDer: eve.cert.der })
    const d = vm.value<{ allow: boolean; code: string; reason: string }>(ANSWER, {
      answer: wrong,
      self: fleet.l0.cn,
      now,
      root: fleet.root.der,
    })
    t.same([d.allow, d.code], [false, 'CHALLENGE_SIGNATURE'], d.reason)
    const m = vm.memory()
    t.ok(m.heapPeak > 0 && m.heapPeak <= HEAP_PEAK_BUDGET, `heap peak ${m.heapPeak} bytes of ${HEAP_PEAK_BUDGET}`)
  },
)
