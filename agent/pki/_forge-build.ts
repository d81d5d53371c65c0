/** @module The pure-JavaScript certificate builder on node-forge, for engines without WebCrypto: RSA signers and RSA subject keys only. */
import type { pki } from 'node-forge'
import { KinError } from '../errors.ts'
import { asn1ToBytes, forge, toBinary } from './_forge.ts'
import {
  finishCertificate,
  type CertificateProfile,
  type ProfileExtensions,
  type SignerKey,
  type X509Builder,
} from './_build.ts'
import { keysMatch, rsaPrivateKeyFromPem } from './keys.ts'
import { signingKindOf } from './key-type.ts'
import type { DeviceCertificate } from './certificate.ts'

// Public in node-forge but missing from its type declarations.
interface ForgeNames {
  RDNAttributesAsArray(rdn: ReturnType<typeof forge.asn1.fromDer>): pki.CertificateField[]
}
const forgeNames = forge.pki as unknown as ForgeNames

/** forge's CSPRNG (node:crypto-seeded on Node), for engines that have no crypto.getRandomValues. */
export function forgeRandomBytes(n: number): Uint8Array {
  const binary = forge.random.getBytesSync(n)
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = binary.charCodeAt(i)
  return out
}

function cnName(cn: string): pki.CertificateField[] {
  return [
    {
      type: '2.5.4.3',
      value: cn,
      valueTagClass: forge.asn1.Type.UTF8 as unknown as pki.CertificateField['valueTagClass'],
    },
  ]
}

// forge builds and signs with RSA keys only: anything else is refused here, by name, not deep inside forge.
function rsaPublicKey(spki: Uint8Array, what: string): pki.rsa.PublicKey {
  if (signingKindOf(spki, what) !== 'rsa')
    throw new KinError(
      'KEY_TYPE_UNSUPPORTED',
      `${what} is a P-256 key: this engine has no WebCrypto, and kinship's pure-JavaScript builder signs and certifies RSA keys only`,
    )
  return forge.pki.publicKeyFromAsn1(forge.asn1.fromDer(toBinary(spki))) as pki.rsa.PublicKey
}

function signingKey(signer: SignerKey): pki.rsa.PrivateKey {
  const publicKey = rsaPublicKey(signer.spkiDer, 'the signing key')
  const privateKey = rsaPrivateKeyFromPem(signer.privateKeyPem)
  if (!keysMatch(privateKey, publicKey)) throw new KinError('BAD_ARGUMENT', signer.mismatch)
  return privateKey
}

function altNames(names: NonNullable<ProfileExtensions['altNames']>): { type: number; value?: string; ip?: string }[] {
  // RFC 5280 §4.2.1.6: dNSName is GeneralName [2], uniformResourceIdentifier [6], iPAddress [7].
  return [
    ...names.dns.map(value => ({ type: 2, value })),
    ...names.uris.map(value => ({ type: 6, value })),
    ...(names.ips ?? []).map(ip => ({ type: 7, ip })),
  ]
}

function forgeExtensions(e: ProfileExtensions): object[] {
  const out: object[] = [
    e.ca
      ? { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true }
      : { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', ...Object.fromEntries(e.keyUsage.map(bit => [bit, true])), critical: true },
  ]
  if (e.tlsBothWays) out.push({ name: 'extKeyUsage', serverAuth: true, clientAuth: true })
  if (e.altNames !== undefined) out.push({ name: 'subjectAltName', altNames: altNames(e.altNames) })
  out.push({ name: 'subjectKeyIdentifier' })
  if (e.authorityKeyId !== undefined)
    out.push({ name: 'authorityKeyIdentifier', keyIdentifier: toBinary(e.authorityKeyId) })
  return out
}

/** The node-forge builder: sha256WithRSAEncryption, byte for byte the profile the native builder writes for RSA. */
export const forgeBuilder: X509Builder = {
  name: 'forge',
  async buildCertificate(profile: CertificateProfile, signer: SignerKey): Promise<DeviceCertificate> {
    const key = signingKey(signer)
    const cert = forge.pki.createCertificate()
    cert.publicKey = rsaPublicKey(profile.spki, `the key of "${profile.subjectCn}"`)
    cert.serialNumber = profile.serialHex
    cert.validity.notBefore = new Date(profile.notBefore * 1000)
    cert.validity.notAfter = new Date(profile.notAfter * 1000)
    cert.setSubject(cnName(profile.subjectCn))
    cert.setIssuer(
      profile.issuerName === undefined
        ? cnName(profile.subjectCn)
        : forgeNames.RDNAttributesAsArray(forge.asn1.fromDer(toBinary(profile.issuerName))),
    )
    cert.setExtensions(forgeExtensions(profile.extensions) as never)
    cert.sign(key, forge.md.sha256.create())
    return finishCertificate(asn1ToBytes(forge.pki.certificateToAsn1(cert)), profile)
  },
  async buildCsr(cn, names, signer): Promise<string> {
    const key = signingKey(signer)
    const csr = forge.pki.createCertificationRequest()
    csr.publicKey = rsaPublicKey(signer.spkiDer, 'the CSR key')
    csr.setSubject(cnName(cn))
    csr.setAttributes([
      { name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames: altNames(names) }] },
    ])
    csr.sign(key, forge.md.sha256.create())
    return forge.pki.certificationRequestToPem(csr)
  },
  async requireKeyPair(signer): Promise<void> {
    signingKey(signer)
  },
}
