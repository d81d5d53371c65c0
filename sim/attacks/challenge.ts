/** @module Challenge-response attacks (proof of possession without TLS): replay, a stolen certificate, a late answer, a relayed challenge. */
import { nodeCrypto } from '../../firmware-shims/node/crypto.ts'
import { nodeSigning } from '../../firmware-shims/node/signing.ts'
import { ChallengeVerifier, answerChallenge } from '../../agent/access/challenge.ts'
import { KinError } from '../../agent/errors.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import type { AttackContext } from './house.ts'
import { decided, type AttackRunner } from './runner.ts'

/**
 * The lock (L3.3) issues challenges and decides on the answers with its own session, on its live ledger and the
 * simulator's clock; the guest (L3.4) answers with its TLS key, Eve with hers.
 */
export async function challengeAttacks(ctx: AttackContext, run: AttackRunner): Promise<void> {
  const { fleet } = ctx
  const lock = fleet.device('L3.3'), guest = fleet.device('L3.4'), camera = fleet.device('L3.2')
  const verifier = new ChallengeVerifier({ self: lock.cn, randomBytes: nodeCrypto.randomBytes, signing: nodeSigning, clock: fleet.clock })
  const certificateDer = DeviceCertificate.from(guest.identity.certPem).der
  const answer = (challenge: Uint8Array, privateKeyPem: string, verifierCn = lock.cn): Uint8Array =>
    answerChallenge(challenge, { certificateDer, privateKeyPem, verifierCn, action: 'unlock' }, nodeSigning)

  let good: Uint8Array | undefined
  await run.run({ id: 'challenge-good', family: 'challenge', kind: 'control', attack: "the guest answers the lock's fresh challenge with its own key", expected: ['ALLOW'] }, async () => {
    good = answer(verifier.issue('unlock'), guest.identity.keyPem)
    return decided('L3.4', 'L3.3', 'unlock', verifier.verify(good, lock.session))
  })
  await run.run({ id: 'challenge-replayed', family: 'challenge', kind: 'attack', attack: 'Eve replays the answer she overheard', expected: ['CHALLENGE_REPLAYED'] },
    async () => decided('Eve', 'L3.3', 'unlock', verifier.verify(good!, lock.session)))
  await run.run({ id: 'challenge-stolen-certificate', family: 'challenge', kind: 'attack', attack: "Eve answers a challenge with the guest's certificate, signed with her own key", expected: ['CHALLENGE_SIGNATURE'] },
    async () => decided('Eve', 'L3.3', 'unlock', verifier.verify(answer(verifier.issue('unlock'), ctx.eve.keys.privateKeyPem), lock.session)))
  await run.run({ id: 'challenge-late', family: 'challenge', kind: 'attack', attack: 'an answer that comes after the deadline (a held-back answer)', expected: ['CHALLENGE_EXPIRED'] }, async () => {
    const challenge = verifier.issue('unlock')
    const signed = answer(challenge, guest.identity.keyPem)
    fleet.clock.advance(verifier.deadline + 1)
    return decided('L3.4', 'L3.3', 'unlock', verifier.verify(signed, lock.session))
  })
  await run.run({ id: 'challenge-relayed', family: 'challenge', kind: 'attack', attack: "Eve relays the lock's challenge to the guest, who meant to ask the hall camera", expected: ['CHALLENGE_MISMATCH'] }, async () => {
    try {
      const signed = answer(verifier.issue('unlock'), guest.identity.keyPem, camera.cn)
      return decided('Eve', 'L3.3', 'unlock', verifier.verify(signed, lock.session))
    } catch (err) {
      if (!(err instanceof KinError)) throw err
      return { actual: err.code, detail: `the guest's phone refused to sign: ${err.message}` }
    }
  })
}
