/** @module Signature checks ahead of validation: a batch's Ed25519 signatures verified in parallel before the ordered rules run. */
import { bytesEqual, toHex } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { signingInputOfBytes } from './event.ts'
import type { LedgerState } from './state.ts'
import type { EncodedEvent } from './types.ts'
import type { VerifiedSignatures } from './validate.ts'

/*
 * Validation is sequential (each event's rules read the state the previous ones left), but a signature check
 * needs only the event's bytes and its issuer's key, and the issuer's key is fixed by the event's first link:
 * the binding that link names (its genesis, authorize or rekey event) holds it. So for every event whose first
 * link is already in the ledger, or is an event of the same batch, the key is known before validation starts,
 * and the checks can run at once on every core (node:crypto's thread pool) while the caller does other work.
 * Validation then skips a check only for the exact (event id, key) pair that verified here; anything else —
 * a key not found, a failed check, a provider without an asynchronous verifier — is verified (and refused)
 * by validation itself, as before. Nothing is trusted that was not verified under the key validation uses.
 */

/** Event ids that verified, each with the key it verified under. */
export class VerifiedSignatureSet implements VerifiedSignatures {
  readonly #keys = new Map<string, Uint8Array>()

  /** How many signatures are held. */
  get size(): number {
    return this.#keys.size
  }

  /** Records that `idHex` verified under `ledgerKey`. */
  add(idHex: string, ledgerKey: Uint8Array): void {
    this.#keys.set(idHex, ledgerKey)
  }

  holds(idHex: string, ledgerKey: Uint8Array): boolean {
    const key = this.#keys.get(idHex)
    return key !== undefined && bytesEqual(key, ledgerKey)
  }
}

/**
 * The signatures a verified in-memory ledger holds: event `idHex` in `state` under the key validation used for it
 * (genesis: its own; any other: its issuer binding's). For a file this process has just written from that state:
 * a record with another id (a swapped file) is not held, so it is verified again.
 */
export function verifiedIn(state: LedgerState): VerifiedSignatures {
  return {
    holds: (idHex, ledgerKey) => {
      const e = state.event(idHex)
      if (e === undefined) return false
      const ev = e.event
      const key =
        ev.type === 'genesis'
          ? ev.body.ledgerKey
          : ev.links[0] === undefined
            ? undefined
            : state.bindingById(toHex(ev.links[0]))?.ledgerKey
      return key !== undefined && bytesEqual(key, ledgerKey)
    },
  }
}

/** Any of several sets: one flush of the miner validates the submissions that queued up together. */
export function anyOf(sets: readonly VerifiedSignatures[]): VerifiedSignatures {
  return { holds: (idHex, ledgerKey) => sets.some(s => s.holds(idHex, ledgerKey)) }
}

/** The key a binding-creating event binds: genesis (L0's own), authorize (the child's), rekey (the new one). */
export function keyBoundBy(e: EncodedEvent): Uint8Array | undefined {
  const ev = e.event
  return ev.type === 'genesis' || ev.type === 'authorize' || ev.type === 'rekey' ? ev.body.ledgerKey : undefined
}

/**
 * Verifies, on the provider's asynchronous verifier, the signature of every event of `events` whose issuer key
 * is known from `state`, from the batch itself or from `keyOf` (the miner: events submitted but not yet in the
 * log), and resolves with those that verified. Resolves with an empty set at once when the provider has no
 * asynchronous verifier. Never rejects. `known`: pairs verified earlier in this process, taken without a check and
 * added to as checks succeed.
 */
export async function precheckSignatures(
  crypto: CryptoProvider,
  state: LedgerState,
  events: readonly EncodedEvent[],
  keyOf?: (linkHex: string) => Uint8Array | undefined,
  known?: VerifiedSignatureSet,
): Promise<VerifiedSignatureSet> {
  const out = new VerifiedSignatureSet()
  const verifyAsync = crypto.ed25519VerifyAsync
  if (verifyAsync === undefined || events.length === 0) return out
  const inBatch = new Map<string, EncodedEvent>()
  for (const e of events) inBatch.set(e.idHex, e)
  const checks: Promise<void>[] = []
  for (const e of events) {
    // A genesis has no link (validation checks it with the key it founds); the rest sign with the key their first link binds.
    const link = e.event.links[0]
    if (link === undefined) continue
    const linkHex = toHex(link)
    let key = state.bindingById(linkHex)?.ledgerKey
    if (key === undefined) {
      const linked = inBatch.get(linkHex)
      key = linked === undefined ? keyOf?.(linkHex) : keyBoundBy(linked)
    }
    if (key === undefined) continue
    const k = key
    // A pair this process verified already (known: shared-events.ts) is the same fact again: the id pins the bytes.
    if (known?.holds(e.idHex, k) === true) {
      out.add(e.idHex, k)
      continue
    }
    checks.push(
      verifyAsync.call(crypto, e.event.signature, signingInputOfBytes(e.bytes), k).then(
        ok => {
          if (!ok) return
          out.add(e.idHex, k)
          known?.add(e.idHex, k)
        },
        () => undefined,
      ),
    )
  }
  await Promise.all(checks)
  return out
}
