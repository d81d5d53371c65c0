/** @module Challenge-response attacks over the device inbox (PROTOCOL.md §12.4) on the live broker: replay, a stolen certificate, a slow RSA key, a late answer, a relayed ask, a reflected ask. */
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodeSigning } from '../../runtime/node/signing.ts'
import { answerChallenge, decodeChallengeAnswer, encodeChallengeAnswer } from '../../agent/access/challenge.ts'
import type { Decision } from '../../agent/access/types.ts'
import { decisionOfAnswer } from '../../agent/access/decision.ts'
import { bytesEqual, toHex } from '../../agent/codec/bytes.ts'
import { KinError, VerificationError } from '../../agent/errors.ts'
import { askOverInbox, serveInboxChallenges, type InboxRequester } from '../../agent/gossip/challenge-session.ts'
import {
  REQUEST_ID_BYTES,
  decodeResultBody,
  encodeAccessAnswer,
  encodeAccessAsk,
  readInboxMessage,
  resultSigningInput,
} from '../../agent/gossip/challenge-wire.ts'
import type { GossipClient } from '../../agent/gossip/client.ts'
import { fleetTopics, inboxSender } from '../../agent/gossip/topics.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import type { LiveDevice } from '../live/fleet.ts'
import type { AttackContext } from './house.ts'
import { borrowFollowerClient, rideFollowerSessions } from './inbox-link.ts'
import { decided, type AttackRunner } from './runner.ts'
import { certificateWithKey, signatureFor, slowRsaKey } from '../slow-rsa.ts'

/** Seconds the lock gives an answer (§12.3's 30 s). */
const DEADLINE = 30
/** Each wait on the broker, ms: generous, the fleet shares the machine. */
const WAIT_MS = 10_000

/**
 * The lock (L3.3) serves challenges on its inbox with an InboxVerifier riding on its ledger follower's broker
 * session (as `kin serve` does), deciding with its own AccessSession on its live replica; its challenge clock is
 * the simulator's plus a skew only the late-answer case moves. The guest's phone (L3.4) asks with askOverInbox on
 * its own follower's session. Eve holds the hall camera (L3.2), a fleet device, so the broker lets her publish to
 * any inbox under the camera's CN (docs/BROKERS.md) and she reads the camera's; what she overhears of the lock's
 * inbox is tapped on the lock's session. Every verdict below is the signed result that came back over the broker,
 * except for asks in another's name, which the lock refuses without a word (its refusal is read off its service).
 */
export async function challengeAttacks(ctx: AttackContext, run: AttackRunner): Promise<void> {
  const { fleet } = ctx
  const lock = fleet.device('L3.3'),
    guest = fleet.device('L3.4'),
    camera = fleet.device('L3.2')
  const topics = fleetTopics(fleet.l0.fleet)
  const lockCertificate = DeviceCertificate.from(lock.identity.certPem)
  let skew = 0
  // The lock's refusals of messages it does not answer (an ask in another's name), as they come.
  const refusals: Array<{ code: string; detail: string }> = []
  const verifier = serveInboxChallenges({
    fleet: fleet.l0.fleet,
    self: lock.cn,
    certificateDer: lockCertificate.der,
    privateKeyPem: lock.identity.keyPem,
    signing: nodeSigning,
    randomBytes: nodeCrypto.randomBytes,
    clock: { now: () => fleet.clock.now() + skew },
    decider: lock.session,
    deadline: DEADLINE,
    onIgnored: (_reason, detail, code) => {
      if (code !== undefined) refusals.push({ code, detail })
    },
  })
  // Eve's tap on the lock's inbox: the answers that reach it, as bytes on the wire.
  const overheard: Uint8Array[] = []
  const stopTaps: Array<() => void> = []
  const stopRiding = await rideFollowerSessions(fleet, 'L3.3', async session => {
    stopTaps.push(
      session.onMessage((topic, payload) => {
        const read = readInboxMessage(payload)
        if (
          inboxSender(fleet.l0.fleet, lock.cn, topic) !== undefined &&
          read.kind === 'message' &&
          read.message.kind === 'answer'
        )
          overheard.push(payload)
      }),
    )
    await verifier.attach(session)
  })
  const clients: GossipClient[] = []
  try {
    const guestLink = await borrowFollowerClient(fleet, 'L3.4')
    clients.push(guestLink)
    const eveLink = await borrowFollowerClient(fleet, 'L3.2')
    clients.push(eveLink)
    await Promise.all([
      guestLink.subscribe([topics.inboxAll(guest.cn)]),
      eveLink.subscribe([topics.inboxAll(camera.cn)]),
    ])
    const requester: InboxRequester = {
      fleet: fleet.l0.fleet,
      cn: guest.cn,
      certificateDer: DeviceCertificate.from(guest.identity.certPem).der,
      privateKeyPem: guest.identity.keyPem,
      signing: nodeSigning,
      randomBytes: nodeCrypto.randomBytes,
      check: guest.session,
    }

    /** The signed result for request `id` in `requester`'s inbox, checked as the lock's, read as a decision. */
    const resultFor = (link: GossipClient, requesterCn: string, id: Uint8Array): Promise<Decision> =>
      link.waitFor(
        topics.inbox(requesterCn, lock.cn),
        p => {
          const read = readInboxMessage(p)
          if (read.kind !== 'message' || read.message.kind !== 'result' || !bytesEqual(read.message.requestId, id))
            return undefined
          const m = read.message
          if (
            !bytesEqual(m.certificateDer, lockCertificate.der) ||
            !nodeSigning.verify(lockCertificate.spkiDer, resultSigningInput(m.body), m.signature)
          ) {
            throw new VerificationError(
              'CHALLENGE_RESULT_SIGNATURE',
              `a result for request ${toHex(id)} is not signed by the lock`,
            )
          }
          return decisionOfAnswer(decodeResultBody(m.body).verdict)
        },
        {
          timeoutMs: WAIT_MS,
          code: 'ACCESS_TIMEOUT',
          message: `the lock sent no result for request ${toHex(id)} within ${WAIT_MS} ms`,
        },
      )

    /** An ask of the lock in `as`'s name on `link`, driven step by step (what askOverInbox does, with room to misbehave). */
    const openAsk = async (
      link: GossipClient,
      as: LiveDevice,
      action: string,
    ): Promise<{ challenge: Uint8Array; answer(bytes: Uint8Array): Promise<Decision> }> => {
      const id = nodeCrypto.randomBytes(REQUEST_ID_BYTES)
      const challenge = link.waitFor(
        topics.inbox(as.cn, lock.cn),
        p => {
          const read = readInboxMessage(p)
          return read.kind === 'message' && read.message.kind === 'challenge' && bytesEqual(read.message.requestId, id)
            ? read.message.challenge
            : undefined
        },
        { timeoutMs: WAIT_MS, code: 'ACCESS_TIMEOUT', message: `the lock sent no challenge within ${WAIT_MS} ms` },
      )
      await link.publish(topics.inbox(lock.cn, as.cn), encodeAccessAsk({ requestId: id, requesterCn: as.cn, action }))
      return {
        challenge: await challenge,
        async answer(bytes) {
          const result = resultFor(link, as.cn, id)
          await link.publish(topics.inbox(lock.cn, as.cn), encodeAccessAnswer({ requestId: id, answer: bytes }))
          return result
        },
      }
    }
    const signed = (challenge: Uint8Array, certPem: string, keyPem: string): Uint8Array =>
      answerChallenge(
        challenge,
        {
          certificateDer: DeviceCertificate.from(certPem).der,
          privateKeyPem: keyPem,
          verifierCn: lock.cn,
          action: 'unlock',
        },
        nodeSigning,
      )

    let overheardAnswer: Uint8Array | undefined
    await run.run(
      {
        id: 'challenge-good',
        family: 'challenge',
        kind: 'control',
        attack: "over the inbox: the guest answers the lock's fresh challenge with its own key",
        expected: ['ALLOW'],
      },
      async () => {
        const outcome = await askOverInbox(guestLink, requester, {
          verifierCn: lock.cn,
          action: 'unlock',
          timeoutMs: WAIT_MS,
        })
        overheardAnswer = overheard.at(-1)
        return decided('L3.4', 'L3.3', 'unlock', decisionOfAnswer(outcome.verdict))
      },
    )
    await run.run(
      {
        id: 'challenge-replayed',
        family: 'challenge',
        kind: 'attack',
        attack: "over the inbox: Eve replays the guest's answer she overheard",
        expected: ['CHALLENGE_REPLAYED'],
      },
      async () => {
        const read = readInboxMessage(overheardAnswer ?? new Uint8Array(0))
        if (read.kind !== 'message' || read.message.kind !== 'answer')
          throw new KinError('INTERNAL', "Eve overheard no answer on the lock's inbox")
        // The lock sends its verdict to the guest, in whose name the request was made.
        const result = resultFor(guestLink, guest.cn, read.message.requestId)
        await eveLink.publish(topics.inbox(lock.cn, camera.cn), overheardAnswer!)
        return decided('Eve', 'L3.3', 'unlock', await result)
      },
    )
    await run.run(
      {
        id: 'challenge-replayed-other-ask',
        family: 'challenge',
        kind: 'attack',
        attack: "over the inbox: Eve asks the lock and hands in the guest's overheard answer",
        expected: ['CHALLENGE_UNKNOWN'],
      },
      async () => {
        const read = readInboxMessage(overheardAnswer ?? new Uint8Array(0))
        if (read.kind !== 'message' || read.message.kind !== 'answer')
          throw new KinError('INTERNAL', "Eve overheard no answer on the lock's inbox")
        const ask = await openAsk(eveLink, camera, 'unlock')
        return decided('Eve', 'L3.3', 'unlock', await ask.answer(read.message.answer))
      },
    )
    await run.run(
      {
        id: 'challenge-stolen-certificate',
        family: 'challenge',
        kind: 'attack',
        attack: "over the inbox: Eve signs with her own key under the guest's certificate",
        expected: ['CHALLENGE_SIGNATURE'],
      },
      async () => {
        const ask = await openAsk(eveLink, camera, 'unlock')
        return decided(
          'Eve',
          'L3.3',
          'unlock',
          await ask.answer(signed(ask.challenge, guest.identity.certPem, ctx.eve.keys.privateKeyPem)),
        )
      },
    )
    await run.run(
      {
        id: 'challenge-slow-rsa',
        family: 'challenge',
        kind: 'attack',
        attack: "over the inbox: Eve's answer carries an RSA key with a 14 KiB exponent",
        expected: ['RSA_EXPONENT'],
      },
      async () => {
        // Before the parameter check, one such answer cost 6–13 s of CPU on V8 and did not finish in 30 s in QuickJS.
        const ask = await openAsk(eveLink, camera, 'unlock')
        const key = slowRsaKey('huge-exponent')
        const genuine = decodeChallengeAnswer(signed(ask.challenge, guest.identity.certPem, ctx.eve.keys.privateKeyPem))
        const worst = encodeChallengeAnswer({
          ...genuine,
          certificateDer: certificateWithKey(DeviceCertificate.from(guest.identity.certPem).der, key),
          signature: signatureFor(key),
        })
        return decided('Eve', 'L3.3', 'unlock', await ask.answer(worst))
      },
    )
    await run.run(
      {
        id: 'challenge-late',
        family: 'challenge',
        kind: 'attack',
        attack: "over the inbox: the guest's answer, held back past the lock's deadline",
        expected: ['CHALLENGE_EXPIRED'],
      },
      async () => {
        const ask = await openAsk(guestLink, guest, 'unlock')
        const answer = signed(ask.challenge, guest.identity.certPem, guest.identity.keyPem)
        skew += DEADLINE + 1
        return decided('L3.4', 'L3.3', 'unlock', await ask.answer(answer))
      },
    )
    /** Eve's ask of the lock in the guest's name from the camera's session; the lock's refusal, and whether the guest heard from the lock. */
    const inAnothersName = async (ask: {
      requestId: Uint8Array
      action: string
    }): Promise<{ actual: string; detail: string }> => {
      const heard: Uint8Array[] = []
      const stop = guestLink.session.onMessage((topic, payload) => {
        if (topic === topics.inbox(guest.cn, lock.cn)) heard.push(payload)
      })
      try {
        const before = refusals.length
        await eveLink.publish(
          topics.inbox(lock.cn, camera.cn),
          encodeAccessAsk({ requestId: ask.requestId, requesterCn: guest.cn, action: ask.action }),
        )
        const end = Date.now() + WAIT_MS
        while (refusals.length === before && verifier.stats.asks === asksBefore && Date.now() < end)
          await new Promise(r => setTimeout(r, 10))
        await verifier.idle()
        const refusal = refusals[before]
        if (refusal === undefined)
          return {
            actual: 'ALLOW',
            detail: `the lock opened the ask: ${verifier.stats.asks - asksBefore} challenge(s) went to the guest`,
          }
        // A marker through the broker after the refusal: anything the lock had sent the guest would be in by then.
        const marker = guestLink.waitFor(topics.inbox(guest.cn, guest.cn), () => true, {
          timeoutMs: WAIT_MS,
          code: 'ACCESS_TIMEOUT',
          message: 'the marker never came back',
        })
        await guestLink.publish(topics.inbox(guest.cn, guest.cn), new Uint8Array([0]))
        await marker
        if (heard.length > 0)
          return {
            actual: 'ALLOW',
            detail: `the lock refused (${refusal.detail}) yet the guest received ${heard.length} message(s) from it`,
          }
        return {
          actual: refusal.code,
          detail: `the lock refused: ${refusal.detail}; the guest received nothing from the lock`,
        }
      } finally {
        stop()
      }
    }
    let asksBefore = 0
    await run.run(
      {
        id: 'challenge-relayed',
        family: 'challenge',
        kind: 'attack',
        attack: "over the inbox: Eve relays the guest's ask of the camera to the lock as unlock",
        expected: ['INBOX_SENDER_MISMATCH'],
      },
      async () => {
        // The guest asks the camera (Eve); Eve turns it into an ask of the lock, same request, in the guest's name, from
        // her own session: the lock challenges only the session that asked, so nothing reaches the guest.
        const relayed = eveLink.waitFor(
          topics.inbox(camera.cn, guest.cn),
          p => {
            const read = readInboxMessage(p)
            return read.kind === 'message' && read.message.kind === 'ask' && read.message.requesterCn === guest.cn
              ? read.message
              : undefined
          },
          { timeoutMs: WAIT_MS, code: 'ACCESS_TIMEOUT', message: "the guest's ask never reached the camera's inbox" },
        )
        await guestLink.publish(
          topics.inbox(camera.cn, guest.cn),
          encodeAccessAsk({
            requestId: nodeCrypto.randomBytes(REQUEST_ID_BYTES),
            requesterCn: guest.cn,
            action: 'view',
          }),
        )
        const ask = await relayed
        asksBefore = verifier.stats.asks
        return inAnothersName({ requestId: ask.requestId, action: 'unlock' })
      },
    )
    await run.run(
      {
        id: 'challenge-reflected',
        family: 'challenge',
        kind: 'attack',
        attack: 'over the inbox: Eve asks the lock naming the guest as requester, to have it challenge the guest',
        expected: ['INBOX_SENDER_MISMATCH'],
      },
      async () => {
        asksBefore = verifier.stats.asks
        return inAnothersName({ requestId: nodeCrypto.randomBytes(REQUEST_ID_BYTES), action: 'unlock' })
      },
    )
  } finally {
    stopRiding()
    for (const stop of stopTaps) stop()
    verifier.close()
    for (const client of clients) await client.close()
  }
}
