/** @module A device's signed revoke of itself or a descendant (docs/PROTOCOL.md §4.3, §8.2), over the bindings a ledger knows. */
import { VerificationError } from '../errors.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { revokeEvent } from './builders.ts'
import { signEvent } from './event.ts'
import type { LedgerState } from './state.ts'
import type { EncodedEvent, RevokeBody } from './types.ts'

/**
 * The revoke of `targetCn` by `issuer` (the target itself or an ancestor), linking both current bindings as `state`
 * knows them and signed with the issuer's ledger key. Refuses with SUBJECT_UNKNOWN when `state` holds no current
 * binding for either (a device that has not synced yet); the ledger the event enters checks the rest.
 */
export function signedRevoke(
  crypto: CryptoProvider,
  state: LedgerState,
  issuer: { cn: string; ledgerSeed: Uint8Array },
  targetCn: string,
  body: RevokeBody,
  time: number,
): EncodedEvent {
  const by = state.currentBinding(issuer.cn)
  if (by === undefined)
    throw new VerificationError('SUBJECT_UNKNOWN', `this ledger holds no binding for the revoking device ${issuer.cn}`)
  const target = state.currentBinding(targetCn)
  if (target === undefined)
    throw new VerificationError('SUBJECT_UNKNOWN', `this ledger does not know ${targetCn}: sync it first`)
  return signEvent(crypto, revokeEvent(by, target, body, time), issuer.ledgerSeed)
}
