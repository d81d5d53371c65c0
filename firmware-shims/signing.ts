/** @module The platform interface for RSA signatures over challenges: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2). */

/**
 * Signs and verifies with a device's TLS RSA key where there is no TLS handshake to prove possession. One scheme
 * only, RSASSA-PKCS1-v1_5 with SHA-256: the certificates already use it, it is deterministic, and every engine
 * that can check a certificate signature can check these. `node` (node:crypto) and `portable` (node-forge) agree.
 */
export interface RsaSigning {
  /** A short name for reports: 'node' or 'portable'. */
  readonly name: string
  /** The signature (modulus length in bytes) of `message` by a PKCS#8 or PKCS#1 PEM private key; KinError BAD_ARGUMENT for a bad key. */
  signRsaSha256(privateKeyPem: string, message: Uint8Array): Uint8Array
  /** True when `signature` is a valid signature of `message` by the RSA key of `spkiDer`; false, never a throw, for anything malformed. */
  verifyRsaSha256(spkiDer: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean
}
