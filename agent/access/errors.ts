/** @module Errors of the access stages: a policy refusal, and the missing-proof refusal a caller may retry. */
import { KinError, VerificationError, type KinErrorCode } from '../errors.ts'

/** A peer that is who it says it is, but whom the trust policy does not allow this action. */
export class PolicyError extends KinError {
  constructor(code: KinErrorCode, message: string, options?: { cause?: unknown; detail?: Record<string, unknown> }) {
    super(code, message, options)
    this.name = 'PolicyError'
  }
}

/** A refusal that a fresher ledger or a proof bundle may lift; `missing` names the CN the ledger lacks, if known. */
export function retryableRefusal(code: KinErrorCode, message: string, missing?: string): VerificationError {
  return new VerificationError(code, message, { detail: { retry: true, missing } })
}

/** The ledger holds no binding for `cn` (the peer, an ancestor, or the deciding device itself). */
export function missingProof(cn: string, what: string): VerificationError {
  return retryableRefusal(
    'ACCESS_MISSING_PROOF',
    `the ledger holds no binding for ${what} ${cn}; merge with the miner or read the peer's proof bundle`,
    cn,
  )
}
