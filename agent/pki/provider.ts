/** @module The platform interface for X.509 work: TLS key generation and signature checks. */
import type { SignatureVerifier } from './verifier.ts'

/** A device's TLS key pair: RSA-2048, private key as PKCS#8 PEM, public key as SPKI PEM and DER. */
export interface TlsKeyPair {
  readonly privateKeyPem: string
  readonly publicKeyPem: string
  readonly spkiDer: Uint8Array
}

/** X.509 operations whose speed depends on the platform; `node` (node:crypto) and `portable` (pure JavaScript) implement it. */
export interface PkiProvider extends SignatureVerifier {
  /** A fresh RSA-2048 key pair (public exponent 65537). */
  generateTlsKeyPair(): Promise<TlsKeyPair>
  /**
   * True when `certDer` is a certificate signed with sha256WithRSAEncryption or ecdsa-with-SHA256 (same algorithm
   * inside and outside, fitting the issuer's key) by the key of the certificate `issuerCertDer`. False, never a
   * throw, for anything malformed: verifier.ts's certificateSignatureValid on this provider's verifySignature.
   */
  verifyCertificateSignature(certDer: Uint8Array, issuerCertDer: Uint8Array): boolean
}
