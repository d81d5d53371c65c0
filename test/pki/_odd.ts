/** @module Odd certificates for the verification corpus, built with node-forge directly so every field can be wrong. */
import type { asn1 } from 'node-forge'
import { forge, fromBinary } from '../../agent/pki/_forge.ts'

/** Everything an odd certificate may get wrong; defaults give a well-formed kinship leaf. */
export interface OddCertificate {
  cn: string
  sanDns: string[]
  sanUris?: string[]
  sanIp?: string
  notBefore: number
  notAfter: number
  issuerCn: string
  issuerKeyPem: string
  subjectPublicKeyPem: string
  isCA?: boolean
  keyUsage?: Record<string, boolean> | null
  extKeyUsage?: Record<string, boolean> | null
  digest?: 'sha256' | 'sha1'
  extraExtensions?: object[]
  serialHex?: string
}

const utf8 = forge.asn1.Type.UTF8 as unknown as asn1.Class

/** PEM of a CSR for `cn` requesting exactly `altNames` (forge GeneralNames), signed by the key pair it carries. */
export function oddCsr(cn: string, altNames: object[], keys: { publicKeyPem: string; privateKeyPem: string }): string {
  const csr = forge.pki.createCertificationRequest()
  csr.publicKey = forge.pki.publicKeyFromPem(keys.publicKeyPem)
  csr.setSubject([{ type: '2.5.4.3', value: cn, valueTagClass: utf8 }])
  csr.setAttributes([{ name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames }] }])
  csr.sign(forge.pki.privateKeyFromPem(keys.privateKeyPem), forge.md.sha256.create())
  return forge.pki.certificationRequestToPem(csr)
}

/** DER of a certificate built exactly as described. */
export function oddCertificate(o: OddCertificate): Uint8Array {
  const cert = forge.pki.createCertificate()
  cert.publicKey = forge.pki.publicKeyFromPem(o.subjectPublicKeyPem)
  cert.serialNumber = o.serialHex ?? '4a11bade'
  cert.validity.notBefore = new Date(o.notBefore * 1000)
  cert.validity.notAfter = new Date(o.notAfter * 1000)
  cert.setSubject([{ type: '2.5.4.3', value: o.cn, valueTagClass: utf8 }])
  cert.setIssuer([{ type: '2.5.4.3', value: o.issuerCn, valueTagClass: utf8 }])
  const altNames: object[] = [
    ...o.sanDns.map(value => ({ type: 2, value })),
    ...(o.sanUris ?? []).map(value => ({ type: 6, value })),
  ]
  if (o.sanIp !== undefined) altNames.push({ type: 7, ip: o.sanIp })
  const extensions: object[] = [{ name: 'basicConstraints', cA: o.isCA ?? false, critical: true }]
  const ku = o.keyUsage === undefined ? { digitalSignature: true, keyEncipherment: true } : o.keyUsage
  if (ku !== null) extensions.push({ name: 'keyUsage', critical: true, ...ku })
  const eku = o.extKeyUsage === undefined ? { serverAuth: true, clientAuth: true } : o.extKeyUsage
  if (eku !== null) extensions.push({ name: 'extKeyUsage', ...eku })
  if (altNames.length > 0) extensions.push({ name: 'subjectAltName', altNames })
  cert.setExtensions([...extensions, ...(o.extraExtensions ?? [])])
  cert.sign(
    forge.pki.privateKeyFromPem(o.issuerKeyPem),
    (o.digest === 'sha1' ? forge.md.sha1 : forge.md.sha256).create(),
  )
  return fromBinary(forge.asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes())
}
