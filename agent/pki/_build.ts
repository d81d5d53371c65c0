/** @module What every certificate builder shares: the builder-neutral profile, serials, the CN Name, and the one interface both builders implement. */
import { KinError } from '../errors.ts'
import { bytesEqual, toHex } from '../codec/bytes.ts'
import { DeviceCertificate } from './certificate.ts'

/** A source of cryptographically secure random bytes (a CryptoProvider's `randomBytes` fits). */
export type RandomBytes = (length: number) => Uint8Array

/** The extensions of kinship's two certificate profiles (fleet root, device leaf), in the order they are written. */
export interface ProfileExtensions {
  /** basicConstraints (critical): CA with pathLenConstraint 0 for the root, cA false for a leaf. */
  readonly ca: boolean
  /** keyUsage bits (critical). */
  readonly keyUsage: readonly ('digitalSignature' | 'keyEncipherment' | 'keyCertSign' | 'cRLSign')[]
  /** extKeyUsage serverAuth + clientAuth (not critical): leaves act as TLS client and server. */
  readonly tlsBothWays: boolean
  /** subjectAltName (not critical): dNSNames, then URIs, then iPAddresses (L0's server certificates only). */
  readonly altNames:
    { readonly dns: readonly string[]; readonly uris: readonly string[]; readonly ips?: readonly string[] } | undefined
  /** authorityKeyIdentifier keyIdentifier: the issuer's subjectKeyIdentifier. The subjectKeyIdentifier itself is always written. */
  readonly authorityKeyId: Uint8Array | undefined
}

/** What a certificate says; the signer is given beside it. */
export interface CertificateProfile {
  readonly subjectCn: string
  /** The issuer Name DER to copy (a self-signed certificate passes undefined). */
  readonly issuerName: Uint8Array | undefined
  /** The subject's SubjectPublicKeyInfo DER, written as it is. */
  readonly spki: Uint8Array
  readonly notBefore: number
  readonly notAfter: number
  readonly serialHex: string
  readonly extensions: ProfileExtensions
}

/** A private key (PKCS#8 PEM) with the SubjectPublicKeyInfo it must match, and words for the mismatch message. */
export interface SignerKey {
  readonly privateKeyPem: string
  readonly spkiDer: Uint8Array
  /** Said in the BAD_ARGUMENT when the keys do not match, e.g. 'root private key and public key do not match'. */
  readonly mismatch: string
}

/**
 * Builds and signs kinship's X.509 objects: sha256WithRSAEncryption with an RSA signer, ecdsa-with-SHA256 (DER
 * signature value, RFC 5758 §3.2) with a P-256 one. `native` runs on WebCrypto, `forge` in pure JavaScript; callers
 * take whichever `x509Builder()` gives and cannot tell them apart by what they write.
 */
export interface X509Builder {
  /** 'native' (@peculiar/x509 on WebCrypto) or 'forge' (node-forge, RSA only). */
  readonly name: 'native' | 'forge'
  /** A v3 certificate signed by `signer`; BAD_ARGUMENT when the signer's keys do not match, KEY_TYPE_UNSUPPORTED for a key it cannot use. */
  buildCertificate(profile: CertificateProfile, signer: SignerKey): Promise<DeviceCertificate>
  /** A PKCS#10 request as PEM: subject CN, SAN through extensionRequest (RFC 2985 §5.4.2), signed by `signer`. */
  buildCsr(cn: string, altNames: ProfileExtensions['altNames'] & object, signer: SignerKey): Promise<string>
  /** Resolves when `signer.privateKeyPem` is the private half of `signer.spkiDer`; BAD_ARGUMENT `signer.mismatch` otherwise. */
  requireKeyPair(signer: SignerKey): Promise<void>
}

/** A 16-byte positive serial (RFC 5280 §4.1.2.2): top bit cleared for sign, next bit set so the DER INTEGER stays 16 bytes. */
export function randomSerialHex(randomBytes: RandomBytes): string {
  const serial = Uint8Array.from(randomBytes(16))
  if (serial.length !== 16) throw new KinError('BAD_ARGUMENT', `randomBytes(16) returned ${serial.length} bytes`)
  serial[0] = (serial[0]! & 0x7f) | 0x40
  return toHex(serial)
}

function derLength(n: number): number[] {
  return n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff]
}

function derTlv(tag: number, content: readonly number[]): number[] {
  return [tag, ...derLength(content.length), ...content]
}

/** The DER of a Name holding one CN as UTF8String (RFC 5280 §4.1.2.6), the subject every kinship certificate carries. */
export function cnNameDer(cn: string): Uint8Array {
  const text = [...new TextEncoder().encode(cn)]
  const attribute = derTlv(0x30, [...derTlv(0x06, [0x55, 0x04, 0x03]), ...derTlv(0x0c, text)])
  return Uint8Array.from(derTlv(0x30, derTlv(0x31, attribute)))
}

/** Parses what a builder wrote and checks the issuer Name was copied byte for byte (the chain check compares them so). */
export function finishCertificate(der: Uint8Array, profile: CertificateProfile): DeviceCertificate {
  const built = new DeviceCertificate(der)
  // A re-encoding difference must fail here, loudly, not at every verifier later.
  if (profile.issuerName !== undefined && !bytesEqual(built.layout.issuer, profile.issuerName)) {
    throw new KinError('INTERNAL', 'issued certificate does not copy the issuer Name byte for byte')
  }
  return built
}
