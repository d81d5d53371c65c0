/** @module Node PKI provider: node:crypto P-256 and RSA-2048 key generation and signature checks, the fast path. */
import { createPublicKey, generateKeyPair } from 'node:crypto'
import { promisify } from 'node:util'
import type { PkiProvider, TlsKeyPair } from '../../agent/ports/pki.ts'
import { certificateSignatureValid } from '../../agent/pki/verifier.ts'
import { parseTlsKeyType, type TlsKeyType } from '../../agent/pki/key-type.ts'
import { nodeVerifier } from './verifier.ts'

const generateKeyPairAsync = promisify(generateKeyPair)

/** The node:crypto PKI provider; the default on Node. */
export const nodePki: PkiProvider = {
  name: 'node',
  async generateTlsKeyPair(keyType: TlsKeyType = 'rsa2048'): Promise<TlsKeyPair> {
    const publicKeyEncoding = { type: 'spki', format: 'pem' } as const,
      privateKeyEncoding = { type: 'pkcs8', format: 'pem' } as const
    const { privateKey, publicKey } =
      parseTlsKeyType(keyType) === 'p256'
        ? await generateKeyPairAsync('ec', { namedCurve: 'P-256', publicKeyEncoding, privateKeyEncoding })
        : await generateKeyPairAsync('rsa', {
            modulusLength: 2048,
            publicExponent: 0x10001,
            publicKeyEncoding,
            privateKeyEncoding,
          })
    const spki = createPublicKey(publicKey).export({ type: 'spki', format: 'der' })
    return {
      privateKeyPem: privateKey,
      publicKeyPem: publicKey,
      spkiDer: new Uint8Array(spki.buffer, spki.byteOffset, spki.length),
      keyType,
    }
  },
  verifySignature: nodeVerifier.verifySignature,
  verifyCertificateSignature(certDer, issuerCertDer) {
    return certificateSignatureValid(nodeVerifier, certDer, issuerCertDer)
  },
}
