/** @module The fleet root CA: a self-signed RSA-2048 certificate that issues every device certificate of one fleet. */
import { KinError } from '../errors.ts'
import type { DeviceCertificate } from './certificate.ts'
import { buildCertificate, forgeRandomBytes, randomSerialHex, type RandomBytes } from './_build.ts'
import { keysMatch, rsaPrivateKeyFromPem, rsaPublicKeyFromPem } from './keys.ts'
import { fleetRootCn } from './root-name.ts'

/** Seconds a certificate is back-dated so devices with a slightly slow clock accept it. */
export const CLOCK_SKEW_SECONDS = 300

/** Inputs of `createFleetRoot`. */
export interface FleetRootOptions {
  readonly domain: string
  readonly keyPair: { readonly privateKeyPem: string; readonly publicKeyPem: string }
  /** Seconds since the epoch. */
  readonly now: number
  /** Validity in whole years (default 20). */
  readonly years?: number
  /** Random source for the serial (default: forge's CSPRNG). */
  readonly randomBytes?: RandomBytes
}

/** Adds whole calendar years to a time in seconds (UTC). */
function addYears(seconds: number, years: number): number {
  const d = new Date(seconds * 1000)
  d.setUTCFullYear(d.getUTCFullYear() + years)
  return Math.floor(d.getTime() / 1000)
}

/**
 * Creates the self-signed fleet root: CN "kinship fleet root <domain>", basicConstraints CA:true pathLen 0 (critical),
 * keyUsage keyCertSign+cRLSign (critical), subjectKeyIdentifier, random positive 16-byte serial, sha256WithRSAEncryption.
 */
export function createFleetRoot(options: FleetRootOptions): DeviceCertificate {
  const { domain, keyPair, now } = options
  const years = options.years ?? 20
  if (!Number.isSafeInteger(now) || now < 0) throw new KinError('BAD_ARGUMENT', `"now" expected whole seconds, got ${now}`)
  if (!Number.isInteger(years) || years < 1 || years > 100) throw new KinError('BAD_ARGUMENT', `"years" expected 1..100, got ${years}`)
  const cn = fleetRootCn(domain)
  const privateKey = rsaPrivateKeyFromPem(keyPair.privateKeyPem)
  const publicKey = rsaPublicKeyFromPem(keyPair.publicKeyPem)
  if (!keysMatch(privateKey, publicKey)) throw new KinError('BAD_ARGUMENT', 'root private key and public key do not match')
  return buildCertificate({
    subjectCn: cn,
    issuerName: undefined,
    publicKey,
    notBefore: now - CLOCK_SKEW_SECONDS,
    notAfter: addYears(now, years),
    serialHex: randomSerialHex(options.randomBytes ?? forgeRandomBytes),
    extensions: [
      // RFC 5280 §4.2.1.9: the fleet is one level deep in X.509; the tree's depth lives in SAN and ledger.
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      // RFC 5280 §4.2.1.3
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      // RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING contents.
      { name: 'subjectKeyIdentifier' },
    ],
  }, privateKey)
}
