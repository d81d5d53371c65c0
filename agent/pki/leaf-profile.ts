/** @module The device certificate profile: what the fleet CA writes into every leaf it signs, per key type. */
import { sha1 } from '@noble/hashes/legacy.js'
import type { DeviceCertificate } from './certificate.ts'
import { randomSerialHex, type RandomBytes, type X509Builder } from './_build.ts'
import { x509Builder } from './builder.ts'
import { expectedSan } from './_names.ts'
import { signingKindOf } from './key-type.ts'
import { TAG, childrenOf, contentBytes, expectTag, readWhole } from './der.ts'

/** Everything a leaf needs: its issuer (the root and its key), names, key and validity in seconds. */
export interface LeafProfile {
  readonly root: DeviceCertificate
  /** The root's private key, PKCS#8 PEM. */
  readonly rootKeyPem: string
  readonly cn: string
  readonly parentCn: string | undefined
  /** The device's SubjectPublicKeyInfo DER (RSA or P-256). */
  readonly spki: Uint8Array
  readonly notBefore: number
  readonly notAfter: number
  readonly randomBytes: RandomBytes
  /** Host names and IP addresses a server certificate adds to its SAN after DNS:cn (L0's broker certificates only). */
  readonly serverNames?: { readonly dns: readonly string[]; readonly ips: readonly string[] }
  /** The certificate builder (default: `x509Builder()`). */
  readonly builder?: X509Builder
}

function rootKeyId(root: DeviceCertificate): Uint8Array {
  if (root.subjectKeyId !== undefined) return root.subjectKeyId
  // RFC 5280 §4.2.1.2 method (1), for a root that carries no subjectKeyIdentifier: SHA-1 of the subjectPublicKey bits.
  const spki = root.layout.spki
  const [, key] = childrenOf(spki, readWhole(spki, TAG.sequence, 'CERT_PARSE'), 'CERT_PARSE')
  return sha1(contentBytes(spki, expectTag(key, TAG.bitString, 'CERT_PARSE')).subarray(1))
}

// RFC 6125 §6.4: a client checks the host it dialled against the SAN's DNS names and addresses; devices keep checking the CN.
function withServerNames(
  san: { dns: string[]; uris: string[] },
  names: LeafProfile['serverNames'],
): { dns: string[]; uris: string[]; ips?: string[] } {
  if (names === undefined) return san
  return { dns: [...san.dns, ...names.dns.filter(n => !san.dns.includes(n))], uris: san.uris, ips: [...names.ips] }
}

/**
 * Signs a leaf: basicConstraints CA:false, keyUsage digitalSignature (+keyEncipherment for an RSA key; RFC 5480 §3
 * forbids it for an EC key), extKeyUsage serverAuth+clientAuth, SAN DNS:cn (+ URI:kin://<fleet domain>/parent/<parent
 * label>; a server certificate's host names and addresses after DNS:cn), subject and authority key identifiers, random serial; signed as the root's key signs.
 */
export async function buildLeafCertificate(profile: LeafProfile): Promise<DeviceCertificate> {
  const rsaLeaf = signingKindOf(profile.spki, `the key of "${profile.cn}"`) === 'rsa'
  return (profile.builder ?? x509Builder()).buildCertificate(
    {
      subjectCn: profile.cn,
      issuerName: profile.root.layout.subject,
      spki: profile.spki,
      notBefore: profile.notBefore,
      notAfter: profile.notAfter,
      serialHex: randomSerialHex(profile.randomBytes),
      extensions: {
        ca: false,
        keyUsage: rsaLeaf ? ['digitalSignature', 'keyEncipherment'] : ['digitalSignature'],
        tlsBothWays: true,
        altNames: withServerNames(expectedSan(profile.cn, profile.parentCn), profile.serverNames),
        authorityKeyId: rootKeyId(profile.root),
      },
    },
    {
      privateKeyPem: profile.rootKeyPem,
      spkiDer: profile.root.layout.spki,
      mismatch: 'root key does not belong to the root certificate',
    },
  )
}
