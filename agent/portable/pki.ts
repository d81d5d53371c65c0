/** @module Portable PKI provider: P-256 keys on @noble/curves, RSA keys on node-forge, BigInt RSA and P-256 signature checks, pure JavaScript for any engine. */
import type { pki } from 'node-forge'
import { p256 } from '@noble/curves/nist.js'
import { concatBytes, fromHex } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import type { PkiProvider, TlsKeyPair } from '../ports/pki.ts'
import { asn1ToBytes, forge, toBinary } from '../pki/_forge.ts'
import { derToPem } from '../pki/pem.ts'
import { spkiDerOfRsaKey } from '../pki/keys.ts'
import { parseTlsKeyType, type TlsKeyType } from '../pki/key-type.ts'
import { certificateSignatureValid } from '../pki/verifier.ts'
import { createPortableVerifier } from '../pki/portable-verifier.ts'
import { portableCrypto } from './crypto.ts'

// RFC 5480 §2 SubjectPublicKeyInfo of an uncompressed P-256 point, up to the point's 65 bytes.
const P256_SPKI_PREFIX = fromHex('3059301306072a8648ce3d020106082a8648ce3d030107034200')
// RFC 5208 PKCS#8 around RFC 5915 ECPrivateKey (version 1, 32-byte key, [1] publicKey), the form node:crypto writes.
const P256_PKCS8_PREFIX = fromHex('308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420')
const P256_PKCS8_PUBLIC = fromHex('a144034200')

/** A P-256 key pair from 48 random bytes (reduced mod n, FIPS 186-5 A.2.1), as PKCS#8 and SPKI. */
function p256KeyPair(crypto: CryptoProvider): TlsKeyPair {
  const secretKey = p256.utils.randomSecretKey(crypto.randomBytes(48))
  const point = p256.getPublicKey(secretKey, false)
  const spkiDer = concatBytes(P256_SPKI_PREFIX, point)
  const pkcs8 = concatBytes(P256_PKCS8_PREFIX, secretKey, P256_PKCS8_PUBLIC, point)
  return {
    privateKeyPem: derToPem(pkcs8, 'PRIVATE KEY'),
    publicKeyPem: derToPem(spkiDer, 'PUBLIC KEY'),
    spkiDer,
    keyType: 'p256',
  }
}

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
    async generateTlsKeyPair(keyType: TlsKeyType = 'rsa2048'): Promise<TlsKeyPair> {
      if (parseTlsKeyType(keyType) === 'p256') return p256KeyPair(crypto)
      return new Promise((resolve, reject) => {
        forge.pki.rsa.generateKeyPair(
          { bits: 2048, e: 0x10001, prng } as pki.rsa.GenerateKeyPairOptions,
          (err, keys) => {
            if (err) {
              reject(err)
              return
            }
            const spkiDer = spkiDerOfRsaKey(keys.publicKey)
            resolve({
              privateKeyPem: privateKeyPem(keys.privateKey),
              publicKeyPem: derToPem(spkiDer, 'PUBLIC KEY'),
              spkiDer,
              keyType: 'rsa2048',
            })
          },
        )
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
