/** @module One-time pairing codes: the code, what is derived from it, and the messages it authenticates end to end. */
import { hkdf } from '@noble/hashes/hkdf.js'
import { hmac } from '@noble/hashes/hmac.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { DecodeError, KinError, VerificationError } from '../errors.ts'
import { bytesEqual, concatBytes, toHex, utf8 } from '../codec/bytes.ts'
import { decodeCbor, encodeCbor } from '../codec/cbor.ts'
import { base32 } from '../ledger/names.ts'

/** Random bytes in a pairing code: 80 bits, 16 base32 characters. */
export const CODE_BYTES = 10
const SALT = utf8('kinship/pair/v1')
const MESSAGE_PREFIX = utf8('kinship/pair-msg/v1\0')

/** A new pairing code from 10 random bytes, shown as four groups: `abcd-efgh-ijkl-mnop`. */
export function formatPairingCode(random: Uint8Array): string {
  if (random.length !== CODE_BYTES) throw new RangeError(`"random" expected ${CODE_BYTES} bytes, got ${random.length}`)
  return base32(random).match(/.{4}/g)!.join('-')
}

/** Normalizes what a person typed (case, spaces, dashes, 0/1 look-alikes) or throws KinError PAIR_CODE_FORMAT. */
export function normalizePairingCode(typed: string): string {
  const s = String(typed).toLowerCase().replace(/[\s-]/g, '').replace(/0/g, 'o').replace(/1/g, 'l').replace(/8/g, 'b')
  if (!/^[a-z2-7]{16}$/.test(s)) {
    throw new KinError(
      'PAIR_CODE_FORMAT',
      'a pairing code is 16 letters and digits 2-7, like abcd-efgh-ijkl-mnop; check for a typo',
    )
  }
  return s
}

/** What both ends (and, for login, L0) derive from a code. */
export interface PairingSecrets {
  /** Public name of the pairing session: 16 hex characters, the topic segment. */
  inviteId: string
  /** MQTT password of the pairing session (hex); L0 stores only its SHA-256. */
  loginProof: string
  /** HMAC key authenticating pairing messages between the two ends. */
  macKey: Uint8Array
}

/** HKDF-SHA256 (RFC 5869) of the normalized code into the invite id, login proof and MAC key. */
export function derivePairingSecrets(code: string): PairingSecrets {
  const ikm = utf8(normalizePairingCode(code))
  const part = (info: string, n: number) => hkdf(sha256, ikm, SALT, utf8(info), n)
  return { inviteId: toHex(part('invite-id', 8)), loginProof: toHex(part('login', 16)), macKey: part('mac', 32) }
}

/** What L0 keeps to check a pairing login: SHA-256 of the login proof, hex. */
export function loginVerifier(loginProof: string): string {
  return toHex(sha256(utf8(loginProof)))
}

/** Constant-time check of a pairing login against a stored verifier. */
export function checkLogin(password: string, verifier: string): boolean {
  return bytesEqual(utf8(loginVerifier(password)), utf8(verifier))
}

/** Kinds of MACed pairing messages. */
export type PairMessageKind = 'request' | 'authorize'

function macInput(kind: string, inviteId: string, payload: Uint8Array): Uint8Array {
  return concatBytes(MESSAGE_PREFIX, encodeCbor([kind, inviteId, payload]))
}

/** A pairing message: CBOR [kind, inviteId, payload, HMAC-SHA256(macKey, prefix ‖ CBOR[kind, inviteId, payload])]. */
export function sealPairMessage(secrets: PairingSecrets, kind: PairMessageKind, payload: Uint8Array): Uint8Array {
  const mac = hmac(sha256, secrets.macKey, macInput(kind, secrets.inviteId, payload))
  return encodeCbor([kind, secrets.inviteId, payload, mac])
}

/** Checks and opens a pairing message of the expected kind; PAIR_MAC when it was not made with this code. */
export function openPairMessage(secrets: PairingSecrets, expected: PairMessageKind, bytes: Uint8Array): Uint8Array {
  const v = decodeCbor(bytes, 64 * 1024)
  if (!Array.isArray(v) || v.length !== 4)
    throw new DecodeError('DECODE_SHAPE', 'a pairing message is a CBOR array of 4 items')
  const [kind, inviteId, payload, mac] = v
  if (
    typeof kind !== 'string' ||
    typeof inviteId !== 'string' ||
    !(payload instanceof Uint8Array) ||
    !(mac instanceof Uint8Array) ||
    mac.length !== 32
  ) {
    throw new DecodeError(
      'DECODE_FIELD',
      'a pairing message is [kind text, inviteId text, payload bytes, mac 32 bytes]',
    )
  }
  const want = hmac(sha256, secrets.macKey, macInput(kind, inviteId, payload))
  if (!bytesEqual(want, mac) || inviteId !== secrets.inviteId)
    throw new VerificationError(
      'PAIR_MAC',
      'pairing message not authenticated by this code: tampered, or from someone without the code',
    )
  if (kind !== expected) throw new VerificationError('PAIR_MAC', `expected a ${expected} message, got ${kind}`)
  return payload
}
