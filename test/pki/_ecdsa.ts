/** @module Test certificates with ECDSA keys and signatures, built with @peculiar/x509 on WebCrypto (certificate building is not under test here). */
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { webcrypto } from 'node:crypto'

type CryptoKeyPair = webcrypto.CryptoKeyPair
type CryptoKey = webcrypto.CryptoKey
type Algorithm =
  webcrypto.Algorithm | webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams | webcrypto.EcdsaParams
import { fleetRootCn } from '../../agent/pki/root-name.ts'
import { parentMarker } from '../../agent/ledger/names.ts'
import { DOMAIN, freshCn } from './_fleet.ts'

// @peculiar/x509 types the provider as the DOM Crypto, which this project's lib settings do not declare.
x509.cryptoProvider.set(webcrypto as never)

/** ECDSA P-256 with SHA-256, and the other curves and hashes the refusal tests need. */
export const ECDSA_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const
/** RSASSA-PKCS1-v1_5 with SHA-256 and a 2048-bit key. */
export const RSA_2048 = {
  name: 'RSASSA-PKCS1-v1_5',
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: 'SHA-256',
} as const

/** A WebCrypto key pair for `algorithm` (any WebCrypto signing algorithm). */
export async function keyPair(algorithm: Algorithm): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(algorithm as webcrypto.EcKeyGenParams, true, [
    'sign',
    'verify',
  ])) as CryptoKeyPair
}

/** A self-signed fleet root CA for `domain` with `keys`, signed with `signingAlgorithm`. */
export async function ecdsaRoot(
  keys: CryptoKeyPair,
  now: number,
  signingAlgorithm: Algorithm = ECDSA_P256,
  domain: string = DOMAIN,
): Promise<Uint8Array> {
  const name = `CN=${fleetRootCn(domain)}`
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '01',
    subject: name,
    issuer: name,
    notBefore: new Date((now - 300) * 1000),
    notAfter: new Date((now + 86400 * 365) * 1000),
    signingAlgorithm,
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  })
  return new Uint8Array(cert.rawData)
}

/** A device certificate for a fresh CN under `parentCn`, with subject key `subjectKey`, signed by the root's key. */
export async function ecdsaLeaf(options: {
  rootKeys: CryptoKeyPair
  subjectKey: CryptoKey
  now: number
  parentCn?: string
  signingAlgorithm?: Algorithm
  cn?: string
  domain?: string
}): Promise<{ der: Uint8Array; cn: string }> {
  const domain = options.domain ?? DOMAIN
  const cn = options.cn ?? freshCn(domain)
  const names: x509.JsonGeneralName[] = [{ type: 'dns', value: cn }]
  if (options.parentCn !== undefined) names.push({ type: 'url', value: parentMarker(options.parentCn) })
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '0a1b2c',
    subject: `CN=${cn}`,
    issuer: `CN=${fleetRootCn(domain)}`,
    notBefore: new Date((options.now - 300) * 1000),
    notAfter: new Date((options.now + 86400) * 1000),
    signingAlgorithm: options.signingAlgorithm ?? ECDSA_P256,
    publicKey: options.subjectKey,
    signingKey: options.rootKeys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth, x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names),
    ],
  })
  return { der: new Uint8Array(cert.rawData), cn }
}

/** The PKCS#8 PEM of a WebCrypto private key. */
export async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key))
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END PRIVATE KEY-----\n`
}
