/** @module The fleet root's name: "kinship fleet root <domain>", from which a verifier learns the fleet domain. */
import { VerificationError } from '../errors.ts'
import { validateFleetDomain } from '../ledger/names.ts'
import { isKinError } from '../errors.ts'

/** The CN prefix of every fleet root. */
export const FLEET_ROOT_CN_PREFIX = 'kinship fleet root '

/** The root CN for a fleet domain (the domain is validated: KinError FLEET_DOMAIN or FLEET_DOMAIN_TOO_LONG). */
export function fleetRootCn(domain: string): string {
  return FLEET_ROOT_CN_PREFIX + validateFleetDomain(domain)
}

/** The fleet domain named by a root CN; VerificationError CERT_CHAIN when it is not a kinship fleet root's CN. */
export function fleetDomainOfRootCn(rootCn: string): string {
  if (typeof rootCn !== 'string' || !rootCn.startsWith(FLEET_ROOT_CN_PREFIX)) {
    throw new VerificationError('CERT_CHAIN', `"${rootCn}" is not a kinship fleet root`)
  }
  try {
    return validateFleetDomain(rootCn.slice(FLEET_ROOT_CN_PREFIX.length))
  } catch (cause) {
    if (!isKinError(cause, 'FLEET_DOMAIN') && !isKinError(cause, 'FLEET_DOMAIN_TOO_LONG')) throw cause
    throw new VerificationError('CERT_CHAIN', `fleet root "${rootCn}" names no valid fleet domain`, { cause })
  }
}
