/** @module kin-core's X.509: the one DER reader with key checks, the portable verifier and the chain rules, on portable SHA-256. */
import { DecodeError, KinError } from '../errors.ts'
import { verifyingCrypto } from '../portable/verify-crypto.ts'
import type { PkiProvider } from '../ports/pki.ts'
import { DerCertificate } from './certificate-read.ts'
import { verifyChainOf, type ChainInfo } from './chain.ts'
import { checkPublicKeyParameters } from './key-parameters.ts'
import { createPortableVerifier } from './portable-verifier.ts'
import { certificateSignatureValid, type SignatureVerifier } from './verifier.ts'

/*
 * One certificate reader on strict DER (certificate-read.ts, no node-forge, which is several times kin-core's size
 * budget on its own), the chain rules (chain.ts) and the portable verifier (BigInt RSA, @noble/curves P-256).
 * test/footprint/core-x509.test.ts holds kin-core to the node verifier on the same inputs.
 */

const CODE = 'CERT_PARSE'

/**
 * A certificate as kin-core takes it: DerCertificate (strict DER, no node-forge), DER only, with its key checked
 * (RSA_KEY_SIZE, RSA_EXPONENT, EC_CURVE) as it is read and hashed with the portable SHA-256.
 */
export class CoreCertificate extends DerCertificate {
  /** Parses certificate DER (RFC 5280 §4.1); KinError CERT_PARSE on anything malformed. */
  constructor(der: Uint8Array) {
    if (!(der instanceof Uint8Array)) throw new DecodeError(CODE, 'certificate must be DER bytes (a Uint8Array)')
    super(der, { sha256: verifyingCrypto.sha256 })
    // The key's parameters before anything is hashed: in QuickJS, hashing a certificate padded out with a 14 KiB
    // exponent takes half a second, and nothing this reader is for accepts such a key.
    checkPublicKeyParameters(this.layout.spki, `certificate for "${this.cn}"`, CODE)
  }

  /** Parses DER, returning the same object when given a CoreCertificate. */
  static from(input: CoreCertificate | Uint8Array): CoreCertificate {
    return input instanceof CoreCertificate ? input : new CoreCertificate(input)
  }
}

/** kin-core's signature verifier: the portable one (BigInt RSA, @noble/curves P-256) on the portable SHA-256. */
export const coreVerifier: SignatureVerifier = createPortableVerifier(verifyingCrypto.sha256, 'core')

/** A PkiProvider that only verifies: certificate signatures by coreVerifier (no key generation). */
export const corePki: PkiProvider = {
  name: 'core',
  generateTlsKeyPair() {
    return Promise.reject(new KinError('BAD_ARGUMENT', 'kin-core verifies; it does not generate keys'))
  },
  verifySignature: coreVerifier.verifySignature,
  verifyCertificateSignature(certDer, issuerCertDer) {
    return certificateSignatureValid(coreVerifier, certDer, issuerCertDer)
  },
}

/**
 * verifyChain with kin-core's reader: the keys' RSA parameters, the fleet root's signature, validity (leaf and
 * root), key usage and names, in that order; RSA_KEY_SIZE / RSA_EXPONENT, CERT_CHAIN, CERT_EXPIRED /
 * CERT_NOT_YET_VALID, CERT_KEY_USAGE, CERT_OLD_PARENT_MARKER / CERT_NAMES, or CERT_PARSE for unparsable input.
 */
export function verifyCertificateChain(
  certificate: CoreCertificate | Uint8Array,
  root: CoreCertificate | Uint8Array,
  now: number,
): ChainInfo {
  return verifyChainOf(CoreCertificate.from(certificate), CoreCertificate.from(root), now, coreVerifier)
}
