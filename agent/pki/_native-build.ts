/** @module The native certificate builder: @peculiar/x509 on the engine's WebCrypto, so Node signs RSA and P-256 in native code. */
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { KinError } from '../errors.ts'
import { derToPem, pemToDer } from './pem.ts'
import {
  finishCertificate,
  cnNameDer,
  type CertificateProfile,
  type ProfileExtensions,
  type SignerKey,
  type X509Builder,
} from './_build.ts'
import { signingKindOf, type SigningKind } from './key-type.ts'
import { toHex } from '../codec/bytes.ts'
import type { DeviceCertificate } from './certificate.ts'

// The few WebCrypto members used, typed here: the core compiles with neither DOM nor Node types for WebCrypto.
type CryptoKey = { readonly type: string }
interface Jwk {
  kty?: string
  crv?: string
  n?: string
  e?: string
  x?: string
  y?: string
}
interface Subtle {
  importKey(
    format: 'pkcs8' | 'spki',
    data: ArrayBuffer,
    algorithm: object,
    extractable: boolean,
    usages: string[],
  ): Promise<CryptoKey>
  exportKey(format: 'jwk', key: CryptoKey): Promise<Jwk>
  sign(algorithm: object, key: CryptoKey, data: ArrayBuffer): Promise<ArrayBuffer>
}
interface WebCrypto {
  readonly subtle: Subtle
  getRandomValues<T extends Uint8Array>(array: T): T
}

/** The engine's WebCrypto, if it has one. */
export function webCrypto(): WebCrypto | undefined {
  const crypto = (globalThis as unknown as { crypto?: WebCrypto }).crypto
  return typeof crypto?.subtle?.sign === 'function' ? crypto : undefined
}

/** True when the engine offers WebCrypto's SubtleCrypto, which the native builder signs with. */
export function hasWebCrypto(): boolean {
  return webCrypto() !== undefined
}

// WebCrypto algorithms per signing kind: import parameters and signature parameters (RFC 5758 §3.2, RFC 4055 §5).
const IMPORT: Record<SigningKind, object> = {
  rsa: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
  p256: { name: 'ECDSA', namedCurve: 'P-256' },
}
const SIGN: Record<SigningKind, { name: string; hash: string }> = {
  rsa: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
  p256: { name: 'ECDSA', hash: 'SHA-256' },
}

// A CA signs every certificate with one key: imported (and matched against its public key) once, kept by PEM.
const SIGNER_CACHE_LIMIT = 16
const signers = new Map<string, Promise<{ key: CryptoKey; kind: SigningKind }>>()

let providerSet = false
function subtle(): Subtle {
  const crypto = webCrypto()
  if (crypto === undefined)
    throw new KinError(
      'KEY_TYPE_UNSUPPORTED',
      'this engine has no WebCrypto: the native certificate builder cannot run',
    )
  // Set on first use, not at import: importing the builder does no work.
  if (!providerSet) {
    x509.cryptoProvider.set(crypto as never)
    providerSet = true
  }
  return crypto.subtle
}

function bytes(b: Uint8Array): ArrayBuffer {
  return b.slice().buffer as ArrayBuffer
}

// The public halves as JWK members: RSA n and e, EC x and y; equal members mean the keys are one pair.
function publicMembers(jwk: Jwk): string {
  return [jwk.kty, jwk.crv, jwk.n, jwk.e, jwk.x, jwk.y].join('.')
}

async function importSigner(signer: SignerKey): Promise<{ key: CryptoKey; kind: SigningKind }> {
  const kind = signingKindOf(signer.spkiDer, 'the signing key')
  const s = subtle()
  let privateKey: CryptoKey, publicKey: CryptoKey
  try {
    privateKey = await s.importKey(
      'pkcs8',
      bytes(pemToDer(signer.privateKeyPem, 'PRIVATE KEY', 'BAD_ARGUMENT')),
      IMPORT[kind],
      true,
      ['sign'],
    )
    publicKey = await s.importKey('spki', bytes(signer.spkiDer), IMPORT[kind], true, ['verify'])
  } catch (cause) {
    if (cause instanceof KinError) throw cause
    throw new KinError(
      'BAD_ARGUMENT',
      `${signer.mismatch} (the private key is not an unencrypted PKCS#8 ${kind === 'rsa' ? 'RSA' : 'P-256'} key)`,
      { cause },
    )
  }
  const [ownPublic, expected] = await Promise.all([s.exportKey('jwk', privateKey), s.exportKey('jwk', publicKey)])
  if (publicMembers(ownPublic) !== publicMembers(expected)) throw new KinError('BAD_ARGUMENT', signer.mismatch)
  return { key: privateKey, kind }
}

function signerOf(signer: SignerKey): Promise<{ key: CryptoKey; kind: SigningKind }> {
  const id = `${toHex(signer.spkiDer)} ${signer.privateKeyPem}`
  let hit = signers.get(id)
  if (hit === undefined) {
    hit = importSigner(signer)
    // A refused pair is not kept: the next call says why again.
    hit.catch(() => signers.delete(id))
    if (signers.size >= SIGNER_CACHE_LIMIT) signers.delete(signers.keys().next().value!)
    signers.set(id, hit)
  }
  return hit
}

function generalNames(names: NonNullable<ProfileExtensions['altNames']>): x509.JsonGeneralName[] {
  return [
    ...names.dns.map(value => ({ type: 'dns' as const, value })),
    ...names.uris.map(value => ({ type: 'url' as const, value })),
    ...(names.ips ?? []).map(value => ({ type: 'ip' as const, value })),
  ]
}

const KEY_USAGE: Record<ProfileExtensions['keyUsage'][number], number> = {
  digitalSignature: x509.KeyUsageFlags.digitalSignature,
  keyEncipherment: x509.KeyUsageFlags.keyEncipherment,
  keyCertSign: x509.KeyUsageFlags.keyCertSign,
  cRLSign: x509.KeyUsageFlags.cRLSign,
}

// The same extensions, criticality and order as the forge builder writes (agent/pki/_forge-build.ts).
async function nativeExtensions(e: ProfileExtensions, spki: Uint8Array): Promise<x509.Extension[]> {
  const out: x509.Extension[] = [
    new x509.BasicConstraintsExtension(e.ca, e.ca ? 0 : undefined, true), // RFC 5280 §4.2.1.9
    new x509.KeyUsagesExtension(
      e.keyUsage.reduce((flags, bit) => flags | KEY_USAGE[bit], 0),
      true,
    ), // RFC 5280 §4.2.1.3
  ]
  if (e.tlsBothWays)
    out.push(new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth])) // RFC 5280 §4.2.1.12
  if (e.altNames !== undefined) out.push(new x509.SubjectAlternativeNameExtension(generalNames(e.altNames))) // RFC 5280 §4.2.1.6
  // RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING contents.
  out.push(await x509.SubjectKeyIdentifierExtension.create(bytes(spki)))
  if (e.authorityKeyId !== undefined) out.push(new x509.AuthorityKeyIdentifierExtension(toHex(e.authorityKeyId))) // RFC 5280 §4.2.1.1
  return out
}

/** The native builder: sha256WithRSAEncryption or ecdsa-with-SHA256 by the signer's key, signatures made by WebCrypto. */
export const nativeBuilder: X509Builder = {
  name: 'native',
  async buildCertificate(profile: CertificateProfile, signer: SignerKey): Promise<DeviceCertificate> {
    // The subject key must be one kinship certifies, whoever signs it.
    signingKindOf(profile.spki, `the key of "${profile.subjectCn}"`)
    const { key, kind } = await signerOf(signer)
    const subject = new x509.Name(bytes(cnNameDer(profile.subjectCn)))
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: profile.serialHex,
      subject,
      issuer: profile.issuerName === undefined ? subject : new x509.Name(bytes(profile.issuerName)),
      notBefore: new Date(profile.notBefore * 1000),
      notAfter: new Date(profile.notAfter * 1000),
      publicKey: bytes(profile.spki),
      signingKey: key as never,
      signingAlgorithm: SIGN[kind],
      extensions: await nativeExtensions(profile.extensions, profile.spki),
    })
    return finishCertificate(new Uint8Array(cert.rawData), profile)
  },
  async buildCsr(cn, names, signer): Promise<string> {
    const { key, kind } = await signerOf(signer)
    const publicKey = await subtle().importKey('spki', bytes(signer.spkiDer), IMPORT[kind], true, ['verify'])
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: new x509.Name(bytes(cnNameDer(cn))),
      keys: { privateKey: key as never, publicKey: publicKey as never },
      signingAlgorithm: SIGN[kind],
      extensions: [new x509.SubjectAlternativeNameExtension(generalNames(names))],
    })
    return derToPem(new Uint8Array(csr.rawData), 'CERTIFICATE REQUEST')
  },
  async requireKeyPair(signer): Promise<void> {
    await signerOf(signer)
  },
}
