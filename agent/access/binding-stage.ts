/** @module Stage 2 of an access decision: the ledger binds the certificate's CN to its key, and the binding holds now. */
import { KinError, VerificationError } from '../errors.ts'
import { bytesEqual } from '../codec/bytes.ts'
import type { Binding } from '../ledger/types.ts'
import type { InvalidReason, LedgerState } from '../ledger/state.ts'
import { verifyBinding } from '../pki/binding.ts'
import { missingProof } from './errors.ts'
import { lineageRefusal } from './lineage-stage.ts'
import type { DecisionContext, VerifiedChain } from './types.ts'

/** A time in seconds as people read it (ISO 8601, UTC). */
function isoSeconds(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace('.000Z', 'Z')
}

function refusalOf(reason: InvalidReason, ledger: LedgerState, binding: Binding): VerificationError {
  switch (reason.code) {
    case 'REVOKED':
      return new VerificationError(
        'ACCESS_REVOKED',
        `${reason.cn} was revoked (${reason.revocation.reason}) by ${reason.revocation.by}, effective ${isoSeconds(reason.revocation.effective)}`,
      )
    case 'ANCESTOR_REVOKED':
      return new VerificationError(
        'ACCESS_ANCESTOR_REVOKED',
        `${reason.cn} lies under ${reason.ancestorCn}, revoked (${reason.revocation.reason}) effective ${isoSeconds(reason.revocation.effective)}`,
      )
    case 'EXPIRED':
      return new VerificationError(
        'ACCESS_EXPIRED',
        `the ledger's authorization of ${reason.cn} ended at ${reason.notAfter}`,
      )
    case 'PARENT_SUPERSEDED':
      return new VerificationError(
        'ACCESS_ANCESTOR_REVOKED',
        `${reason.cn} was authorized under keys of ${reason.ancestorCn} that a rekey had already replaced`,
      )
    case 'LINEAGE_GAP':
      return (
        lineageRefusal(ledger, binding) ??
        new VerificationError('ACCESS_LINEAGE_GAP', `the ledger cannot follow the lineage of ${reason.cn}`)
      )
  }
}

// agent/pki verifyBinding's refusals, marked retryable where a replica that lags behind the miner would also see them:
// a key the ledger never saw may come from a rekey not merged yet, and a certified event may still be on its way.
function withRetry(e: unknown, chain: VerifiedChain, ledger: LedgerState): unknown {
  if (!(e instanceof KinError)) return e
  const replaced =
    e.code === 'CERT_UNBOUND' &&
    (ledger.bindingsByCn.get(chain.cn) ?? []).some(b => bytesEqual(b.spkiHash, chain.spkiHash))
  if (replaced)
    return new VerificationError(
      'CERT_UNBOUND',
      `the certificate's key for ${chain.cn} was replaced by a rekey; the peer must use its new certificate`,
      { cause: e },
    )
  return new VerificationError(e.code, e.message, { cause: e, detail: { retry: true } })
}

/**
 * The peer's current binding, after checking (DESIGN.md "Access decision" step 2): the ledger knows the CN
 * (ACCESS_MISSING_PROOF), binds it to the certificate's SPKI hash (CERT_UNBOUND), a certified event recorded this
 * certificate (CERT_NOT_CERTIFIED), and the binding is valid now: ACCESS_REVOKED, ACCESS_ANCESTOR_REVOKED,
 * ACCESS_EXPIRED, ACCESS_MISSING_PROOF (an ancestor's binding absent) or ACCESS_LINEAGE_GAP otherwise.
 */
export function verifyBindingStage(chain: VerifiedChain, context: Pick<DecisionContext, 'ledger' | 'now'>): Binding {
  const { ledger, now } = context
  if (ledger.currentBinding(chain.cn) === undefined) throw missingProof(chain.cn, 'the peer')
  let binding: Binding
  try {
    binding = verifyBinding(chain, ledger)
  } catch (e) {
    throw withRetry(e, chain, ledger)
  }
  const invalid = ledger.invalidAt(binding, now)
  if (invalid !== undefined) throw refusalOf(invalid, ledger, binding)
  return binding
}
