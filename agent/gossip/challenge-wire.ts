/** @module The challenge-response messages of the device inbox (PROTOCOL.md §12.4): ask, challenge, answer, signed result. */
import { DecodeError } from '../errors.ts'
import { bytesEqual, concatBytes, utf8 } from '../codec/bytes.ts'
import { decodeCbor, encodeCbor, type CborValue } from '../codec/cbor.ts'
import { MAX_SIGNED_BYTES } from '../pki/layout.ts'
import { checkActionName } from '../access/session.ts'
import type { AccessAnswer } from '../access/types.ts'

/*
 * INBOX CHALLENGE-RESPONSE (the spec; docs/PROTOCOL.md §12.4). Each message is a CBOR array led by a text tag:
 *   ask       ['access-ask', requestId, requesterCn, action]                       requester → kin/<fid>/dev/<verifier>/inbox/<requester>
 *   challenge ['access-challenge', requestId, challenge]                          verifier → kin/<fid>/dev/<requester>/inbox/<verifier>
 *   answer    ['access-answer', requestId, answer]                                requester → verifier's inbox, same sender level
 *   result    ['access-result', requestId, resultBody, verifierCertDer, signature] verifier → requester's inbox, same sender level
 * The last topic level is the sender, enforced by the broker; an ask whose requesterCn is not it is refused.
 * requestId is 16 random bytes drawn by the requester; `challenge` and `answer` are agent/access/challenge.ts's bytes.
 *   resultBody = CBOR [requestId, verifierCn, requesterCn, action, allow, code, reason, path, commonAncestor|null,
 *                      hops|null, peer|null, time]
 *   signature  = RSASSA-PKCS1-v1_5 SHA-256 (RFC 8017 §8.2) by the verifier's TLS key over RESULT_CONTEXT ‖ resultBody.
 * Any fleet device may write to any inbox (broker/acl.ts), so the requester believes a result only when the
 * certificate passes its server identity check and signs it, and the body names this very request, the device it
 * asked, itself and its action. The inbox carries other traffic too (invite replies): a message is "ours" only when
 * its first bytes are one of the four tags, and anything else is left alone, never an error.
 */

/** Domain separation for result signatures (distinct from the requester's challenge context). */
export const RESULT_CONTEXT: Uint8Array = utf8('kinship/access-result/v1\0')
/** Bytes of a request id. */
export const REQUEST_ID_BYTES = 16
/** Longest reason a result carries (characters). */
export const MAX_REASON_LENGTH = 2048
/** Largest inbox access message (an answer carries a certificate of at most MAX_SIGNED_BYTES). */
export const MAX_ACCESS_MESSAGE_BYTES = 2 * MAX_SIGNED_BYTES + 4096

const MAX_CN_LENGTH = 253
const MAX_PATH_LENGTH = 64
const MAX_SIGNATURE_BYTES = 1024
const MAX_CHALLENGE_BYTES = 512
const MAX_ANSWER_BYTES = MAX_SIGNED_BYTES + MAX_SIGNATURE_BYTES + 64
const MAX_RESULT_BODY_BYTES = 24 * 1024
const CN_PATTERN = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/
const CODE_PATTERN = /^[A-Z][A-Z0-9_]{0,47}$/

/** The tags of the four messages. */
export const ACCESS_TAGS = {
  ask: 'access-ask',
  challenge: 'access-challenge',
  answer: 'access-answer',
  result: 'access-result',
} as const

/** A requester asks a verifier for an action. */
export interface AccessAsk {
  kind: 'ask'
  requestId: Uint8Array
  requesterCn: string
  action: string
}
/** The verifier's challenge for a request. */
export interface AccessChallengeMessage {
  kind: 'challenge'
  requestId: Uint8Array
  challenge: Uint8Array
}
/** The requester's signed answer to it. */
export interface AccessAnswerMessage {
  kind: 'answer'
  requestId: Uint8Array
  answer: Uint8Array
}
/** The verifier's signed verdict. */
export interface AccessResultMessage {
  kind: 'result'
  requestId: Uint8Array
  body: Uint8Array
  certificateDer: Uint8Array
  signature: Uint8Array
}
/** Any of the four. */
export type AccessMessage = AccessAsk | AccessChallengeMessage | AccessAnswerMessage | AccessResultMessage

/** A decision as the requester sees it: the same fields as `kin access`'s answer line. */
export type AccessVerdict = AccessAnswer

/** What the verifier signs: the verdict bound to its request, itself, the requester and the action. */
export interface ResultBody {
  requestId: Uint8Array
  verifierCn: string
  requesterCn: string
  verdict: AccessVerdict
}

/** An inbox message read: foreign traffic (not ours), one of ours that does not decode, or one of ours. */
export type InboxRead =
  | { kind: 'foreign' }
  | { kind: 'malformed'; tag: string; error: DecodeError }
  | { kind: 'message'; message: AccessMessage }

function field(ok: boolean, what: string): void {
  if (!ok) throw new DecodeError('DECODE_FIELD', what)
}

function isCn(v: unknown): v is string {
  return typeof v === 'string' && v.length <= MAX_CN_LENGTH && CN_PATTERN.test(v)
}

function isBytes(v: unknown, min: number, max: number): v is Uint8Array {
  return v instanceof Uint8Array && v.length >= min && v.length <= max
}

/** The fleet CN shape a requester may name (so the verifier never publishes to a topic with wildcards or extra levels). */
export function checkRequesterCn(cn: unknown): string {
  if (!isCn(cn))
    throw new DecodeError(
      'DECODE_FIELD',
      `"requesterCn" expected a device name (a-z 0-9 . -, at most ${MAX_CN_LENGTH}), got ${typeof cn === 'string' ? JSON.stringify(cn.slice(0, 40)) : typeof cn}`,
    )
  return cn
}

/** CBOR ['access-ask', requestId, requesterCn, action]. */
export function encodeAccessAsk(ask: Omit<AccessAsk, 'kind'>): Uint8Array {
  return encodeCbor([ACCESS_TAGS.ask, ask.requestId, ask.requesterCn, ask.action])
}

/** CBOR ['access-challenge', requestId, challenge]. */
export function encodeAccessChallenge(m: Omit<AccessChallengeMessage, 'kind'>): Uint8Array {
  return encodeCbor([ACCESS_TAGS.challenge, m.requestId, m.challenge])
}

/** CBOR ['access-answer', requestId, answer]. */
export function encodeAccessAnswer(m: Omit<AccessAnswerMessage, 'kind'>): Uint8Array {
  return encodeCbor([ACCESS_TAGS.answer, m.requestId, m.answer])
}

/** CBOR ['access-result', requestId, body, verifierCertDer, signature]. */
export function encodeAccessResult(m: Omit<AccessResultMessage, 'kind'>): Uint8Array {
  return encodeCbor([ACCESS_TAGS.result, m.requestId, m.body, m.certificateDer, m.signature])
}

/** The result body's CBOR. */
export function encodeResultBody(b: ResultBody): Uint8Array {
  const v = b.verdict
  return encodeCbor([
    b.requestId,
    b.verifierCn,
    b.requesterCn,
    v.action,
    v.allow,
    v.code,
    v.reason,
    v.path,
    v.commonAncestor,
    v.hops,
    v.peer,
    v.time,
  ])
}

/** The bytes a verifier signs for a result: RESULT_CONTEXT ‖ body. */
export function resultSigningInput(body: Uint8Array): Uint8Array {
  return concatBytes(RESULT_CONTEXT, body)
}

/** Decodes a result body from untrusted bytes; DecodeError on anything malformed (an allow must also say 'ALLOW'). */
export function decodeResultBody(bytes: Uint8Array): ResultBody {
  const v = decodeCbor(bytes, MAX_RESULT_BODY_BYTES)
  if (!Array.isArray(v) || v.length !== 12)
    throw new DecodeError('DECODE_SHAPE', 'a result body is a CBOR array of 12 items')
  const [requestId, verifierCn, requesterCn, action, allow, code, reason, path, commonAncestor, hops, peer, time] = v
  field(isBytes(requestId, REQUEST_ID_BYTES, REQUEST_ID_BYTES), `result: requestId must be ${REQUEST_ID_BYTES} bytes`)
  field(isCn(verifierCn) && isCn(requesterCn), 'result: verifierCn and requesterCn must be device names')
  field(
    typeof allow === 'boolean' && typeof code === 'string' && (code === 'ALLOW' || CODE_PATTERN.test(code)),
    'result: allow must be a boolean and code an error code',
  )
  // An allow must say so twice: a verifier cannot answer allow=true with code POLICY_ROLE and be believed.
  field(allow === (code === 'ALLOW'), 'result: allow and code disagree')
  field(
    typeof reason === 'string' && reason.length <= MAX_REASON_LENGTH,
    `result: reason must be text of at most ${MAX_REASON_LENGTH} characters`,
  )
  field(
    Array.isArray(path) && path.length <= MAX_PATH_LENGTH && path.every(isCn),
    `result: path must list at most ${MAX_PATH_LENGTH} device names`,
  )
  field(commonAncestor === null || isCn(commonAncestor), 'result: commonAncestor must be a device name or null')
  field(hops === null || typeof hops === 'number', 'result: hops must be an unsigned integer or null')
  field(peer === null || isCn(peer), 'result: peer must be a device name or null')
  field(typeof time === 'number', 'result: time must be an unsigned integer')
  return {
    requestId: requestId as Uint8Array,
    verifierCn: verifierCn as string,
    requesterCn: requesterCn as string,
    verdict: {
      allow: allow as boolean,
      code: code as string,
      reason: reason as string,
      path: path as string[],
      commonAncestor: commonAncestor as string | null,
      hops: hops as number | null,
      peer: peer as string | null,
      action: checkActionName(action),
      time: time as number,
    },
  }
}

const TAG_BYTES: ReadonlyArray<readonly [AccessMessage['kind'], Uint8Array]> = (
  Object.entries(ACCESS_TAGS) as Array<[AccessMessage['kind'], string]>
).map(([kind, tag]) => [kind, encodeCbor(tag)] as const)

// The tag is the array's first item; CBOR array headers 0x83..0x85 are the lengths these messages have (RFC 8949 §3.1).
function tagOf(bytes: Uint8Array): AccessMessage['kind'] | undefined {
  if (bytes.length < 2 || bytes[0]! < 0x83 || bytes[0]! > 0x85) return undefined
  for (const [kind, tag] of TAG_BYTES) {
    if (bytes.length > tag.length && bytesEqual(bytes.subarray(1, 1 + tag.length), tag)) return kind
  }
  return undefined
}

function decodeKnown(kind: AccessMessage['kind'], bytes: Uint8Array): AccessMessage {
  if (bytes.length > MAX_ACCESS_MESSAGE_BYTES)
    throw new DecodeError(
      'DECODE_OVERSIZE',
      `an inbox access message is at most ${MAX_ACCESS_MESSAGE_BYTES} bytes, got ${bytes.length}`,
    )
  const v = decodeCbor(bytes, MAX_ACCESS_MESSAGE_BYTES)
  const lengths = { ask: 4, challenge: 3, answer: 3, result: 5 } as const
  if (!Array.isArray(v) || v.length !== lengths[kind])
    throw new DecodeError('DECODE_SHAPE', `an ${ACCESS_TAGS[kind]} message is a CBOR array of ${lengths[kind]} items`)
  const requestId = v[1] as CborValue
  field(
    isBytes(requestId, REQUEST_ID_BYTES, REQUEST_ID_BYTES),
    `${ACCESS_TAGS[kind]}: requestId must be ${REQUEST_ID_BYTES} bytes`,
  )
  const id = requestId as Uint8Array
  switch (kind) {
    case 'ask':
      return { kind, requestId: id, requesterCn: checkRequesterCn(v[2]), action: checkActionName(v[3]) }
    case 'challenge':
      field(
        isBytes(v[2], 1, MAX_CHALLENGE_BYTES),
        `access-challenge: the challenge must be 1..${MAX_CHALLENGE_BYTES} bytes`,
      )
      return { kind, requestId: id, challenge: v[2] as Uint8Array }
    case 'answer':
      field(isBytes(v[2], 1, MAX_ANSWER_BYTES), `access-answer: the answer must be 1..${MAX_ANSWER_BYTES} bytes`)
      return { kind, requestId: id, answer: v[2] as Uint8Array }
    case 'result':
      field(
        isBytes(v[2], 1, MAX_RESULT_BODY_BYTES),
        `access-result: the body must be 1..${MAX_RESULT_BODY_BYTES} bytes`,
      )
      field(isBytes(v[3], 1, MAX_SIGNED_BYTES), `access-result: the certificate must be 1..${MAX_SIGNED_BYTES} bytes`)
      field(
        isBytes(v[4], 1, MAX_SIGNATURE_BYTES),
        `access-result: the signature must be 1..${MAX_SIGNATURE_BYTES} bytes`,
      )
      return {
        kind,
        requestId: id,
        body: v[2] as Uint8Array,
        certificateDer: v[3] as Uint8Array,
        signature: v[4] as Uint8Array,
      }
  }
}

/** Decodes one of the four messages from untrusted bytes; DecodeError (DECODE_SHAPE for foreign traffic) otherwise. */
export function decodeAccessMessage(bytes: Uint8Array): AccessMessage {
  const kind = tagOf(bytes)
  if (kind === undefined)
    throw new DecodeError('DECODE_SHAPE', 'not an inbox access message (access-ask, -challenge, -answer or -result)')
  return decodeKnown(kind, bytes)
}

/** Reads an inbox message without ever throwing: foreign traffic, one of ours that is malformed, or one of ours. */
export function readInboxMessage(bytes: Uint8Array): InboxRead {
  const kind = tagOf(bytes)
  if (kind === undefined) return { kind: 'foreign' }
  try {
    return { kind: 'message', message: decodeKnown(kind, bytes) }
  } catch (e) {
    const error =
      e instanceof DecodeError
        ? e
        : new DecodeError('DECODE_CBOR', `${ACCESS_TAGS[kind]}: ${(e as Error)?.message ?? String(e)}`, { cause: e })
    return { kind: 'malformed', tag: ACCESS_TAGS[kind], error }
  }
}
