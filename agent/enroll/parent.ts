/** @module docs/PAIRING.md step 4 on the parent: derive the child's CN, sign the authorization proof, keep it. */
import { KinError } from '../errors.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { authorizeEvent, rekeyEvent } from '../ledger/builders.ts'
import { signEvent } from '../ledger/event.ts'
import type { Ledger } from '../ledger/ledger.ts'
import type { EncodedEvent, RoleName } from '../ledger/types.ts'
import type { EnrollRequest } from './request.ts'

/** The parent's choices for a child: role, delegation depth and how long the authorization holds. */
export interface AuthorizeChoices {
  role: RoleName
  notAfter: number
  depth?: number
  /** Overrides the name the child asked for. */
  name?: string
}

/**
 * Signs the authorize event for a child (the authorization proof) with the parent's current binding and
 * checks it against the parent's own ledger, so a parent never hands out a proof its fleet would refuse.
 * The caller appends the returned event to the parent's ledger (that is how the parent "keeps" the proof).
 */
export function authorizeChild(
  crypto: CryptoProvider,
  ledger: Ledger,
  parent: { cn: string; ledgerSeed: Uint8Array },
  request: EnrollRequest,
  choices: AuthorizeChoices,
  now: number,
): EncodedEvent {
  const binding = ledger.state.currentBinding(parent.cn)
  if (binding === undefined)
    throw new KinError(
      'ENROLL_STATE',
      `this device (${parent.cn}) has no binding in its own ledger; sync its ledger first`,
    )
  const depth =
    choices.depth ?? (choices.role === 'device' || choices.role === 'guest' ? 0 : Math.max(0, binding.depth - 1))
  const notAfter = Math.min(choices.notAfter, binding.notAfter)
  const unsigned = authorizeEvent(
    crypto,
    binding,
    {
      spkiHash: crypto.sha256(request.spkiDer),
      ledgerKey: request.ledgerKey,
      role: choices.role,
      depth,
      notAfter,
      kind: request.kind,
      name: choices.name ?? request.name,
    },
    now,
  )
  const event = signEvent(crypto, unsigned, parent.ledgerSeed)
  ledger.check(event, { now })
  return event
}

/**
 * Signs a rekey: new keys (from a fresh enroll request made by the device) for the existing CN `childCn`, which
 * must be this parent's child. Used after a compromise: siblings and unaffected children need nothing.
 */
export function rekeyChild(
  crypto: CryptoProvider,
  ledger: Ledger,
  parent: { cn: string; ledgerSeed: Uint8Array },
  childCn: string,
  request: EnrollRequest,
  now: number,
  notAfter?: number,
): EncodedEvent {
  const binding = ledger.state.currentBinding(parent.cn)
  const child = ledger.state.currentBinding(childCn)
  if (binding === undefined || child === undefined)
    throw new KinError(
      'ENROLL_STATE',
      `this device's ledger lacks ${binding === undefined ? parent.cn : childCn}; sync its ledger first`,
    )
  const unsigned = rekeyEvent(
    crypto,
    binding,
    child,
    {
      spkiHash: crypto.sha256(request.spkiDer),
      ledgerKey: request.ledgerKey,
      notAfter: Math.min(notAfter ?? child.notAfter, binding.notAfter),
    },
    now,
  )
  const event = signEvent(crypto, unsigned, parent.ledgerSeed)
  ledger.check(event, { now })
  return event
}
