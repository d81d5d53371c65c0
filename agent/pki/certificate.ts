/** @module DeviceCertificate: a certificate from PEM or DER, read by the one reader (DerCertificate) with its PEM forms. */
import { DecodeError, KinError } from '../errors.ts'
import { derToPem, isPem, pemToDer } from './pem.ts'
import { DerCertificate, type CertificateOptions } from './certificate-read.ts'

export { DerCertificate, type CertificateOptions } from './certificate-read.ts'

/** An X.509 certificate from PEM text or DER bytes: DerCertificate (the one reader) plus its PEM forms. */
export class DeviceCertificate extends DerCertificate {
  #pem: string | undefined

  /** Parses PEM text ("CERTIFICATE") or DER bytes; throws KinError CERT_PARSE on anything malformed. */
  constructor(input: string | Uint8Array, options: CertificateOptions = {}) {
    if (!isPem(input) && !(input instanceof Uint8Array))
      throw new DecodeError('CERT_PARSE', 'certificate must be PEM text or DER bytes')
    super(isPem(input) ? pemToDer(input, 'CERTIFICATE', 'CERT_PARSE') : input, options)
  }

  /** Parses, returning the same object when given a DeviceCertificate. */
  static from(input: DeviceCertificate | string | Uint8Array, options?: CertificateOptions): DeviceCertificate {
    return input instanceof DeviceCertificate ? input : new DeviceCertificate(input, options)
  }

  /** The subject public key as "PUBLIC KEY" PEM. */
  get publicKeyPem(): string {
    return derToPem(this.layout.spki, 'PUBLIC KEY')
  }
  /** The certificate as "CERTIFICATE" PEM. */
  get pem(): string {
    return (this.#pem ??= derToPem(this.der, 'CERTIFICATE'))
  }
}

/** Parses a certificate, returning null instead of throwing CERT_PARSE (other errors still throw). */
export function tryParseCertificate(
  input: string | Uint8Array,
  options?: CertificateOptions,
): DeviceCertificate | null {
  try {
    return new DeviceCertificate(input, options)
  } catch (e) {
    if (e instanceof KinError && e.code === 'CERT_PARSE') return null
    throw e
  }
}
