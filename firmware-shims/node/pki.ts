/** @module Node PKI provider: node:crypto RSA key generation and X509Certificate signature checks, the fast path. */
import { X509Certificate, createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto'
import { promisify } from 'node:util'
import type { PkiProvider, TlsKeyPair } from '../../agent/pki/provider.ts'
import { certificateLayout, certificateSignedWithSha256Rsa } from '../../agent/pki/layout.ts'
import { isAcceptedRsaKey } from '../../agent/pki/key-parameters.ts'

const generateKeyPairAsync = promisify(generateKeyPair)

// Issuers are few (one fleet root): their parsed keys are kept per DER array, so a verifier's root is parsed once.
const issuerKeys = new WeakMap<Uint8Array, KeyObject>()

function issuerKey(issuerCertDer: Uint8Array): KeyObject {
  let key = issuerKeys.get(issuerCertDer)
  if (key === undefined) {
    key = new X509Certificate(issuerCertDer).publicKey
    issuerKeys.set(issuerCertDer, key)
  }
  return key
}

/** The node:crypto PKI provider; the default on Node. */
export const nodePki: PkiProvider = {
  name: 'node',
  async generateTlsKeyPair(): Promise<TlsKeyPair> {
    const { privateKey, publicKey } = await generateKeyPairAsync('rsa', {
      modulusLength: 2048,
      publicExponent: 0x10001,
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    })
    const spki = createPublicKey(publicKey).export({ type: 'spki', format: 'der' })
    return { privateKeyPem: privateKey, publicKeyPem: publicKey, spkiDer: new Uint8Array(spki.buffer, spki.byteOffset, spki.length) }
  },
  verifyCertificateSignature(certDer, issuerCertDer) {
    try {
      // The algorithm check is shared with the portable path so both accept exactly the same certificates.
      if (!certificateSignedWithSha256Rsa(certificateLayout(certDer))) return false
      // And the issuer key's RSA parameters, as kin-core and the portable path check them.
      if (!isAcceptedRsaKey(certificateLayout(issuerCertDer).spki)) return false
      return new X509Certificate(certDer).verify(issuerKey(issuerCertDer))
    } catch {
      return false
    }
  },
}
