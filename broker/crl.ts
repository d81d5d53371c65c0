/** @module An X.509 v2 CRL (RFC 5280 §5) signed by the fleet root, built with forge.asn1 (node-forge has no CRL builder). */
import { createPrivateKey, sign } from 'node:crypto'
import type { asn1 as Asn1 } from 'node-forge'
import { forge } from '../agent/pki/_forge.ts'
import { KinError } from '../agent/errors.ts'
import { DeviceCertificate } from '../agent/pki/certificate.ts'
import { nodeCrypto } from '../runtime/node/crypto.ts'

const { asn1 } = forge
const U = asn1.Class.UNIVERSAL
const T = asn1.Type

/** RFC 5280 §5.3.1 CRLReason values kinship uses. */
export const CRL_REASON = {
  keyCompromise: 1,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  privilegeWithdrawn: 9,
} as const
/** A CRLReason name. */
export type CrlReason = keyof typeof CRL_REASON

/** One revoked certificate: its serial (hex), when it was revoked (seconds) and why. */
export interface RevokedSerial {
  serial: string
  revokedAt: number
  reason: CrlReason
}

/** What buildCrl signs. */
export interface CrlInput {
  rootCertPem: string
  rootKeyPem: string
  revoked: readonly RevokedSerial[]
  /** Seconds since the epoch; no revocation listed may be later. */
  thisUpdate: number
  /** When a relying party should expect a newer CRL (OpenSSL refuses every certificate once it has passed). */
  nextUpdate: number
  /** RFC 5280 §5.2.3: grows with every CRL the fleet CA issues (broker/crl-number.ts). */
  crlNumber: number
}

// 2050-01-01T00:00:00Z: RFC 5280 §5.1.2.4 — UTCTime before, GeneralizedTime from then on.
const GENERALIZED_FROM = 2524608000

const OID = {
  sha256WithRSA: '1.2.840.113549.1.1.11',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  authorityKeyIdentifier: '2.5.29.35',
  cRLNumber: '2.5.29.20',
  reasonCode: '2.5.29.21',
} as const

type Node = Asn1.Asn1

function oid(id: string): Node {
  return asn1.create(U, T.OID, false, asn1.oidToDer(id).getBytes())
}

function seq(items: Node[]): Node {
  return asn1.create(U, T.SEQUENCE, true, items)
}

function derBytes(node: Node): string {
  return asn1.toDer(node).getBytes()
}

// X.690 §8.3: two's complement, minimal length; serials and counters here are non-negative.
function unsignedInteger(bytes: string): Node {
  let b = bytes.replace(/^\x00+/, '')
  if (b.length === 0) b = '\x00'
  if (b.charCodeAt(0) >= 0x80) b = '\x00' + b
  return asn1.create(U, T.INTEGER, false, b)
}

function integerOfNumber(n: number): Node {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`"crlNumber" expected a non-negative integer, got ${n}`)
  let hex = n.toString(16)
  if (hex.length % 2 === 1) hex = '0' + hex
  return unsignedInteger(forge.util.hexToBytes(hex))
}

function time(seconds: number): Node {
  const d = new Date(seconds * 1000)
  return seconds < GENERALIZED_FROM
    ? asn1.create(U, T.UTCTIME, false, asn1.dateToUtcTime(d))
    : asn1.create(U, T.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(d))
}

function extension(id: string, value: Node): Node {
  return seq([oid(id), asn1.create(U, T.OCTETSTRING, false, derBytes(value))])
}

// The issuer must be the root's subject byte for byte (RFC 5280 §5.1.2.3): copied from the certificate, not re-encoded.
function rootSubject(rootCertPem: string): Node {
  const der = forge.pem.decode(rootCertPem)[0]?.body
  if (der === undefined) throw new KinError('CERT_PARSE', 'the fleet root is not PEM')
  const cert = asn1.fromDer(forge.util.createBuffer(der))
  const tbs = (cert.value as Node[])[0]!.value as Node[]
  const hasVersion = tbs[0]!.tagClass === asn1.Class.CONTEXT_SPECIFIC
  return tbs[hasVersion ? 5 : 4]!
}

/**
 * Builds and signs a CRL (RFC 5280 §5.1: TBSCertList v2, ecdsa-with-SHA256 or sha256WithRSAEncryption as the root's key) naming `revoked` by serial, with
 * the extensions §5.2 requires of a conforming CA — authority key identifier (the root's subject key id) and
 * CRL number — and a reasonCode per entry (§5.3.1). Returns DER and PEM. An empty list leaves revokedCertificates out
 * (§5.1.2.6).
 */
export function buildCrl(input: CrlInput): { der: Uint8Array; pem: string } {
  if (!(input.nextUpdate > input.thisUpdate)) throw new RangeError('"nextUpdate" must be after "thisUpdate"')
  // A CRL lists revocations that happened by its date: a later revocationDate would contradict thisUpdate.
  const late = input.revoked.find(r => r.revokedAt > input.thisUpdate)
  if (late !== undefined)
    throw new RangeError(
      `serial ${late.serial}: "revokedAt" ${late.revokedAt} lies after "thisUpdate" ${input.thisUpdate}`,
    )
  const root = DeviceCertificate.from(input.rootCertPem, { sha256: nodeCrypto.sha256 })
  // The root's key type names the algorithm (RFC 5758 §3.2: ecdsa-with-SHA256 has no parameters; RFC 4055 §5: NULL for RSA).
  let rootKey
  try {
    rootKey = createPrivateKey(input.rootKeyPem)
  } catch (err) {
    throw new KinError('CERT_PARSE', `cannot read the fleet root key to sign the CRL: ${(err as Error).message}`, {
      cause: err,
    })
  }
  const algorithm =
    rootKey.asymmetricKeyType === 'ec'
      ? seq([oid(OID.ecdsaWithSHA256)])
      : seq([oid(OID.sha256WithRSA), asn1.create(U, T.NULL, false, '')])
  const entries = [...input.revoked]
    .sort((a, b) => (a.serial < b.serial ? -1 : a.serial > b.serial ? 1 : 0))
    .map(r => {
      if (!/^[0-9a-fA-F]{1,40}$/.test(r.serial)) throw new RangeError(`serial "${r.serial}" is not 1..20 bytes of hex`)
      const hex = r.serial.length % 2 === 1 ? '0' + r.serial : r.serial
      const reason = asn1.create(U, T.ENUMERATED, false, String.fromCharCode(CRL_REASON[r.reason]))
      return seq([
        unsignedInteger(forge.util.hexToBytes(hex)),
        time(r.revokedAt),
        seq([extension(OID.reasonCode, reason)]),
      ])
    })
  const extensions: Node[] = []
  const ski = root.subjectKeyId
  if (ski !== undefined) {
    // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING, … } (RFC 5280 §4.2.1.1)
    const keyId = asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, false, forge.util.binary.raw.encode(ski))
    extensions.push(extension(OID.authorityKeyIdentifier, seq([keyId])))
  }
  extensions.push(extension(OID.cRLNumber, integerOfNumber(input.crlNumber)))
  const tbs = seq([
    asn1.create(U, T.INTEGER, false, '\x01'),
    algorithm,
    rootSubject(input.rootCertPem),
    time(input.thisUpdate),
    time(input.nextUpdate),
    ...(entries.length > 0 ? [seq(entries)] : []),
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [seq(extensions)]),
  ])
  const tbsDer = Buffer.from(derBytes(tbs), 'binary')
  let signature: Buffer
  try {
    // ECDSA signatures as DER, the form X.509 carries (node's default for EC keys).
    signature = sign('sha256', tbsDer, rootKey)
  } catch (err) {
    throw new KinError('CERT_PARSE', `cannot sign the CRL with the fleet root key: ${(err as Error).message}`, {
      cause: err,
    })
  }
  const list = seq([tbs, algorithm, asn1.create(U, T.BITSTRING, false, '\x00' + signature.toString('binary'))])
  const der = Buffer.from(derBytes(list), 'binary')
  const pem = forge.pem.encode({ type: 'X509 CRL', body: der.toString('binary') }, { maxline: 64 })
  return { der: new Uint8Array(der), pem }
}
