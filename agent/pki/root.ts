/** @module The fleet root CA: a self-signed certificate (P-256 by default, RSA-2048 by choice) that issues every device certificate of one fleet. */
import { KinError } from '../errors.ts'
import type { DeviceCertificate } from './certificate.ts'
import { randomSerialHex, type RandomBytes, type X509Builder } from './_build.ts'
import { defaultRandomBytes, x509Builder } from './builder.ts'
import { spkiDerFromPublicKeyPem } from './keys.ts'
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
  /** Random source for the serial (default: the engine's CSPRNG). */
  readonly randomBytes?: RandomBytes
  /** The certificate builder (default: `x509Builder()`, native where WebCrypto exists). */
  readonly builder?: X509Builder
}

/** Adds whole calendar years to a time in seconds (UTC). */
function addYears(seconds: number, years: number): number {
  const d = new Date(seconds * 1000)
  d.setUTCFullYear(d.getUTCFullYear() + years)
  return Math.floor(d.getTime() / 1000)
}

/**
 * Creates the self-signed fleet root: CN "kinship fleet root <domain>", basicConstraints CA:true pathLen 0 (critical),
 * keyUsage keyCertSign+cRLSign (critical), subjectKeyIdentifier, random positive 16-byte serial, signed
 * ecdsa-with-SHA256 (P-256 key) or sha256WithRSAEncryption (RSA key).
 */
export async function createFleetRoot(options: FleetRootOptions): Promise<DeviceCertificate> {
  const { domain, keyPair, now } = options
  const years = options.years ?? 20
  if (!Number.isSafeInteger(now) || now < 0)
    throw new KinError('BAD_ARGUMENT', `"now" expected whole seconds, got ${now}`)
  if (!Number.isInteger(years) || years < 1 || years > 100)
    throw new KinError('BAD_ARGUMENT', `"years" expected 1..100, got ${years}`)
  const cn = fleetRootCn(domain)
  const spki = spkiDerFromPublicKeyPem(keyPair.publicKeyPem)
  return (options.builder ?? x509Builder()).buildCertificate(
    {
      subjectCn: cn,
      issuerName: undefined,
      spki,
      notBefore: now - CLOCK_SKEW_SECONDS,
      notAfter: addYears(now, years),
      serialHex: randomSerialHex(options.randomBytes ?? defaultRandomBytes),
      extensions: {
        // RFC 5280 §4.2.1.9: the fleet is one level deep in X.509; the tree's depth lives in SAN and ledger.
        ca: true,
        keyUsage: ['keyCertSign', 'cRLSign'],
        tlsBothWays: false,
        altNames: undefined,
        authorityKeyId: undefined,
      },
    },
    { privateKeyPem: keyPair.privateKeyPem, spkiDer: spki, mismatch: 'root private key and public key do not match' },
  )
}
