/** @module A device's alarm about its miner: a head or announcement refused as forged, forking or rolled back, with the evidence. */
import { KinError, type KinErrorCode } from '../errors.ts'
import { toHex } from '../codec/bytes.ts'

/**
 * Codes that mean the miner (or whoever publishes as it) contradicts what this device verified: a head not signed by
 * the fleet's miner key, two heads at one height, a tree that is not an extension of the held one, a log that went
 * back, events that do not hash to the root their head signs, a log that contradicts the covered prefix, another
 * genesis. Anything else (a message that does not decode, a full disk) is an error, not an alarm.
 */
export const ALARM_CODES: ReadonlySet<KinErrorCode> = new Set<KinErrorCode>([
  'HEAD_SIGNATURE',
  'HEAD_FORK',
  'HEAD_INCONSISTENT',
  'HEAD_ROLLBACK',
  'HEAD_ROOT_MISMATCH',
  'SYNC_MISMATCH',
  'GENESIS_MISMATCH',
])

/** Where the refused head came from. */
export type AlarmSource = 'head' | 'events' | 'sync' | 'bundle'

/** One refused head: what was wrong, and both heads as evidence (hex of their encodings) when known. */
export interface HeadAlarm {
  code: KinErrorCode
  message: string
  source: AlarmSource
  /** The head this device held and kept. */
  heldHead: string | undefined
  /** The head it was offered and refused. */
  offeredHead: string | undefined
  /** Seconds since the epoch. */
  time: number
}

/** Whether `err` is one of the refusals that raise an alarm. */
export function isAlarm(err: unknown): err is KinError {
  return err instanceof KinError && ALARM_CODES.has(err.code)
}

function hexDetail(err: KinError, key: string): string | undefined {
  const v = err.detail?.[key]
  return typeof v === 'string' ? v : undefined
}

/** The alarm for a refusal; the replica's own evidence (detail heldHead/offeredHead) wins over what the caller knows. */
export function alarmOf(
  err: KinError,
  source: AlarmSource,
  time: number,
  known: { held?: Uint8Array; offered?: Uint8Array } = {},
): HeadAlarm {
  return {
    code: err.code,
    message: err.message,
    source,
    time,
    heldHead: hexDetail(err, 'heldHead') ?? (known.held === undefined ? undefined : toHex(known.held)),
    offeredHead: hexDetail(err, 'offeredHead') ?? (known.offered === undefined ? undefined : toHex(known.offered)),
  }
}
