/** @module Building a device's PKCS#10 certificate request: CN and SAN `DNS:<cn>` (+ the parent marker `URI:kin://<fleet domain>/parent/<parent label>`), signed with its TLS key. */
import { KinError } from '../errors.ts'
import { forge } from './_forge.ts'
import { cnName } from './_build.ts'
import { expectedAltNames } from './_names.ts'
import { keysMatch, rsaPrivateKeyFromPem, rsaPublicKeyFromPem } from './keys.ts'

export { parseCsr, type ParsedCsr } from './csr-parse.ts'

/** Inputs of `createCsr`: the device's CN, its parent's CN (undefined for L0) and its TLS key pair. */
export interface CsrOptions {
  readonly cn: string
  readonly parentCn: string | undefined
  readonly keyPair: { readonly privateKeyPem: string; readonly publicKeyPem: string }
}

function requireName(name: string, what: string): void {
  if (typeof name !== 'string' || !/^[\x21-\x7e]{1,253}$/.test(name)) throw new KinError('BAD_ARGUMENT', `"${what}" must be a DNS name, got ${JSON.stringify(name)}`)
}

/** A CSR (RFC 2986) as PEM, SAN requested through the extensionRequest attribute (RFC 2985 §5.4.2), signed sha256WithRSAEncryption. */
export function createCsr(options: CsrOptions): string {
  const { cn, parentCn, keyPair } = options
  requireName(cn, 'cn')
  if (parentCn !== undefined) requireName(parentCn, 'parentCn')
  const privateKey = rsaPrivateKeyFromPem(keyPair.privateKeyPem)
  const publicKey = rsaPublicKeyFromPem(keyPair.publicKeyPem)
  if (!keysMatch(privateKey, publicKey)) throw new KinError('BAD_ARGUMENT', 'TLS private key and public key do not match')
  const csr = forge.pki.createCertificationRequest()
  csr.publicKey = publicKey
  csr.setSubject(cnName(cn))
  const altNames = expectedAltNames(cn, parentCn)
  csr.setAttributes([{ name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames }] }])
  csr.sign(privateKey, forge.md.sha256.create())
  return forge.pki.certificationRequestToPem(csr)
}
