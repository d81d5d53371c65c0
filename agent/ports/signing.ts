/** @module The platform interface for signatures over challenges with a device's TLS key, RSA or ECDSA P-256. */

/**
 * Signs and verifies with a device's TLS key where there is no TLS handshake to prove possession. The scheme follows
 * the key, as its certificates do: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2) for an RSA key, ECDSA with SHA-256
 * and a DER Ecdsa-Sig-Value (FIPS 186-5, RFC 3279 §2.2.3) for a P-256 key. `node` (node:crypto) and `portable`
 * agree on every verdict.
 */
export interface TlsSigning {
  /** A short name for reports: 'node', 'portable' or 'core'. */
  readonly name: string
  /** The signature of `message` by a PKCS#8 (or PKCS#1 RSA) PEM private key; KinError BAD_ARGUMENT for a key kinship does not sign with. */
  sign(privateKeyPem: string, message: Uint8Array): Uint8Array
  /** True when `signature` is a valid signature of `message` by the key of `spkiDer`; false, never a throw, for anything malformed. */
  verify(spkiDer: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean
}
