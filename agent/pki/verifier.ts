/** @module The one signature-verifier interface kinship's checks take, and the certificate-signature check every path shares. */
import { certificateLayout } from './layout.ts'
import { checkTlsKey, type TlsKeyKind } from './key-parameters.ts'
import {
  algorithmForKey,
  checkSameAlgorithm,
  checkSignatureInputs,
  type SignatureAlgorithm,
} from './signature-algorithm.ts'

/**
 * Verifies one signature. `node` (node:crypto, runtime/node/verifier.ts) and `portable` (BigInt RSA and
 * @noble/curves P-256, agent/pki/portable-verifier.ts) implement it and reach the same verdict on every input
 * (test/pki/signature-vectors.test.ts holds both, and kin-core in QuickJS, to test/vectors/pki/signatures.json).
 */
export interface SignatureVerifier {
  /** A short name for reports: 'node', 'portable' or 'core'. */
  readonly name: string
  /**
   * True when `signature` is a valid `algorithm` signature of `message` by the key of SubjectPublicKeyInfo `spkiDer`.
   * False, never a throw, for anything malformed, for a key outside kinship's (key-parameters.ts: checked before any
   * arithmetic), and for an ECDSA signature that is not strict DER with 1 ≤ r, s < n (ecdsa-signature.ts).
   */
  verifySignature(
    algorithm: SignatureAlgorithm,
    spkiDer: Uint8Array,
    message: Uint8Array,
    signature: Uint8Array,
  ): boolean
}

/**
 * True when certificate `certDer` is signed by the key of certificate `issuerCertDer` with an algorithm kinship
 * accepts, named alike inside and outside (RFC 5280 §4.1.1.2) and fitting the issuer's key. False, never a throw, for
 * anything else; verifyChain names each refusal with its own code instead (chain.ts).
 */
export function certificateSignatureValid(
  verifier: SignatureVerifier,
  certDer: Uint8Array,
  issuerCertDer: Uint8Array,
): boolean {
  try {
    const layout = certificateLayout(certDer)
    checkSameAlgorithm(layout.innerAlgorithm, layout.algorithm, 'certificate')
    const issuerSpki = certificateLayout(issuerCertDer).spki
    const algorithm = checkSignatureInputs(layout.algorithm, issuerSpki, 'issuer key')
    return verifier.verifySignature(algorithm, issuerSpki, layout.signed, layout.signature)
  } catch {
    return false
  }
}

/**
 * True when `signature` over `message` verifies with the key of `spkiDer` under the algorithm that key's kind signs
 * with (RSASSA-PKCS1-v1_5 SHA-256 for RSA, ECDSA SHA-256 for P-256): how challenge answers and results are checked,
 * where no AlgorithmIdentifier travels. False, never a throw, for a key kinship does not accept.
 */
export function signatureByKeyValid(
  verifier: SignatureVerifier,
  spkiDer: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  let kind: TlsKeyKind
  try {
    kind = checkTlsKey(spkiDer, 'key')
  } catch {
    return false
  }
  return verifier.verifySignature(algorithmForKey(kind), spkiDer, message, signature)
}
