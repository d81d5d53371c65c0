/** @module Node PKI provider: node:crypto key generation and signature checks, the fast path. */
import { createPublicKey, generateKeyPair } from 'node:crypto'
import { promisify } from 'node:util'
import type { PkiProvider, TlsKeyPair } from '../../agent/pki/provider.ts'
import { certificateSignatureValid } from '../../agent/pki/verifier.ts'
import { nodeVerifier } from './verifier.ts'

const generateKeyPairAsync = promisify(generateKeyPair)

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
  verifySignature: nodeVerifier.verifySignature,
  verifyCertificateSignature(certDer, issuerCertDer) {
    return certificateSignatureValid(nodeVerifier, certDer, issuerCertDer)
  },
}
