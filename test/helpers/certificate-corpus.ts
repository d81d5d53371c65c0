/** @module The leaf verification corpus: a test fleet, a well-formed leaf and the ways a leaf goes wrong, each with its code. */
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import type { KinErrorCode } from '../../agent/errors.ts'
import type { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { createFleetRoot } from '../../agent/pki/root.ts'
import { buildLeafCertificate } from '../../agent/pki/leaf-profile.ts'
import { spkiDerFromPublicKeyPem } from '../../agent/pki/keys.ts'
import { parentMarker } from '../../agent/ledger/names.ts'
import { oddCertificate, type OddCertificate } from '../pki/_odd.ts'
import { DAY, freshCn, makeFleet } from '../pki/_fleet.ts'

/** [name, certificate DER, the root it is checked against, expected code or 'ok']. */
export type CorpusCase = [string, Uint8Array, DeviceCertificate, KinErrorCode | 'ok']

/** The fleet the corpus is issued under, its forge-built good leaf, a builder of odd variants, and the cases. */
export interface CertificateCorpus {
  fleet: Awaited<ReturnType<typeof makeFleet>>
  /** The well-formed forge-built leaf every odd one departs from. */
  good: Uint8Array
  /** The good leaf (CN, parent L0, leaf key) with `changes`, signed by the fleet root unless the changes say otherwise. */
  odd(changes: Partial<OddCertificate>): Uint8Array
  /** The cases both the native path and every other verifier must agree on. */
  cases: CorpusCase[]
}

/** A copy of `der` with the low bit of byte `index` (from the end when negative) flipped. */
export function flip(der: Uint8Array, index: number): Uint8Array {
  const out = der.slice()
  out[index < 0 ? der.length + index : index]! ^= 0x01
  return out
}

/** Builds the corpus at `now` (whole seconds): one fresh fleet, its issued leaves and the odd ones. */
export async function certificateCorpus(now: number): Promise<CertificateCorpus> {
  const fleet = await makeFleet(now)
  const leafKeys = await nodePki.generateTlsKeyPair()
  const strangerKeys = await nodePki.generateTlsKeyPair()
  const cn = freshCn(),
    parent = fleet.l0.cn
  const odd = (changes: Partial<OddCertificate>): Uint8Array =>
    oddCertificate({
      cn,
      sanDns: [cn],
      sanUris: [parentMarker(parent)],
      notBefore: now - 300,
      notAfter: now + DAY,
      issuerCn: fleet.root.cn,
      issuerKeyPem: fleet.rootKeys.privateKeyPem,
      subjectPublicKeyPem: leafKeys.publicKeyPem,
      ...changes,
    })
  // A root that expired long ago, and a leaf it signed that is itself current.
  const oldRoot = await createFleetRoot({
    domain: fleet.domain,
    keyPair: strangerKeys,
    now: now - 40 * 365 * DAY,
    years: 1,
    randomBytes: nodeCrypto.randomBytes,
  })
  const underOldRoot = await buildLeafCertificate({
    root: oldRoot,
    rootKeyPem: strangerKeys.privateKeyPem,
    cn,
    parentCn: parent,
    spki: spkiDerFromPublicKeyPem(leafKeys.publicKeyPem),
    notBefore: now - 300,
    notAfter: now + DAY,
    randomBytes: nodeCrypto.randomBytes,
  })
  const good = odd({})
  const tbsCnAt = Buffer.from(good).indexOf(Buffer.from(cn)) + 2
  const cases: CorpusCase[] = [
    ['good leaf (forge-built)', good, fleet.root, 'ok'],
    ['good leaf (issued)', (await fleet.enroll(parent)).cert.der, fleet.root, 'ok'],
    ['L0 leaf, no parent marker', fleet.l0.cert.der, fleet.root, 'ok'],
    ['expired', odd({ notBefore: now - 10 * DAY, notAfter: now - 1 }), fleet.root, 'CERT_EXPIRED'],
    ['not yet valid', odd({ notBefore: now + 60, notAfter: now + DAY }), fleet.root, 'CERT_NOT_YET_VALID'],
    ['root expired', underOldRoot.der, oldRoot, 'CERT_EXPIRED'],
    ['wrong issuer key, root name copied', odd({ issuerKeyPem: strangerKeys.privateKeyPem }), fleet.root, 'CERT_CHAIN'],
    ['root key, other issuer name', odd({ issuerCn: 'kinship fleet root other.example' }), fleet.root, 'CERT_CHAIN'],
    ['tampered signature byte', flip(good, -7), fleet.root, 'CERT_CHAIN'],
    ['tampered CN byte in the signed part', flip(good, tbsCnAt), fleet.root, 'CERT_CHAIN'],
    ['SHA-1 signature by the root', odd({ digest: 'sha1' }), fleet.root, 'SIGNATURE_SHA1'],
    ['the root itself as leaf', fleet.root.der, fleet.root, 'CERT_KEY_USAGE'],
    ['CA:true leaf', odd({ isCA: true }), fleet.root, 'CERT_KEY_USAGE'],
    ['missing clientAuth EKU', odd({ extKeyUsage: { serverAuth: true } }), fleet.root, 'CERT_KEY_USAGE'],
    ['no extKeyUsage', odd({ extKeyUsage: null }), fleet.root, 'CERT_KEY_USAGE'],
    ['no digitalSignature', odd({ keyUsage: { keyEncipherment: true } }), fleet.root, 'CERT_KEY_USAGE'],
    [
      'leaf asserting keyCertSign',
      odd({ keyUsage: { digitalSignature: true, keyCertSign: true } }),
      fleet.root,
      'CERT_KEY_USAGE',
    ],
    ['SAN without DNS:<CN>', odd({ sanDns: [] }), fleet.root, 'CERT_NAMES'],
    ['no SAN at all', odd({ sanDns: [], sanUris: [] }), fleet.root, 'CERT_NAMES'],
    ['two parent entries', odd({ sanUris: [parentMarker(parent), parentMarker(freshCn())] }), fleet.root, 'CERT_NAMES'],
    ['extra DNS entry', odd({ sanDns: [cn, 'www.example.com'] }), fleet.root, 'CERT_NAMES'],
    ['IP address SAN entry', odd({ sanIp: '127.0.0.1' }), fleet.root, 'CERT_NAMES'],
    ['CN outside the fleet', odd({ cn: 'lock.example.com', sanDns: ['lock.example.com'] }), fleet.root, 'CERT_NAMES'],
    [
      'parent outside the fleet',
      odd({ sanUris: [parentMarker('abcdefghijklmnop.example.com')] }),
      fleet.root,
      'CERT_NAMES',
    ],
    [
      'parent label not base32',
      odd({ sanUris: [`kin://${fleet.domain}/parent/abcdefghijklmno1`] }),
      fleet.root,
      'CERT_NAMES',
    ],
    ['URI that is not a parent marker', odd({ sanUris: ['https://example.com/'] }), fleet.root, 'CERT_NAMES'],
    ['parent marker with a query', odd({ sanUris: [`${parentMarker(parent)}?x=1`] }), fleet.root, 'CERT_NAMES'],
    [
      'parent marker with an upper-case domain',
      odd({ sanUris: [parentMarker(parent).replace('kin://', 'kin://X')] }),
      fleet.root,
      'CERT_NAMES',
    ],
    ['parent marker as a dNSName', odd({ sanDns: [cn, parentMarker(parent)], sanUris: [] }), fleet.root, 'CERT_NAMES'],
    [
      'old DNS:parent. marker only',
      odd({ sanDns: [cn, `parent.${parent}`], sanUris: [] }),
      fleet.root,
      'CERT_OLD_PARENT_MARKER',
    ],
    [
      'old DNS:parent. marker beside the URI',
      odd({ sanDns: [cn, `parent.${parent}`] }),
      fleet.root,
      'CERT_OLD_PARENT_MARKER',
    ],
    ['own parent', odd({ sanUris: [parentMarker(cn)] }), fleet.root, 'CERT_NAMES'],
    [
      'unknown critical extension',
      odd({ extraExtensions: [{ id: '1.3.6.1.4.1.99999.1', critical: true, value: '\x05\x00' }] }),
      fleet.root,
      'CERT_PARSE',
    ],
  ]
  return { fleet, good, odd, cases }
}
