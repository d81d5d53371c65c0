/** @module Proof of possession without TLS: a one-time signed challenge, then the same access decision (transport-free). */
import { DecodeError, KinError, VerificationError } from '../errors.ts'
import { concatBytes, toHex, utf8 } from '../codec/bytes.ts'
import { decodeCbor, encodeCbor, MAX_UINT } from '../codec/cbor.ts'
import type { DeviceCertificate } from '../pki/certificate.ts'
import { MAX_SIGNED_BYTES, certificateLayout } from '../pki/layout.ts'
import { checkTlsKey } from '../pki/key-parameters.ts'
import type { Clock } from '../ports/platform.ts'
import type { TlsSigning } from '../ports/signing.ts'
import { decisionOfError, refusalDecision } from './decision.ts'
import { checkActionName } from './session.ts'
import type { Decision } from './types.ts'

/*
 * CHALLENGE-RESPONSE (the spec; design "Access decision", proof of possession)
 *   challenge = CBOR [nonce (16 random bytes), verifierCn, action, time]          verifier → requester
 *   signed    = "kinship/challenge/v1" 0x00 ‖ challenge                           (the exact challenge bytes)
 *   answer    = CBOR [nonce, certificateDer, signature]                          requester → verifier
 *   signature = by the requester's TLS key, the key its certificate holds, in the scheme that key's kind signs with:
 *               RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2) for RSA, ECDSA with SHA-256 (DER, RFC 3279 §2.2.3) for P-256.
 * The answer echoes the nonce so the verifier finds its challenge by look-up, not by trying every open one; the
 * signature covers the challenge as the verifier stored it, so nothing in the answer but the nonce is trusted.
 * Naming the verifier and the action in what is signed keeps an answer from being relayed to another device or
 * spent on another action; the requester refuses to sign a challenge that names others (CHALLENGE_MISMATCH).
 * The verifier refuses, in this order: an answer that does not decode (DECODE_*); a nonce it never issued or has
 * forgotten (CHALLENGE_UNKNOWN); one already answered (CHALLENGE_REPLAYED); an answer after the deadline
 * (CHALLENGE_EXPIRED); a certificate that does not parse (CERT_PARSE), or whose key kinship does not accept
 * (RSA_KEY_SIZE, RSA_EXPONENT, EC_CURVE, KEY_TYPE: read from the DER framing, before any arithmetic); a signature that does not verify with the
 * certificate's key (CHALLENGE_SIGNATURE). Only a verified signature spends the nonce, so a forged answer cannot
 * burn a challenge meant for someone else. Then it runs the same `decide` as over TLS.
 */

/** Domain separation for challenge signatures. */
export const CHALLENGE_CONTEXT: Uint8Array = utf8('kinship/challenge/v1\0')
/** Bytes of a challenge nonce. */
export const CHALLENGE_NONCE_BYTES = 16
/** Seconds an answer may take after its challenge was issued (default). */
export const DEFAULT_CHALLENGE_DEADLINE = 30
/** Open challenges a verifier remembers (default); beyond it the oldest is forgotten. */
export const DEFAULT_CHALLENGE_CAPACITY = 256

const MAX_CN_LENGTH = 253
const MAX_CHALLENGE_BYTES = 512
const MAX_SIGNATURE_BYTES = 1024
const MAX_ANSWER_BYTES = MAX_SIGNED_BYTES + MAX_SIGNATURE_BYTES + 64

/** What a verifier asks a requester to sign. */
export interface Challenge {
  nonce: Uint8Array
  verifierCn: string
  action: string
  /** When the verifier issued it, seconds since the epoch. */
  time: number
}

/** A requester's answer to a challenge. */
export interface ChallengeAnswer {
  nonce: Uint8Array
  certificateDer: Uint8Array
  signature: Uint8Array
}

function field(ok: boolean, what: string): void {
  if (!ok) throw new DecodeError('DECODE_FIELD', what)
}

/** CBOR [nonce, verifierCn, action, time]. */
export function encodeChallenge(challenge: Challenge): Uint8Array {
  return encodeCbor([challenge.nonce, challenge.verifierCn, challenge.action, challenge.time])
}

/** Decodes a challenge from untrusted bytes; DecodeError on anything malformed. */
export function decodeChallenge(bytes: Uint8Array): Challenge {
  const v = decodeCbor(bytes, MAX_CHALLENGE_BYTES)
  if (!Array.isArray(v) || v.length !== 4)
    throw new DecodeError('DECODE_SHAPE', 'a challenge is a CBOR array of 4 items')
  const [nonce, verifierCn, action, time] = v
  field(
    nonce instanceof Uint8Array && nonce.length === CHALLENGE_NONCE_BYTES,
    `challenge: nonce must be ${CHALLENGE_NONCE_BYTES} bytes`,
  )
  field(
    typeof verifierCn === 'string' && verifierCn.length > 0 && verifierCn.length <= MAX_CN_LENGTH,
    'challenge: verifierCn must be 1..253 characters',
  )
  field(typeof time === 'number', 'challenge: time must be an unsigned integer')
  return {
    nonce: nonce as Uint8Array,
    verifierCn: verifierCn as string,
    action: checkActionName(action),
    time: time as number,
  }
}

/** The bytes a requester signs: CHALLENGE_CONTEXT ‖ the challenge's CBOR. */
export function challengeSigningInput(challenge: Challenge): Uint8Array {
  return concatBytes(CHALLENGE_CONTEXT, encodeChallenge(challenge))
}

/** CBOR [nonce, certificateDer, signature]. */
export function encodeChallengeAnswer(answer: ChallengeAnswer): Uint8Array {
  return encodeCbor([answer.nonce, answer.certificateDer, answer.signature])
}

/** Decodes an answer from untrusted bytes; DecodeError on anything malformed (the certificate is parsed later). */
export function decodeChallengeAnswer(bytes: Uint8Array): ChallengeAnswer {
  const v = decodeCbor(bytes, MAX_ANSWER_BYTES)
  if (!Array.isArray(v) || v.length !== 3)
    throw new DecodeError('DECODE_SHAPE', 'a challenge answer is a CBOR array of 3 items')
  const [nonce, certificateDer, signature] = v
  field(
    nonce instanceof Uint8Array && nonce.length === CHALLENGE_NONCE_BYTES,
    `answer: nonce must be ${CHALLENGE_NONCE_BYTES} bytes`,
  )
  field(
    certificateDer instanceof Uint8Array && certificateDer.length > 0 && certificateDer.length <= MAX_SIGNED_BYTES,
    `answer: certificate must be 1..${MAX_SIGNED_BYTES} bytes`,
  )
  field(
    signature instanceof Uint8Array && signature.length > 0 && signature.length <= MAX_SIGNATURE_BYTES,
    `answer: signature must be 1..${MAX_SIGNATURE_BYTES} bytes`,
  )
  return {
    nonce: nonce as Uint8Array,
    certificateDer: certificateDer as Uint8Array,
    signature: signature as Uint8Array,
  }
}

/** The requester's side of a challenge: its certificate and TLS private key, and what it meant to ask of whom. */
export interface ChallengeRequester {
  certificateDer: Uint8Array
  privateKeyPem: string
  /** The CN of the device the requester meant to ask; the challenge must name it. */
  verifierCn: string
  /** The action the requester asked for; the challenge must name it. */
  action: string
}

/**
 * Signs a challenge and returns the encoded answer. Throws DecodeError for a malformed challenge and
 * VerificationError CHALLENGE_MISMATCH when it names another verifier or action than the requester asked for.
 */
export function answerChallenge(
  challengeBytes: Uint8Array,
  requester: ChallengeRequester,
  signing: TlsSigning,
): Uint8Array {
  const challenge = decodeChallenge(challengeBytes)
  if (challenge.verifierCn !== requester.verifierCn || challenge.action !== requester.action) {
    throw new VerificationError(
      'CHALLENGE_MISMATCH',
      `the challenge asks to sign "${challenge.action}" at ${challenge.verifierCn}, but this device asked "${requester.action}" of ${requester.verifierCn}`,
    )
  }
  const signature = signing.sign(requester.privateKeyPem, challengeSigningInput(challenge))
  return encodeChallengeAnswer({ nonce: challenge.nonce, certificateDer: requester.certificateDer, signature })
}

/** What the challenge verifier reads of a certificate; DeviceCertificate and kin-core's CoreCertificate both have it. */
export type ChallengeCertificate = Pick<DeviceCertificate, 'cn' | 'spkiDer'>

/** How a verifier turns a proven certificate into a decision: an AccessSession fits. */
export interface ChallengeDecider<C extends ChallengeCertificate = DeviceCertificate> {
  /** Parses (or finds parsed) a certificate; throws CERT_PARSE. */
  certificate(der: Uint8Array): C
  /** The access decision for a peer whose possession of the certificate's key is proven (C is inferred from `certificate`). */
  decide(certificate: NoInfer<C>, action: string): Decision
}

/** Settings of a challenge verifier. */
export interface ChallengeVerifierOptions {
  /** The verifier's own CN, named in every challenge. */
  self: string
  randomBytes: (length: number) => Uint8Array
  signing: TlsSigning
  clock: Clock
  /** Seconds an answer may take (default 30). */
  deadline?: number
  /** Open challenges remembered (default 256). */
  capacity?: number
}

interface OpenChallenge {
  challenge: Challenge
  answered: boolean
}

/**
 * Issues one-time challenges and checks the answers. Remembers at most `capacity` challenges (the oldest goes
 * first), each until twice its deadline has passed, answered or not: a replay or a late answer in that time is
 * named as such; after it, or once pushed out, any answer to it is CHALLENGE_UNKNOWN — refused all the same.
 */
export class ChallengeVerifier {
  readonly self: string
  readonly deadline: number
  readonly capacity: number
  readonly #options: ChallengeVerifierOptions
  readonly #open: Map<string, OpenChallenge> = new Map()

  constructor(options: ChallengeVerifierOptions) {
    const deadline = options.deadline ?? DEFAULT_CHALLENGE_DEADLINE
    const capacity = options.capacity ?? DEFAULT_CHALLENGE_CAPACITY
    if (!Number.isInteger(deadline) || deadline < 1)
      throw new KinError('BAD_ARGUMENT', `"deadline" expected a positive whole number of seconds, got ${deadline}`)
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new KinError('BAD_ARGUMENT', `"capacity" expected a positive integer, got ${capacity}`)
    this.self = options.self
    this.deadline = deadline
    this.capacity = capacity
    this.#options = options
  }

  /** Challenges currently remembered, open or answered. */
  get size(): number {
    return this.#open.size
  }

  /** A fresh challenge for `action`, encoded for the transport. */
  issue(action: string): Uint8Array {
    const time = this.#options.clock.now()
    if (!Number.isInteger(time) || time < 0 || time > MAX_UINT)
      throw new KinError('BAD_ARGUMENT', `the clock gave ${time}, not whole seconds since the epoch`)
    this.#forgetExpired(time)
    const challenge: Challenge = {
      nonce: this.#options.randomBytes(CHALLENGE_NONCE_BYTES),
      verifierCn: this.self,
      action: checkActionName(action),
      time,
    }
    if (this.#open.size >= this.capacity) this.#open.delete(this.#open.keys().next().value!)
    this.#open.set(toHex(challenge.nonce), { challenge, answered: false })
    return encodeChallenge(challenge)
  }

  /** Checks an answer (see the refusal order above) and, when it holds, decides with `decider`. Never throws for a refusal. */
  verify<C extends ChallengeCertificate>(answerBytes: Uint8Array, decider: ChallengeDecider<C>): Decision {
    const now = this.#options.clock.now()
    let answer: ChallengeAnswer
    try {
      answer = decodeChallengeAnswer(answerBytes)
    } catch (e) {
      return this.#refuse(e, '?', now)
    }
    const key = toHex(answer.nonce)
    const open = this.#open.get(key)
    if (open === undefined)
      return refusalDecision(
        'CHALLENGE_UNKNOWN',
        `no open challenge has nonce ${key} (never issued here, or already forgotten)`,
        '?',
        now,
      )
    const { challenge } = open
    if (open.answered)
      return refusalDecision('CHALLENGE_REPLAYED', `the challenge ${key} was already answered`, challenge.action, now)
    if (now - challenge.time > this.deadline) {
      return refusalDecision(
        'CHALLENGE_EXPIRED',
        `the answer came ${now - challenge.time} s after the challenge; at most ${this.deadline} s are allowed`,
        challenge.action,
        now,
      )
    }
    let certificate: C
    try {
      // The key's kind and parameters from the DER framing alone, before the certificate is parsed in full and long
      // before any arithmetic: an RSA key with a huge exponent or modulus would cost seconds (minutes on a small engine).
      checkTlsKey(certificateLayout(answer.certificateDer, 'CERT_PARSE').spki, "the key of the answer's certificate")
      certificate = decider.certificate(answer.certificateDer)
    } catch (e) {
      return this.#refuse(e, challenge.action, now)
    }
    if (!this.#options.signing.verify(certificate.spkiDer, challengeSigningInput(challenge), answer.signature)) {
      return refusalDecision(
        'CHALLENGE_SIGNATURE',
        `the answer's signature does not verify with the key of the certificate for ${certificate.cn}`,
        challenge.action,
        now,
      )
    }
    open.answered = true
    return decider.decide(certificate, challenge.action)
  }

  #refuse(e: unknown, action: string, now: number): Decision {
    return decisionOfError(e, action, now)
  }

  #forgetExpired(now: number): void {
    for (const [key, open] of this.#open) {
      if (now - open.challenge.time > 2 * this.deadline) this.#open.delete(key)
    }
  }
}
