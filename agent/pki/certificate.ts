/** @module DeviceCertificate: a parsed X.509 certificate wrapping its raw DER, with lazily computed, cached fields. */
import { DecodeError, KinError } from '../errors.ts'
import { toHex } from '../codec/bytes.ts'
import { certificateLayout, type CertificateLayout } from './layout.ts'
import { derToPem, isPem, pemToDer } from './pem.ts'
import { defaultSha256, type Sha256 } from './rsa-verify.ts'
import { parentCnsOf } from './_names.ts'
import type { CertificateExtensions } from './certificate-extensions.ts'
import { readTbsFields } from './tbs.ts'

/** Options for parsing: the SHA-256 to hash with (a CryptoProvider's `sha256`; default @noble/hashes). */
export interface CertificateOptions {
  readonly sha256?: Sha256
}

/** An X.509 v3 certificate (RSA or P-256 key). Construction parses and checks structure (KinError CERT_PARSE); other fields are computed on first use. */
export class DeviceCertificate {
  /** The certificate's DER encoding, exactly as received. */
  readonly der: Uint8Array
  /** Raw byte slices: signed part, algorithms, names, SubjectPublicKeyInfo. */
  readonly layout: CertificateLayout
  /** Subject CN. */
  readonly cn: string
  /** Not valid before, seconds since the epoch. */
  readonly notBefore: number
  /** Not valid after, seconds since the epoch. */
  readonly notAfter: number
  /** Serial number, lowercase hex of its DER content octets. */
  readonly serialHex: string
  readonly #extensions: CertificateExtensions
  readonly #sha256: Sha256
  #spkiHash: Uint8Array | undefined
  #certHash: Uint8Array | undefined
  #pem: string | undefined
  #parentCns: readonly string[] | undefined

  /** Parses PEM text ("CERTIFICATE") or DER bytes; throws KinError CERT_PARSE on anything malformed. */
  constructor(input: string | Uint8Array, options: CertificateOptions = {}) {
    if (isPem(input)) this.der = pemToDer(input, 'CERTIFICATE', 'CERT_PARSE')
    else if (input instanceof Uint8Array) this.der = input.slice()
    else throw new DecodeError('CERT_PARSE', 'certificate must be PEM text or DER bytes')
    this.layout = certificateLayout(this.der, 'CERT_PARSE')
    // kinship's own DER reader, the one kin-core runs: it reads any key type (forge's parser knows RSA only).
    const tbs = readTbsFields(this.layout.signed)
    this.cn = tbs.cn
    this.notBefore = tbs.notBefore
    this.notAfter = tbs.notAfter
    this.serialHex = tbs.serialHex
    this.#extensions = tbs.extensions
    this.#sha256 = options.sha256 ?? defaultSha256
  }

  /** Parses, returning the same object when given a DeviceCertificate. */
  static from(input: DeviceCertificate | string | Uint8Array, options?: CertificateOptions): DeviceCertificate {
    return input instanceof DeviceCertificate ? input : new DeviceCertificate(input, options)
  }

  /** All dNSName entries of the subjectAltName, in order. */
  get sanDns(): readonly string[] { return this.#extensions.sanDns }
  /** All uniformResourceIdentifier entries of the subjectAltName, in order. */
  get sanUris(): readonly string[] { return this.#extensions.sanUris }
  /** Count of subjectAltName entries that are neither dNSNames nor URIs. */
  get sanOtherCount(): number { return this.#extensions.sanOtherCount }
  /** The CNs named by `kin://<fleet domain>/parent/<label>` SAN URIs (normally zero or one). */
  get parentCns(): readonly string[] {
    return (this.#parentCns ??= Object.freeze(parentCnsOf(this.sanUris)))
  }
  /** The parent's CN from the parent marker URI; undefined for L0 (and when there are several). */
  get parentCn(): string | undefined {
    const parents = this.parentCns
    return parents.length === 1 ? parents[0] : undefined
  }
  /** basicConstraints cA (false when the extension is absent). */
  get isCA(): boolean { return this.#extensions.isCA }
  /** basicConstraints pathLenConstraint, if any. */
  get pathLength(): number | undefined { return this.#extensions.pathLength }
  /** keyUsage bit names; undefined when the extension is absent. */
  get keyUsage(): readonly string[] | undefined { return this.#extensions.keyUsage }
  /** extKeyUsage purposes ('serverAuth', 'clientAuth', or dotted OIDs); undefined when absent. */
  get extKeyUsage(): readonly string[] | undefined { return this.#extensions.extKeyUsage }
  /** subjectKeyIdentifier bytes, if present. */
  get subjectKeyId(): Uint8Array | undefined { return this.#extensions.subjectKeyId }
  /** DER SubjectPublicKeyInfo, exactly as encoded in the certificate. */
  get spkiDer(): Uint8Array { return this.layout.spki }
  /** SHA-256 of the DER SubjectPublicKeyInfo (32 bytes): what authorize events bind. */
  get spkiHash(): Uint8Array { return (this.#spkiHash ??= this.#sha256(this.layout.spki)) }
  /** SHA-256 of the certificate DER (32 bytes): what certified events record. */
  get certHash(): Uint8Array { return (this.#certHash ??= this.#sha256(this.der)) }
  /** Lowercase hex of `certHash`. */
  get certHashHex(): string { return toHex(this.certHash) }
  /** The subject public key as "PUBLIC KEY" PEM. */
  get publicKeyPem(): string { return derToPem(this.layout.spki, 'PUBLIC KEY') }
  /** The certificate as "CERTIFICATE" PEM. */
  get pem(): string { return (this.#pem ??= derToPem(this.der, 'CERTIFICATE')) }
}

/** Parses a certificate, returning null instead of throwing CERT_PARSE (other errors still throw). */
export function tryParseCertificate(input: string | Uint8Array, options?: CertificateOptions): DeviceCertificate | null {
  try {
    return new DeviceCertificate(input, options)
  } catch (e) {
    if (e instanceof KinError && e.code === 'CERT_PARSE') return null
    throw e
  }
}
