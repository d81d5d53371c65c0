/** @module The platform interface for X.509 work: RSA key generation and certificate signature checks. */

/** A device's TLS key pair: RSA-2048, private key as PKCS#8 PEM, public key as SPKI PEM and DER. */
export interface TlsKeyPair {
  readonly privateKeyPem: string
  readonly publicKeyPem: string
  readonly spkiDer: Uint8Array
}

/** X.509 operations whose speed depends on the platform; `node` (node:crypto) and `portable` (node-forge) implement it. */
export interface PkiProvider {
  /** A short name for reports: 'node' or 'portable'. */
  readonly name: string
  /** A fresh RSA-2048 key pair (public exponent 65537). */
  generateTlsKeyPair(): Promise<TlsKeyPair>
  /**
   * True when `certDer` is a certificate signed with sha256WithRSAEncryption (same algorithm inside and
   * outside) by the key of the certificate `issuerCertDer`. False, never a throw, for anything malformed.
   */
  verifyCertificateSignature(certDer: Uint8Array, issuerCertDer: Uint8Array): boolean
}
