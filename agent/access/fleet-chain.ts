/** @module The fleet's chain verifier for access decisions: agent/pki `verifyChain` with the root and provider bound. */
import { verifyChain } from '../pki/chain.ts'
import type { DeviceCertificate } from '../pki/certificate.ts'
import type { PkiProvider } from '../ports/pki.ts'
import type { ChainVerifier } from './types.ts'

/** Checks peer certificates against the fleet `root` on the node fast path or the portable path (`provider`). */
export function fleetChainVerifier(root: DeviceCertificate, provider: PkiProvider): ChainVerifier<DeviceCertificate> {
  return (certificate, now) => verifyChain(certificate, root, now, provider)
}
