/** @module Portable PKI provider: node-forge RSA key generation, BigInt RSA and @noble/curves P-256 signature checks, pure JavaScript for any engine. */
import type { pki } from 'node-forge'
import type { CryptoProvider } from '../types.ts'
import type { PkiProvider, TlsKeyPair } from '../../agent/pki/provider.ts'
import { asn1ToBytes, forge, toBinary } from '../../agent/pki/_forge.ts'
import { derToPem } from '../../agent/pki/pem.ts'
import { spkiDerOfRsaKey } from '../../agent/pki/keys.ts'
import { certificateSignatureValid } from '../../agent/pki/verifier.ts'
import { createPortableVerifier } from '../../agent/pki/portable-verifier.ts'
import { portableCrypto } from './crypto.ts'

function privateKeyPem(key: pki.rsa.PrivateKey): string {
  // PKCS#8 "PRIVATE KEY" with LF line ends, the same form node:crypto writes.
  return derToPem(asn1ToBytes(forge.pki.wrapRsaPrivateKey(forge.pki.privateKeyToAsn1(key))), 'PRIVATE KEY')
}

/** A portable PKI provider drawing randomness from `crypto` (forge's own generator would prefer native code on Node). */
export function createPortablePki(crypto: CryptoProvider = portableCrypto): PkiProvider {
  // Passing a prng keeps forge on its pure-JavaScript key generator even where node:crypto exists.
  const prng = { getBytesSync: (n: number): string => toBinary(crypto.randomBytes(n)) }
  const verifier = createPortableVerifier(crypto.sha256)
  return {
    name: 'portable',
    generateTlsKeyPair(): Promise<TlsKeyPair> {
      return new Promise((resolve, reject) => {
        forge.pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001, prng } as pki.rsa.GenerateKeyPairOptions, (err, keys) => {
          if (err) { reject(err); return }
          const spkiDer = spkiDerOfRsaKey(keys.publicKey)
          resolve({ privateKeyPem: privateKeyPem(keys.privateKey), publicKeyPem: derToPem(spkiDer, 'PUBLIC KEY'), spkiDer })
        })
      })
    },
    verifySignature: verifier.verifySignature,
    verifyCertificateSignature(certDer, issuerCertDer) {
      return certificateSignatureValid(verifier, certDer, issuerCertDer)
    },
  }
}

/** The portable PKI provider on the portable crypto provider. */
export const portablePki: PkiProvider = createPortablePki()
