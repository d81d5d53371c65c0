/** @module Building a device's PKCS#10 certificate request: CN and SAN `DNS:<cn>` (+ the parent marker `URI:kin://<fleet domain>/parent/<parent label>`), signed with its TLS key. */
import { KinError } from '../errors.ts'
import type { X509Builder } from './_build.ts'
import { x509Builder } from './builder.ts'
import { expectedSan } from './_names.ts'
import { spkiDerFromPublicKeyPem } from './keys.ts'

export { parseCsr, type ParsedCsr } from './csr-parse.ts'

/** Inputs of `createCsr`: the device's CN, its parent's CN (undefined for L0) and its TLS key pair (RSA or P-256). */
export interface CsrOptions {
  readonly cn: string
  readonly parentCn: string | undefined
  readonly keyPair: { readonly privateKeyPem: string; readonly publicKeyPem: string }
  /** The builder (default: `x509Builder()`, native where WebCrypto exists). */
  readonly builder?: X509Builder
}

function requireName(name: string, what: string): void {
  if (typeof name !== 'string' || !/^[\x21-\x7e]{1,253}$/.test(name))
    throw new KinError('BAD_ARGUMENT', `"${what}" must be a DNS name, got ${JSON.stringify(name)}`)
}

/**
 * A CSR (RFC 2986) as PEM, SAN requested through the extensionRequest attribute (RFC 2985 §5.4.2), signed
 * ecdsa-with-SHA256 with a P-256 key or sha256WithRSAEncryption with an RSA key.
 */
export async function createCsr(options: CsrOptions): Promise<string> {
  const { cn, parentCn, keyPair } = options
  requireName(cn, 'cn')
  if (parentCn !== undefined) requireName(parentCn, 'parentCn')
  const spkiDer = spkiDerFromPublicKeyPem(keyPair.publicKeyPem)
  return (options.builder ?? x509Builder()).buildCsr(cn, expectedSan(cn, parentCn), {
    privateKeyPem: keyPair.privateKeyPem,
    spkiDer,
    mismatch: 'TLS private key and public key do not match',
  })
}
