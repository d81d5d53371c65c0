/** @module verifyChain: the X.509 stage of every access check — fleet root signature, validity, key usage, names. */
import { VerificationError, isKinError } from '../errors.ts'
import { bytesEqual } from '../codec/bytes.ts'
import { labelOfCn, parentMarker } from '../ledger/names.ts'
import { DeviceCertificate } from './certificate.ts'
import { checkPublicKeyParameters } from './key-parameters.ts'
import type { PkiProvider } from './provider.ts'
import { fleetDomainOfRootCn } from './root-name.ts'

/** What the chain stage vouches for, handed on to the binding and lineage stages. */
export interface ChainInfo {
  readonly cn: string
  /** The parent's CN from the SAN marker; undefined for L0. */
  readonly parentCn: string | undefined
  readonly spkiHash: Uint8Array
  readonly certHash: Uint8Array
  readonly notAfter: number
}

/** Signature by the fleet root, issuer Name = root subject; CERT_CHAIN otherwise, RSA_KEY_SIZE / RSA_EXPONENT first for either key. Returns the fleet domain. */
export function checkIssuedByRoot(cert: DeviceCertificate, root: DeviceCertificate, provider: PkiProvider): string {
  const domain = fleetDomainOfRootCn(root.cn)
  if (!root.isCA || !(root.keyUsage ?? []).includes('keyCertSign')) throw new VerificationError('CERT_CHAIN', 'the trusted root is not a CA certificate')
  // RFC 5280 §6.1.3 (a)(4): the issuer must be the root by name; binary comparison suffices for names this fleet wrote (§7.1).
  if (!bytesEqual(cert.layout.issuer, root.layout.subject)) throw new VerificationError('CERT_CHAIN', `certificate for "${cert.cn}" was not issued by ${root.cn}`)
  // Both keys' RSA parameters before the signature: the root's is the one RSAVP1 runs with, the leaf's is the one
  // its holder will prove possession with (TLS, challenge answers).
  checkPublicKeyParameters(root.layout.spki, `fleet root ${root.cn}`)
  checkPublicKeyParameters(cert.layout.spki, `certificate for "${cert.cn}"`)
  // RFC 5280 §6.1.3 (a)(1)
  if (!provider.verifyCertificateSignature(cert.der, root.der)) throw new VerificationError('CERT_CHAIN', `certificate for "${cert.cn}" is not signed by ${root.cn}`)
  return domain
}

/** RFC 5280 §4.1.2.5: valid from notBefore through notAfter, both inclusive. CERT_NOT_YET_VALID or CERT_EXPIRED otherwise. */
export function checkValidity(cert: DeviceCertificate, now: number): void {
  if (now < cert.notBefore) throw new VerificationError('CERT_NOT_YET_VALID', `certificate for "${cert.cn}" is not valid before ${cert.notBefore} (now ${now})`)
  if (now > cert.notAfter) throw new VerificationError('CERT_EXPIRED', `certificate for "${cert.cn}" expired at ${cert.notAfter} (now ${now})`)
}

/** A leaf: not a CA, may sign (digitalSignature), and may act as TLS client and server. CERT_KEY_USAGE otherwise. */
export function checkLeafKeyUsage(cert: DeviceCertificate): void {
  const ku = cert.keyUsage ?? [], eku = cert.extKeyUsage ?? []
  if (cert.isCA || ku.includes('keyCertSign')) throw new VerificationError('CERT_KEY_USAGE', `certificate for "${cert.cn}" is a CA certificate, not a device's`)
  if (!ku.includes('digitalSignature')) throw new VerificationError('CERT_KEY_USAGE', `certificate for "${cert.cn}" lacks keyUsage digitalSignature`)
  for (const purpose of ['clientAuth', 'serverAuth']) {
    if (!eku.includes(purpose)) throw new VerificationError('CERT_KEY_USAGE', `certificate for "${cert.cn}" lacks extKeyUsage ${purpose}`)
  }
}

function requireFleetName(cn: string, domain: string): void {
  try {
    labelOfCn(cn, domain)
  } catch (cause) {
    if (!isKinError(cause, 'CERT_NAMES')) throw cause
    throw new VerificationError('CERT_NAMES', `"${cn}" is not a device name of fleet ${domain}`, { cause })
  }
}

/** CN a device name of the fleet; SAN = DNS:<CN> plus at most one DNS:parent.<CN of the fleet>, nothing else. CERT_NAMES otherwise. */
export function checkLeafNames(cert: DeviceCertificate, domain: string): void {
  const fail = (why: string): never => { throw new VerificationError('CERT_NAMES', `certificate for "${cert.cn}": ${why}`, { detail: { sanDns: [...cert.sanDns] } }) }
  requireFleetName(cert.cn, domain)
  if (cert.sanOtherCount !== 0) fail('SAN holds entries that are not DNS names')
  if (!cert.sanDns.includes(cert.cn)) fail('SAN lacks DNS:<CN>')
  if (cert.parentCns.length > 1) fail('SAN names more than one parent')
  const parentCn = cert.parentCns[0]
  const allowed = parentCn === undefined ? [cert.cn] : [cert.cn, parentMarker(parentCn)]
  if (cert.sanDns.length !== allowed.length || !cert.sanDns.every(n => allowed.includes(n))) fail('SAN holds entries other than the CN and its parent marker')
  if (parentCn !== undefined) {
    if (parentCn === cert.cn) fail('SAN names the device as its own parent')
    requireFleetName(parentCn, domain)
  }
}

/**
 * Verifies a device certificate against the fleet root at `now` (seconds): RSA_KEY_SIZE / RSA_EXPONENT, CERT_CHAIN, CERT_EXPIRED / CERT_NOT_YET_VALID
 * (leaf or root), CERT_KEY_USAGE, CERT_NAMES, in that order; CERT_PARSE for unparsable input. The provider picks the
 * signature path: node (X509Certificate) or portable (forge); both reach the same verdict.
 */
export function verifyChain(cert: DeviceCertificate | string | Uint8Array, root: DeviceCertificate | string | Uint8Array, now: number, provider: PkiProvider): ChainInfo {
  const leaf = DeviceCertificate.from(cert), fleetRoot = DeviceCertificate.from(root)
  const domain = checkIssuedByRoot(leaf, fleetRoot, provider)
  checkValidity(leaf, now)
  checkValidity(fleetRoot, now)
  checkLeafKeyUsage(leaf)
  checkLeafNames(leaf, domain)
  return { cn: leaf.cn, parentCn: leaf.parentCn, spkiHash: leaf.spkiHash, certHash: leaf.certHash, notAfter: leaf.notAfter }
}
