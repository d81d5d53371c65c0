/** @module Shared certificate building on node-forge: names, serials, validity, signing with SHA-256/RSA. */
import type { pki } from 'node-forge'
import { KinError } from '../errors.ts'
import { bytesEqual, toHex } from '../codec/bytes.ts'
import { asn1ToBytes, forge, toBinary } from './_forge.ts'
import { DeviceCertificate } from './certificate.ts'

// Public in node-forge but missing from its type declarations.
interface ForgeNames { RDNAttributesAsArray(rdn: ReturnType<typeof forge.asn1.fromDer>): pki.CertificateField[] }
const forgeNames = forge.pki as unknown as ForgeNames

/** A source of cryptographically secure random bytes (a CryptoProvider's `randomBytes` fits). */
export type RandomBytes = (length: number) => Uint8Array

/** forge's CSPRNG (node:crypto-seeded on Node), used only when the caller gives no random source. */
export const forgeRandomBytes: RandomBytes = n => {
  const binary = forge.random.getBytesSync(n)
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = binary.charCodeAt(i)
  return out
}

/** What a certificate says and who signs it. */
export interface CertificateProfile {
  readonly subjectCn: string
  /** The issuer Name DER to copy (a self-signed certificate passes undefined). */
  readonly issuerName: Uint8Array | undefined
  readonly publicKey: pki.rsa.PublicKey
  readonly notBefore: number
  readonly notAfter: number
  readonly serialHex: string
  readonly extensions: readonly object[]
}

/** A 16-byte positive serial (RFC 5280 §4.1.2.2): top bit cleared for sign, next bit set so the DER INTEGER stays 16 bytes. */
export function randomSerialHex(randomBytes: RandomBytes): string {
  const serial = Uint8Array.from(randomBytes(16))
  if (serial.length !== 16) throw new KinError('BAD_ARGUMENT', `randomBytes(16) returned ${serial.length} bytes`)
  serial[0] = (serial[0]! & 0x7f) | 0x40
  return toHex(serial)
}

/** A subject Name holding one CN as UTF8String (RFC 5280 §4.1.2.6). */
export function cnName(cn: string): pki.CertificateField[] {
  return [{ type: '2.5.4.3', value: cn, valueTagClass: forge.asn1.Type.UTF8 as unknown as pki.CertificateField['valueTagClass'] }]
}

/** Builds and signs (sha256WithRSAEncryption) a v3 certificate; the issuer Name is copied byte-exact or equals the subject. */
export function buildCertificate(profile: CertificateProfile, signingKey: pki.rsa.PrivateKey): DeviceCertificate {
  const cert = forge.pki.createCertificate()
  cert.publicKey = profile.publicKey
  cert.serialNumber = profile.serialHex
  cert.validity.notBefore = new Date(profile.notBefore * 1000)
  cert.validity.notAfter = new Date(profile.notAfter * 1000)
  cert.setSubject(cnName(profile.subjectCn))
  cert.setIssuer(profile.issuerName === undefined
    ? cnName(profile.subjectCn)
    : forgeNames.RDNAttributesAsArray(forge.asn1.fromDer(toBinary(profile.issuerName))))
  cert.setExtensions(profile.extensions as object[] as never)
  cert.sign(signingKey, forge.md.sha256.create())
  const built = new DeviceCertificate(asn1ToBytes(forge.pki.certificateToAsn1(cert)))
  // The chain check compares issuer and root subject byte for byte; a re-encoding difference must fail here, loudly.
  if (profile.issuerName !== undefined && !bytesEqual(built.layout.issuer, profile.issuerName)) {
    throw new KinError('INTERNAL', 'issued certificate does not copy the issuer Name byte for byte')
  }
  return built
}
