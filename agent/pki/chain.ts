/** @module verifyChain: the X.509 stage of every access check — fleet root signature, validity, key usage, names. */
import { VerificationError, isKinError } from '../errors.ts'
import { bytesEqual } from '../codec/bytes.ts'
import { labelOfCn, parentCnOfMarker } from '../ledger/names.ts'
import { oldParentMarkersOf } from './_names.ts'
import { DeviceCertificate } from './certificate.ts'
import { checkTlsKey } from './key-parameters.ts'
import { checkSameAlgorithm, checkSignatureInputs } from './signature-algorithm.ts'
import type { SignatureVerifier } from './verifier.ts'
import { fleetDomainOfRootCn } from './root-name.ts'

/** The name fields `checkLeafNames` reads; DeviceCertificate and kin-core's CoreCertificate both have them. */
export type ChainNames = Pick<DeviceCertificate, 'cn' | 'sanDns' | 'sanUris' | 'sanOtherCount'>

/** The fields of a certificate the chain rules read; DeviceCertificate and kin-core's CoreCertificate both have them. */
export type ChainCertificate = Pick<
  DeviceCertificate,
  | 'der'
  | 'layout'
  | 'cn'
  | 'notBefore'
  | 'notAfter'
  | 'isCA'
  | 'keyUsage'
  | 'extKeyUsage'
  | 'sanDns'
  | 'sanUris'
  | 'sanOtherCount'
  | 'parentCns'
  | 'parentCn'
  | 'spkiHash'
  | 'certHash'
>

/** What the chain stage vouches for, handed on to the binding and lineage stages. */
export interface ChainInfo {
  readonly cn: string
  /** The parent's CN from the SAN marker; undefined for L0. */
  readonly parentCn: string | undefined
  readonly spkiHash: Uint8Array
  readonly certHash: Uint8Array
  readonly notAfter: number
}

/**
 * Signature by the fleet root, issuer Name = root subject; CERT_CHAIN otherwise. Before any signature arithmetic, from
 * the DER framing alone: SIGNATURE_ALGORITHM_MISMATCH, SIGNATURE_SHA1 / SIGNATURE_ALGORITHM, the root's key
 * (RSA_KEY_SIZE, RSA_EXPONENT, EC_CURVE, KEY_TYPE), SIGNATURE_KEY_MISMATCH, then the leaf's key likewise. Returns the
 * fleet domain.
 */
export function checkIssuedByRoot(cert: ChainCertificate, root: ChainCertificate, verifier: SignatureVerifier): string {
  const domain = fleetDomainOfRootCn(root.cn)
  if (!root.isCA || !(root.keyUsage ?? []).includes('keyCertSign'))
    throw new VerificationError('CERT_CHAIN', 'the trusted root is not a CA certificate')
  // RFC 5280 §6.1.3 (a)(4): the issuer must be the root by name; binary comparison suffices for names this fleet wrote (§7.1).
  if (!bytesEqual(cert.layout.issuer, root.layout.subject))
    throw new VerificationError('CERT_CHAIN', `certificate for "${cert.cn}" was not issued by ${root.cn}`)
  checkSameAlgorithm(cert.layout.innerAlgorithm, cert.layout.algorithm, `certificate for "${cert.cn}"`)
  // The root's key is the one the signature is verified with, the leaf's the one its holder will prove possession
  // with (TLS, challenge answers): both are checked before any arithmetic.
  const algorithm = checkSignatureInputs(cert.layout.algorithm, root.layout.spki, `fleet root ${root.cn}`)
  checkTlsKey(cert.layout.spki, `certificate for "${cert.cn}"`)
  // RFC 5280 §6.1.3 (a)(1)
  if (!verifier.verifySignature(algorithm, root.layout.spki, cert.layout.signed, cert.layout.signature)) {
    throw new VerificationError('CERT_CHAIN', `certificate for "${cert.cn}" is not signed by ${root.cn}`)
  }
  return domain
}

/** RFC 5280 §4.1.2.5: valid from notBefore through notAfter, both inclusive. CERT_NOT_YET_VALID or CERT_EXPIRED otherwise. */
export function checkValidity(cert: Pick<ChainCertificate, 'cn' | 'notBefore' | 'notAfter'>, now: number): void {
  if (now < cert.notBefore)
    throw new VerificationError(
      'CERT_NOT_YET_VALID',
      `certificate for "${cert.cn}" is not valid before ${cert.notBefore} (now ${now})`,
    )
  if (now > cert.notAfter)
    throw new VerificationError('CERT_EXPIRED', `certificate for "${cert.cn}" expired at ${cert.notAfter} (now ${now})`)
}

/** A leaf: not a CA, may sign (digitalSignature), and may act as TLS client and server. CERT_KEY_USAGE otherwise. */
export function checkLeafKeyUsage(cert: Pick<ChainCertificate, 'cn' | 'isCA' | 'keyUsage' | 'extKeyUsage'>): void {
  const ku = cert.keyUsage ?? [],
    eku = cert.extKeyUsage ?? []
  if (cert.isCA || ku.includes('keyCertSign'))
    throw new VerificationError('CERT_KEY_USAGE', `certificate for "${cert.cn}" is a CA certificate, not a device's`)
  if (!ku.includes('digitalSignature'))
    throw new VerificationError('CERT_KEY_USAGE', `certificate for "${cert.cn}" lacks keyUsage digitalSignature`)
  for (const purpose of ['clientAuth', 'serverAuth']) {
    if (!eku.includes(purpose))
      throw new VerificationError('CERT_KEY_USAGE', `certificate for "${cert.cn}" lacks extKeyUsage ${purpose}`)
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

/**
 * CN a device name of the fleet; SAN = DNS:<CN> plus at most one URI `kin://<fleet domain>/parent/<label>` naming another
 * device of the same fleet, nothing else: CERT_NAMES otherwise. A certificate that still carries the retired
 * `DNS:parent.<CN>` marker is refused first with CERT_OLD_PARENT_MARKER, so its holder learns to renew rather than why
 * the SAN is odd.
 */
export function checkLeafNames(cert: ChainNames, domain: string): void {
  const detail = { sanDns: [...cert.sanDns], sanUris: [...cert.sanUris] }
  const fail = (why: string): never => {
    throw new VerificationError('CERT_NAMES', `certificate for "${cert.cn}": ${why}`, { detail })
  }
  requireFleetName(cert.cn, domain)
  const old = oldParentMarkersOf(cert.sanDns)
  if (old.length > 0) {
    const why = 'the marker form kinship no longer accepts (any child of a parent passed hostname checks for it)'
    throw new VerificationError(
      'CERT_OLD_PARENT_MARKER',
      `certificate for "${cert.cn}" names its parent as DNS:${old[0]}, ${why}; renew it: have its parent rekey the device, or re-enroll it`,
      { detail },
    )
  }
  if (cert.sanOtherCount !== 0) fail('SAN holds entries that are neither DNS names nor URIs')
  if (cert.sanDns.length !== 1 || cert.sanDns[0] !== cert.cn) fail('SAN DNS names must be exactly DNS:<CN>')
  if (cert.sanUris.length > 1) fail('SAN holds more than one URI')
  const uri = cert.sanUris[0]
  if (uri === undefined) return
  const parentCn = parentCnOfMarker(uri)
  if (parentCn === undefined) fail(`SAN URI ${uri} is not a parent marker kin://<fleet domain>/parent/<label>`)
  if (parentCn === cert.cn) fail('SAN names the device as its own parent')
  requireFleetName(parentCn!, domain)
}

/** The chain rules on certificates already read: checkIssuedByRoot, validity (leaf and root), key usage, names. */
export function verifyChainOf(
  leaf: ChainCertificate,
  fleetRoot: ChainCertificate,
  now: number,
  verifier: SignatureVerifier,
): ChainInfo {
  const domain = checkIssuedByRoot(leaf, fleetRoot, verifier)
  checkValidity(leaf, now)
  checkValidity(fleetRoot, now)
  checkLeafKeyUsage(leaf)
  checkLeafNames(leaf, domain)
  return {
    cn: leaf.cn,
    parentCn: leaf.parentCn,
    spkiHash: leaf.spkiHash,
    certHash: leaf.certHash,
    notAfter: leaf.notAfter,
  }
}

/**
 * Verifies a device certificate against the fleet root at `now` (seconds): checkIssuedByRoot's codes (algorithm and
 * key refusals, then CERT_CHAIN), CERT_EXPIRED / CERT_NOT_YET_VALID (leaf or root), CERT_KEY_USAGE,
 * CERT_OLD_PARENT_MARKER / CERT_NAMES, in that order; CERT_PARSE for unparsable input. The verifier picks the
 * signature path, node (node:crypto) or portable (BigInt RSA, @noble/curves P-256); both reach the same verdict.
 */
export function verifyChain(
  cert: DeviceCertificate | string | Uint8Array,
  root: DeviceCertificate | string | Uint8Array,
  now: number,
  verifier: SignatureVerifier,
): ChainInfo {
  return verifyChainOf(DeviceCertificate.from(cert), DeviceCertificate.from(root), now, verifier)
}
