/** @module kinship's X.509 half: fleet root, CSRs, issuance, and the chain and binding checks every verifier runs. */
export type { PkiProvider, TlsKeyPair } from '../ports/pki.ts'
export { DeviceCertificate, DerCertificate, tryParseCertificate, type CertificateOptions } from './certificate.ts'
export { certificateSignatureValid, signatureByKeyValid, type SignatureVerifier } from './verifier.ts'
export { portableVerifier, createPortableVerifier } from './portable-verifier.ts'
export {
  signatureAlgorithmOf,
  checkSignatureInputs,
  algorithmForKey,
  type SignatureAlgorithm,
} from './signature-algorithm.ts'
export { createFleetRoot, CLOCK_SKEW_SECONDS, type FleetRootOptions } from './root.ts'
export { fleetRootCn, fleetDomainOfRootCn, FLEET_ROOT_CN_PREFIX } from './root-name.ts'
export { createCsr, type CsrOptions } from './csr.ts'
export { parseCsr, type ParsedCsr } from './csr-parse.ts'
export { checkCsrAgainstAuthorization, checkCsrBeforeSignature, type Authorization } from './csr-check.ts'
export {
  checkPublicKeyParameters,
  checkTlsKey,
  readP256PublicKey,
  isAcceptedRsaKey,
  publicKeyKind,
  type TlsKeyKind,
  RSA_MIN_MODULUS_BITS,
  RSA_MAX_MODULUS_BITS,
  RSA_PUBLIC_EXPONENT,
  type PublicKeyKind,
} from './key-parameters.ts'
export { issueDeviceCertificate, issueL0Certificate, DEFAULT_VALIDITY_SECONDS, type CaOptions } from './issue.ts'
export {
  verifyChain,
  verifyChainOf,
  checkIssuedByRoot,
  checkValidity,
  checkLeafKeyUsage,
  checkLeafNames,
  type ChainCertificate,
  type ChainInfo,
  type ChainNames,
} from './chain.ts'
export { verifyBinding, type BindingLookup, type BindingRecord } from './binding.ts'
export { pemToDer, derToPem, isPem } from './pem.ts'
export { spkiDerFromPublicKeyPem } from './keys.ts'
export type { RandomBytes } from './_build.ts'
