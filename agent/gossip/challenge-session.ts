/** @module Challenge-response over the device inbox for devices without TLS: the verifier's service and the requester's ask. */
import { DecodeError, KinError, VerificationError, type KinErrorCode } from '../errors.ts'
import { bytesEqual, toHex } from '../codec/bytes.ts'
import {
  ChallengeVerifier,
  answerChallenge,
  decodeChallenge,
  decodeChallengeAnswer,
  type ChallengeDecider,
} from '../access/challenge.ts'
import { decisionOfError, refusalDecision } from '../access/session.ts'
import type { Decision } from '../access/types.ts'
import { labelOfCn } from '../ledger/names.ts'
import type { DeviceCertificate } from '../pki/certificate.ts'
import type { Clock } from '../ports/platform.ts'
import type { TlsSigning } from '../ports/signing.ts'
import type { TransportSession } from '../ports/transport.ts'
import type { GossipClient } from './client.ts'
import {
  MAX_REASON_LENGTH,
  REQUEST_ID_BYTES,
  decodeResultBody,
  encodeAccessAnswer,
  encodeAccessAsk,
  encodeAccessChallenge,
  encodeAccessResult,
  encodeResultBody,
  readInboxMessage,
  resultSigningInput,
  type AccessAnswerMessage,
  type AccessAsk,
  type AccessResultMessage,
  type AccessVerdict,
} from './challenge-wire.ts'
import { fleetTopics, inboxSender } from './topics.ts'

/** Default time a requester waits for its verdict, ms. */
export const DEFAULT_INBOX_ASK_TIMEOUT_MS = 5000
/** Default asks a verifier keeps open at once; beyond it the oldest is dropped. */
export const DEFAULT_MAX_OPEN_ASKS = 64
/** Answers a verifier takes for one ask (the first, then replays it names as such); more are ignored. */
export const MAX_ANSWERS_PER_ASK = 4

/** What the verifier's service needs from a broker session: `GossipClient.session` or any TransportSession. */
export type InboxSession = Pick<TransportSession, 'subscribe' | 'publish' | 'onMessage'>

/** Why the service let an inbox message go without answering it. */
export type IgnoredReason =
  | 'foreign'
  | 'malformed'
  | 'not-for-verifier'
  | 'unknown-request'
  | 'too-many-answers'
  | 'bad-requester'
  | 'sender-mismatch'
  | 'failed'

/** One ask as the verifier keeps it. */
export interface OpenAsk {
  requestId: string
  requesterCn: string
  action: string
  /** When it was asked (the verifier's clock, seconds). */
  time: number
}

/** Settings of the verifier's inbox service. */
export interface InboxVerifierOptions {
  /** The fleet domain `F`: the topics, and the shape a requester's CN must have. */
  fleet: string
  /** This device's CN: its inbox, named in every challenge and result. */
  self: string
  /** This device's certificate, sent with every result so the requester can check who signed it. */
  certificateDer: Uint8Array
  /** Its TLS private key (PEM): signs results. */
  privateKeyPem: string
  signing: TlsSigning
  randomBytes: (length: number) => Uint8Array
  clock: Clock
  /** Parses certificates and decides: an AccessSession. */
  decider: ChallengeDecider
  /** A second decision for a retryable deny (DESIGN.md "Access decision" step 5: a proof from the miner), if the device has one. */
  retry?: (certificate: DeviceCertificate, action: string, first: Decision) => Promise<Decision>
  /** Seconds an answer may take (ChallengeVerifier's deadline, default 30). */
  deadline?: number
  /** Asks kept open at once (default DEFAULT_MAX_OPEN_ASKS). */
  maxOpenAsks?: number
  /** Every decision sent, with the ask it answers: audit it here. */
  onDecision?: (decision: Decision, ask: OpenAsk) => void
  /**
   * A message that was not answered, why, the refusal's code where it has one (an ask in another's name:
   * INBOX_SENDER_MISMATCH; a message that is none of the inbox messages: INBOX_FOREIGN), and its sender (the
   * topic's last level, as the broker vouches for it).
   */
  onIgnored?: (reason: IgnoredReason, detail: string, code?: KinErrorCode, sender?: string) => void
}

/** Counts of what the service did, for logs and tests. */
export interface InboxVerifierStats {
  asks: number
  results: number
  ignored: Record<IgnoredReason, number>
}

/** The verifier's running inbox service. */
export interface InboxVerifier {
  readonly stats: InboxVerifierStats
  /** Asks open now. */
  readonly openAsks: number
  /** Subscribes to this device's inbox on `session` and answers there (a new session, after a reconnect, replaces the last). */
  attach(session: InboxSession): Promise<void>
  /** Stops answering. */
  close(): void
  /** Resolves once every message received so far has been handled (tests, orderly shutdown). */
  idle(): Promise<void>
}

interface AskState extends OpenAsk {
  id: Uint8Array
  nonce: Uint8Array
  answers: number
}

/** The verdict fields of a decision (the same as `kin access`'s answer line), the reason cut to what a result may carry. */
export function verdictOf(d: Decision): AccessVerdict {
  const reason = d.reason.length > MAX_REASON_LENGTH ? `${d.reason.slice(0, MAX_REASON_LENGTH - 1)}…` : d.reason
  return {
    allow: d.allow,
    code: d.code,
    reason,
    path: d.path.slice(),
    commonAncestor: d.commonAncestor ?? null,
    hops: d.hops ?? null,
    peer: d.peer ?? null,
    action: d.action,
    time: d.time,
  }
}

/**
 * The verifier's side (PROTOCOL.md §12.4): on its own inbox, an ask gets a fresh challenge from one ChallengeVerifier;
 * an answer is checked in ChallengeVerifier's order, then bound to its ask (the signer must be the requester the ask
 * named), decided by the same engine as over TLS, reported, and answered with a signed result. Bounded: at most
 * `maxOpenAsks` asks (the oldest dropped), MAX_ANSWERS_PER_ASK answers each, sizes capped by the decoders; foreign,
 * malformed or unknown messages are counted and ignored. Nothing a peer sends makes it throw.
 */
export function serveInboxChallenges(options: InboxVerifierOptions): InboxVerifier {
  const topics = fleetTopics(options.fleet)
  const inbox = topics.inboxAll(options.self)
  const maxOpen = options.maxOpenAsks ?? DEFAULT_MAX_OPEN_ASKS
  if (!Number.isInteger(maxOpen) || maxOpen < 1)
    throw new KinError('BAD_ARGUMENT', `"maxOpenAsks" expected a positive integer, got ${maxOpen}`)
  const verifier = new ChallengeVerifier({
    self: options.self,
    randomBytes: options.randomBytes,
    signing: options.signing,
    clock: options.clock,
    capacity: maxOpen,
    ...(options.deadline === undefined ? {} : { deadline: options.deadline }),
  })
  const asks = new Map<string, AskState>()
  const stats: InboxVerifierStats = {
    asks: 0,
    results: 0,
    ignored: {
      foreign: 0,
      malformed: 0,
      'not-for-verifier': 0,
      'unknown-request': 0,
      'too-many-answers': 0,
      'bad-requester': 0,
      'sender-mismatch': 0,
      failed: 0,
    },
  }
  let session: InboxSession | undefined
  let stopListening: (() => void) | undefined
  let closed = false
  let queue: Promise<void> = Promise.resolve()

  const ignore = (reason: IgnoredReason, detail: string, code?: KinErrorCode, sender?: string): void => {
    stats.ignored[reason]++
    try {
      options.onIgnored?.(reason, detail, code, sender)
    } catch {
      /* a hook's failure is not the peer's */
    }
  }

  const forgetExpired = (now: number): void => {
    for (const [key, ask] of asks) if (now - ask.time > 2 * verifier.deadline) asks.delete(key)
  }

  const onAsk = async (link: InboxSession, ask: AccessAsk, sender: string): Promise<void> => {
    // The broker lets a session write here only under its own CN's label (the topic's last level): a challenge goes only to
    // the identity whose session asked, never to a device an ask names in its place (a reflection).
    if (ask.requesterCn !== sender) {
      ignore(
        'sender-mismatch',
        `INBOX_SENDER_MISMATCH: ${sender} asked in the name of ${ask.requesterCn}`,
        'INBOX_SENDER_MISMATCH',
      )
      return
    }
    try {
      labelOfCn(ask.requesterCn, options.fleet)
    } catch {
      // The broker closes a session that publishes to a non-fleet inbox: never answer to one.
      ignore('bad-requester', `an ask names ${ask.requesterCn}, not a device of fleet ${options.fleet}`)
      return
    }
    const key = toHex(ask.requestId)
    if (asks.has(key)) {
      ignore('malformed', `request ${key} was already asked`)
      return
    }
    const now = options.clock.now()
    forgetExpired(now)
    const challenge = verifier.issue(ask.action)
    if (asks.size >= maxOpen) asks.delete(asks.keys().next().value!)
    // Kept to bind the answer to this ask (read back from the verifier's own bytes).
    const nonce = decodeChallenge(challenge).nonce
    asks.set(key, {
      requestId: key,
      id: ask.requestId,
      requesterCn: ask.requesterCn,
      action: ask.action,
      time: now,
      nonce,
      answers: 0,
    })
    stats.asks++
    await link.publish(
      topics.inbox(ask.requesterCn, options.self),
      encodeAccessChallenge({ requestId: ask.requestId, challenge }),
    )
  }

  const onAnswer = async (link: InboxSession, m: AccessAnswerMessage): Promise<void> => {
    const key = toHex(m.requestId)
    const ask = asks.get(key)
    if (ask === undefined) {
      ignore('unknown-request', `an answer for request ${key}, which is not open here`)
      return
    }
    if (++ask.answers > MAX_ANSWERS_PER_ASK) {
      ignore('too-many-answers', `request ${key} already had ${MAX_ANSWERS_PER_ASK} answers`)
      return
    }
    let decision = bindAndVerify(ask, m.answer)
    if (
      decision.decision.retry &&
      !decision.decision.allow &&
      decision.certificate !== undefined &&
      options.retry !== undefined
    ) {
      try {
        decision = { ...decision, decision: await options.retry(decision.certificate, ask.action, decision.decision) }
      } catch (e) {
        decision = { ...decision, decision: decisionOfError(e, ask.action, options.clock.now()) }
      }
    }
    await sendResult(link, ask, decision.decision)
  }

  // ChallengeVerifier's refusal order first (it finds the challenge by the answer's nonce), after one check of
  // ours: the nonce must be the one issued for this request, so an answer cannot be filed under another's ask.
  const bindAndVerify = (
    ask: AskState,
    answerBytes: Uint8Array,
  ): { decision: Decision; certificate: DeviceCertificate | undefined } => {
    const now = options.clock.now()
    let nonce: Uint8Array | undefined
    try {
      nonce = decodeChallengeAnswer(answerBytes).nonce
    } catch {
      nonce = undefined
    }
    if (nonce !== undefined && !bytesEqual(nonce, ask.nonce)) {
      return {
        decision: refusalDecision(
          'CHALLENGE_UNKNOWN',
          `the answer's nonce is not the one issued for request ${ask.requestId}`,
          ask.action,
          now,
        ),
        certificate: undefined,
      }
    }
    let proven: DeviceCertificate | undefined
    const decision = verifier.verify(answerBytes, {
      certificate: der => options.decider.certificate(der),
      decide: (certificate, action) => {
        proven = certificate
        return options.decider.decide(certificate, action)
      },
    })
    if (proven !== undefined && proven.cn !== ask.requesterCn) {
      return {
        decision: refusalDecision(
          'ACCESS_WRONG_PEER',
          `the answer is signed by ${proven.cn}, but the ask came in the name of ${ask.requesterCn}`,
          ask.action,
          now,
          proven.cn,
        ),
        certificate: undefined,
      }
    }
    return { decision, certificate: proven }
  }

  const sendResult = async (link: InboxSession, ask: AskState, decision: Decision): Promise<void> => {
    const body = encodeResultBody({
      requestId: ask.id,
      verifierCn: options.self,
      requesterCn: ask.requesterCn,
      verdict: verdictOf(decision),
    })
    const signature = options.signing.sign(options.privateKeyPem, resultSigningInput(body))
    stats.results++
    try {
      options.onDecision?.(decision, {
        requestId: ask.requestId,
        requesterCn: ask.requesterCn,
        action: ask.action,
        time: ask.time,
      })
    } catch {
      /* the audit hook reports its own failures */
    }
    await link.publish(
      topics.inbox(ask.requesterCn, options.self),
      encodeAccessResult({ requestId: ask.id, body, certificateDer: options.certificateDer, signature }),
    )
  }

  const handle = async (link: InboxSession, sender: string, payload: Uint8Array): Promise<void> => {
    const read = readInboxMessage(payload)
    if (read.kind === 'foreign')
      return ignore(
        'foreign',
        `${payload.length} bytes from ${sender} that are none of the inbox messages (an access-ask, -challenge, -answer or -result: PROTOCOL.md §12.4)`,
        'INBOX_FOREIGN',
        sender,
      )
    if (read.kind === 'malformed') return ignore('malformed', `${read.tag}: ${read.error.code}: ${read.error.message}`)
    const m = read.message
    if (m.kind === 'ask') return onAsk(link, m, sender)
    if (m.kind === 'answer') return onAnswer(link, m)
    return ignore('not-for-verifier', `an ${m.kind} message arrived at a verifier`)
  }

  return {
    stats,
    get openAsks() {
      return asks.size
    },
    async attach(link) {
      if (closed) throw new KinError('BROKER_CLOSED', 'the inbox challenge service was closed')
      stopListening?.()
      session = link
      stopListening = link.onMessage((topic, payload) => {
        const sender = inboxSender(options.fleet, options.self, topic)
        if (closed || sender === undefined || session !== link) return
        // One message at a time, in arrival order: a replay is always judged after the answer it repeats.
        queue = queue
          .then(() => handle(link, sender, payload))
          .catch(e => ignore('failed', `${(e as KinError)?.code ?? 'INTERNAL'}: ${(e as Error)?.message ?? String(e)}`))
      })
      await link.subscribe([inbox])
    },
    close() {
      closed = true
      stopListening?.()
      stopListening = undefined
      session = undefined
      asks.clear()
    },
    idle: () => queue,
  }
}

/** The requesting device: its certificate and TLS key, and how it checks the device it asks. */
export interface InboxRequester {
  fleet: string
  /** This device's CN: where the challenge and the result come. */
  cn: string
  certificateDer: Uint8Array
  privateKeyPem: string
  signing: TlsSigning
  randomBytes: (length: number) => Uint8Array
  /** Parses the verifier's certificate and runs the server identity check on it: an AccessSession. */
  check: { certificate(der: Uint8Array): DeviceCertificate; checkServer(der: Uint8Array): Decision }
}

/** What to ask of whom. */
export interface InboxAsk {
  verifierCn: string
  action: string
  /** Whole exchange, ms (default DEFAULT_INBOX_ASK_TIMEOUT_MS). */
  timeoutMs?: number
}

/** What came of an ask: the verifier's identity check and its signed verdict. */
export interface InboxOutcome {
  requestId: string
  /** The server identity check on the certificate that signed the result. */
  server: Decision
  verdict: AccessVerdict
}

/**
 * The requester's side (PROTOCOL.md §12.4): asks `verifierCn` over its inbox, signs the challenge that comes back
 * for this request only when it names that device and action (CHALLENGE_MISMATCH otherwise), and takes the first
 * result that holds: its body names this request, the device asked, this device and the action, its certificate
 * passes the server identity check with that CN, and its signature verifies. Results that do not hold are ignored
 * (anyone in the fleet can write to this inbox); when none held before the deadline, the last refusal is thrown
 * (CHALLENGE_RESULT_SIGNATURE, CHALLENGE_MISMATCH, or the server check's code), else ACCESS_TIMEOUT.
 */
export async function askOverInbox(
  client: GossipClient,
  requester: InboxRequester,
  ask: InboxAsk,
): Promise<InboxOutcome> {
  const timeoutMs = ask.timeoutMs ?? DEFAULT_INBOX_ASK_TIMEOUT_MS
  const end = Date.now() + timeoutMs
  const left = (): number => Math.max(1, end - Date.now())
  const topics = fleetTopics(requester.fleet)
  // Only what the verifier's own session wrote into this inbox counts (the broker enforces the sender level).
  const mine = topics.inbox(requester.cn, ask.verifierCn)
  const id = requester.randomBytes(REQUEST_ID_BYTES)
  const requestId = toHex(id)
  await client.subscribe([topics.inboxAll(requester.cn)])
  await client.publish(
    topics.inbox(ask.verifierCn, requester.cn),
    encodeAccessAsk({ requestId: id, requesterCn: requester.cn, action: ask.action }),
  )
  const challenge = await client.waitFor(
    mine,
    p => {
      const r = readInboxMessage(p)
      return r.kind === 'message' && r.message.kind === 'challenge' && bytesEqual(r.message.requestId, id)
        ? r.message.challenge
        : undefined
    },
    {
      timeoutMs: left(),
      code: 'ACCESS_TIMEOUT',
      message: `${ask.verifierCn} sent no challenge within ${timeoutMs} ms: is it serving ('kin serve' on a home that names the broker)?`,
    },
  )
  const answer = answerChallenge(
    challenge,
    {
      certificateDer: requester.certificateDer,
      privateKeyPem: requester.privateKeyPem,
      verifierCn: ask.verifierCn,
      action: ask.action,
    },
    requester.signing,
  )
  await client.publish(topics.inbox(ask.verifierCn, requester.cn), encodeAccessAnswer({ requestId: id, answer }))
  let refusal: KinError | undefined
  const accepted = await client
    .waitFor(
      mine,
      p => {
        const r = readInboxMessage(p)
        if (r.kind !== 'message' || r.message.kind !== 'result' || !bytesEqual(r.message.requestId, id))
          return undefined
        const checked = checkResult(r.message, id, requester, ask)
        if (checked instanceof KinError) {
          refusal = checked
          return undefined
        }
        return checked
      },
      {
        timeoutMs: left(),
        code: 'ACCESS_TIMEOUT',
        message: `${ask.verifierCn} sent no verdict within ${timeoutMs} ms`,
      },
    )
    .catch(e => {
      throw refusal ?? e
    })
  return { requestId, ...accepted }
}

function checkResult(
  m: AccessResultMessage,
  id: Uint8Array,
  requester: InboxRequester,
  ask: InboxAsk,
): { server: Decision; verdict: AccessVerdict } | KinError {
  let body
  try {
    body = decodeResultBody(m.body)
  } catch (e) {
    return e instanceof KinError
      ? e
      : new DecodeError('DECODE_CBOR', `a result body does not decode: ${(e as Error)?.message ?? String(e)}`, {
          cause: e,
        })
  }
  if (
    !bytesEqual(body.requestId, id) ||
    body.requesterCn !== requester.cn ||
    body.verifierCn !== ask.verifierCn ||
    body.verdict.action !== ask.action
  ) {
    return new VerificationError(
      'CHALLENGE_MISMATCH',
      `a result names ${body.requesterCn} asking "${body.verdict.action}" of ${body.verifierCn}, not this request`,
    )
  }
  const server = requester.check.checkServer(m.certificateDer)
  if (!server.allow)
    return new VerificationError(
      server.code === 'ALLOW' ? 'INTERNAL' : server.code,
      `the result's signer failed the server identity check: ${server.reason}`,
      { detail: { server } },
    )
  if (server.peer !== ask.verifierCn)
    return new VerificationError(
      'ACCESS_WRONG_PEER',
      `the result is signed by ${server.peer}, not by ${ask.verifierCn}`,
      { detail: { server } },
    )
  const certificate = requester.check.certificate(m.certificateDer)
  if (!requester.signing.verify(certificate.spkiDer, resultSigningInput(m.body), m.signature)) {
    return new VerificationError(
      'CHALLENGE_RESULT_SIGNATURE',
      `the result's signature does not verify with the key of ${server.peer}'s certificate`,
    )
  }
  return { server, verdict: body.verdict }
}
