/** @module Node PKI provider: node:crypto P-256 and RSA key generation and X509Certificate signature checks, the fast path. */
import { X509Certificate, createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto'
import { promisify } from 'node:util'
import type { PkiProvider, TlsKeyPair } from '../../agent/pki/provider.ts'
import { certificateLayout, certificateSignedWithSha256Rsa, certificateSignedWithEcdsaSha256 } from '../../agent/pki/layout.ts'
import { isAcceptedRsaKey } from '../../agent/pki/key-parameters.ts'
import { isP256Spki, parseTlsKeyType, type TlsKeyType } from '../../agent/pki/key-type.ts'

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
  async generateTlsKeyPair(keyType: TlsKeyType = 'rsa2048'): Promise<TlsKeyPair> {
    const publicKeyEncoding = { type: 'spki', format: 'pem' } as const, privateKeyEncoding = { type: 'pkcs8', format: 'pem' } as const
    const { privateKey, publicKey } = parseTlsKeyType(keyType) === 'p256'
      ? await generateKeyPairAsync('ec', { namedCurve: 'P-256', publicKeyEncoding, privateKeyEncoding })
      : await generateKeyPairAsync('rsa', { modulusLength: 2048, publicExponent: 0x10001, publicKeyEncoding, privateKeyEncoding })
    const spki = createPublicKey(publicKey).export({ type: 'spki', format: 'der' })
    return { privateKeyPem: privateKey, publicKeyPem: publicKey, spkiDer: new Uint8Array(spki.buffer, spki.byteOffset, spki.length), keyType }
  },
  verifyCertificateSignature(certDer, issuerCertDer) {
    try {
      // The algorithm check is shared with the portable path so both accept exactly the same certificates.
      const layout = certificateLayout(certDer), issuerSpki = certificateLayout(issuerCertDer).spki
      // And the issuer key's parameters, as kin-core and the portable path check them: RSA's, or the curve P-256.
      if (certificateSignedWithSha256Rsa(layout)) {
        if (!isAcceptedRsaKey(issuerSpki)) return false
      } else if (!certificateSignedWithEcdsaSha256(layout) || !isP256Spki(issuerSpki)) return false
      return new X509Certificate(certDer).verify(issuerKey(issuerCertDer))
    } catch {
      return false
    }
  },
}
