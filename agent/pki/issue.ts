/** @module The fleet CA's issuance: checks a CSR against its authorization, then signs the device certificate (docs/PAIRING.md steps 5–6). */
import { KinError, VerificationError, isKinError } from '../errors.ts'
import { labelOfCn } from '../ledger/names.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { DeviceCertificate } from './certificate.ts'
import { checkCsrAgainstAuthorization, type Authorization } from './csr-check.ts'
import type { ParsedCsr } from './csr-parse.ts'
import { buildLeafCertificate } from './leaf-profile.ts'
import { spkiDerFromPublicKeyPem } from './keys.ts'
import { fleetDomainOfRootCn } from './root-name.ts'
import { CLOCK_SKEW_SECONDS } from './root.ts'
import { defaultSha256 } from './rsa-verify.ts'
import type { RandomBytes, X509Builder } from './_build.ts'
import { x509Builder } from './builder.ts'

export { checkCsrAgainstAuthorization, type Authorization } from './csr-check.ts'

/** Default device certificate lifetime before the authorization's notAfter caps it: one year. */
export const DEFAULT_VALIDITY_SECONDS = 365 * 24 * 3600

/** What every issuance needs: the CA, the time, and randomness for the serial. */
export interface CaOptions {
  readonly rootCertPem: string | DeviceCertificate
  readonly rootKeyPem: string
  /** Seconds since the epoch. */
  readonly now: number
  /** Requested lifetime in seconds (default one year); capped by notAfter and the root's own notAfter. */
  readonly validitySeconds?: number
  readonly randomBytes: RandomBytes
  /** SHA-256 for key hashes (default @noble/hashes). */
  readonly crypto?: Pick<CryptoProvider, 'sha256'>
  /** The certificate builder (default: `x509Builder()`, native where WebCrypto exists). */
  readonly builder?: X509Builder
}

interface Ca {
  root: DeviceCertificate
  domain: string
  builder: X509Builder
}

async function loadCa(options: CaOptions): Promise<Ca> {
  const root = DeviceCertificate.from(options.rootCertPem)
  const builder = options.builder ?? x509Builder()
  // Checked once per key by the native builder, which keeps the imported key for the signatures that follow.
  await builder.requireKeyPair({
    privateKeyPem: options.rootKeyPem,
    spkiDer: root.layout.spki,
    mismatch: 'root key does not belong to the root certificate',
  })
  if (!root.isCA || !(root.keyUsage ?? []).includes('keyCertSign'))
    throw new KinError('BAD_ARGUMENT', 'root certificate is not a CA certificate')
  return { root, domain: fleetDomainOfRootCn(root.cn), builder }
}

function requireFleetName(cn: string, domain: string, what: string): void {
  try {
    labelOfCn(cn, domain)
  } catch (cause) {
    if (!isKinError(cause, 'CERT_NAMES')) throw cause
    throw new VerificationError('CSR_NAMES', `${what} "${cn}" is not a device name of fleet ${domain}`, { cause })
  }
}

/** The validity window: back-dated by the clock skew, ending at the earliest of now+validity, notAfter and the root's notAfter. */
function validityWindow(
  options: CaOptions,
  root: DeviceCertificate,
  notAfter: number,
): { notBefore: number; notAfter: number } {
  const { now } = options
  const validity = options.validitySeconds ?? DEFAULT_VALIDITY_SECONDS
  if (!Number.isSafeInteger(now) || now < 0)
    throw new KinError('BAD_ARGUMENT', `"now" expected whole seconds, got ${now}`)
  if (!Number.isSafeInteger(validity) || validity <= 0)
    throw new KinError('BAD_ARGUMENT', `"validitySeconds" expected a positive integer, got ${validity}`)
  if (!Number.isSafeInteger(notAfter) || notAfter <= now)
    throw new VerificationError('CA_VALIDITY', `authorization notAfter ${notAfter} is not after now (${now})`)
  if (root.notAfter <= now) throw new VerificationError('CA_VALIDITY', `fleet root expired at ${root.notAfter}`)
  return { notBefore: now - CLOCK_SKEW_SECONDS, notAfter: Math.min(now + validity, notAfter, root.notAfter) }
}

/**
 * Issues a device certificate for a CSR (PEM, or already parsed) that matches its authorization (see
 * `checkCsrAgainstAuthorization` for codes).
 * The ledger-side checks (parent's signature, lineage, nonce) are done by ingesting the authorize event beforehand.
 * CA_VALIDITY when auth.notAfter ≤ now or the root has expired.
 */
export async function issueDeviceCertificate(
  options: CaOptions & { readonly csrPem: string | ParsedCsr; readonly auth: Authorization },
): Promise<DeviceCertificate> {
  const { auth } = options
  const ca = await loadCa(options)
  requireFleetName(auth.cn, ca.domain, 'authorized CN')
  if (auth.parentCn !== undefined) requireFleetName(auth.parentCn, ca.domain, 'authorized parent CN')
  const csr = checkCsrAgainstAuthorization(options.csrPem, auth, options.crypto ?? { sha256: defaultSha256 })
  return buildLeafCertificate({
    root: ca.root,
    rootKeyPem: options.rootKeyPem,
    cn: auth.cn,
    parentCn: auth.parentCn,
    spki: csr.spkiDer,
    ...validityWindow(options, ca.root, auth.notAfter),
    randomBytes: options.randomBytes,
    builder: ca.builder,
  })
}

/** Issues L0's own TLS certificate (same profile, no parent entry): L0 holds the CA, so it needs no CSR. */
export async function issueL0Certificate(
  options: CaOptions & { readonly cn: string; readonly publicKeyPem: string; readonly notAfter: number },
): Promise<DeviceCertificate> {
  const ca = await loadCa(options)
  requireFleetName(options.cn, ca.domain, 'L0 CN')
  return buildLeafCertificate({
    root: ca.root,
    rootKeyPem: options.rootKeyPem,
    cn: options.cn,
    parentCn: undefined,
    spki: spkiDerFromPublicKeyPem(options.publicKeyPem),
    ...validityWindow(options, ca.root, options.notAfter),
    randomBytes: options.randomBytes,
    builder: ca.builder,
  })
}
