/** @module Stage 1 of an access decision: the peer certificate chains to the fleet root and is valid now. */
import { VerificationError } from '../errors.ts'
import { bytesEqual, toHex } from '../codec/bytes.ts'
import type { AccessRequest, DecisionContext, PeerCertificate, VerifiedChain } from './types.ts'

// RFC 5280 §4.1.2.5: the validity period is re-checked on every decision, cached or not, because the
// cache remembers only what the signatures proved, which does not change with time.
function checkValidityPeriod(certificate: PeerCertificate, chain: VerifiedChain, now: number): void {
  if (now < certificate.notBefore) {
    throw new VerificationError(
      'CERT_NOT_YET_VALID',
      `the certificate of ${chain.cn} is not valid before ${certificate.notBefore} (now ${now})`,
    )
  }
  if (now > chain.notAfter || now > certificate.notAfter) {
    throw new VerificationError(
      'CERT_EXPIRED',
      `the certificate of ${chain.cn} expired at ${Math.min(chain.notAfter, certificate.notAfter)} (now ${now})`,
    )
  }
}

/**
 * The chain result for the request's certificate: the one the caller passed (checked to be for this very
 * certificate), else the cached one, else a fresh `context.verifyChain` run, which is then cached. A warm
 * decision therefore verifies no signature here.
 */
export function verifyChainStage<C extends PeerCertificate>(
  request: AccessRequest<C>,
  context: DecisionContext<C>,
): VerifiedChain {
  const { certificate } = request
  const key = toHex(certificate.certHash)
  let chain = request.chain
  if (chain !== undefined && !bytesEqual(chain.certHash, certificate.certHash)) {
    throw new VerificationError('CERT_CHAIN', 'the pre-verified chain result is for another certificate')
  }
  chain ??= context.chainCache?.get(key)
  if (chain === undefined) {
    chain = context.verifyChain(certificate, context.now)
    if (!bytesEqual(chain.certHash, certificate.certHash)) {
      throw new VerificationError('CERT_CHAIN', 'the chain verifier answered for another certificate')
    }
  }
  checkValidityPeriod(certificate, chain, context.now)
  context.chainCache?.set(key, chain)
  return chain
}
