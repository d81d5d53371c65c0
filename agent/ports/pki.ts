/** @module The platform interface for X.509 work: TLS key generation (P-256 or RSA-2048) and signature checks. */
import type { TlsKeyType } from '../pki/key-type.ts'
import type { SignatureVerifier } from '../pki/verifier.ts'

export type { TlsKeyType } from '../pki/key-type.ts'

/** A device's TLS key pair: private key as PKCS#8 PEM, public key as SPKI PEM and DER, and which kind it is. */
export interface TlsKeyPair {
  readonly privateKeyPem: string
  readonly publicKeyPem: string
  readonly spkiDer: Uint8Array
  /** 'p256' (ECDSA on NIST P-256) or 'rsa2048' (RSA-2048, public exponent 65537). */
  readonly keyType: TlsKeyType
}

/** X.509 operations whose speed depends on the platform; `node` (node:crypto) and `portable` (pure JavaScript) implement it. */
export interface PkiProvider extends SignatureVerifier {
  /** A fresh TLS key pair of `keyType` (default RSA-2048 at this level; what devices make by default is DEFAULT_TLS_KEY_TYPE). */
  generateTlsKeyPair(keyType?: TlsKeyType): Promise<TlsKeyPair>
  /**
   * True when `certDer` is a certificate signed with sha256WithRSAEncryption or ecdsa-with-SHA256 (same algorithm
   * inside and outside, fitting the issuer's key) by the key of the certificate `issuerCertDer`. False, never a
   * throw, for anything malformed: verifier.ts's certificateSignatureValid on this provider's verifySignature.
   */
  verifyCertificateSignature(certDer: Uint8Array, issuerCertDer: Uint8Array): boolean
}
