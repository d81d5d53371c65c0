/** @module The device certificate profile: what the fleet CA writes into every leaf it signs. */
import type { pki } from 'node-forge'
import { forge, toBinary } from './_forge.ts'
import type { DeviceCertificate } from './certificate.ts'
import { buildCertificate, randomSerialHex, type RandomBytes } from './_build.ts'
import { expectedAltNames } from './_names.ts'

/** Everything a leaf needs: its issuer (the root and its key), names, key and validity in seconds. */
export interface LeafProfile {
  readonly root: DeviceCertificate
  readonly rootKey: pki.rsa.PrivateKey
  readonly cn: string
  readonly parentCn: string | undefined
  readonly publicKey: pki.rsa.PublicKey
  readonly notBefore: number
  readonly notAfter: number
  readonly randomBytes: RandomBytes
}

function rootKeyId(root: DeviceCertificate): string {
  if (root.subjectKeyId !== undefined) return toBinary(root.subjectKeyId)
  // RFC 5280 §4.2.1.2 method (1), for a root that carries no subjectKeyIdentifier.
  const rootKey = forge.pki.publicKeyFromPem(root.publicKeyPem)
  return forge.pki.getPublicKeyFingerprint(rootKey, { md: forge.md.sha1.create(), type: 'RSAPublicKey' }).getBytes()
}

/**
 * Signs a leaf: basicConstraints CA:false, keyUsage digitalSignature+keyEncipherment, extKeyUsage serverAuth+clientAuth,
 * SAN DNS:cn (+ URI:kin://<fleet domain>/parent/<parent label>), subject and authority key identifiers, random serial, sha256WithRSAEncryption.
 */
export function buildLeafCertificate(profile: LeafProfile): DeviceCertificate {
  const altNames = expectedAltNames(profile.cn, profile.parentCn)
  return buildCertificate({
    subjectCn: profile.cn,
    issuerName: profile.root.layout.subject,
    publicKey: profile.publicKey,
    notBefore: profile.notBefore,
    notAfter: profile.notAfter,
    serialHex: randomSerialHex(profile.randomBytes),
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true }, // RFC 5280 §4.2.1.9
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true }, // RFC 5280 §4.2.1.3
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true }, // RFC 5280 §4.2.1.12: mutual TLS both ways
      { name: 'subjectAltName', altNames }, // RFC 5280 §4.2.1.6
      { name: 'subjectKeyIdentifier' },
      { name: 'authorityKeyIdentifier', keyIdentifier: rootKeyId(profile.root) }, // RFC 5280 §4.2.1.1
    ],
  }, profile.rootKey)
}
