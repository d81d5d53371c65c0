/** @module Enrollment, before docs/PAIRING.md step 3: the new device makes its two key pairs and the request it sends its parent. */
import { DecodeError } from '../errors.ts'
import { decodeCbor, encodeCbor } from '../codec/cbor.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import type { PkiProvider, TlsKeyPair } from '../ports/pki.ts'
import { isPrintableName, requirePrintableName } from '../ledger/names.ts'
import { checkPublicKeyParameters } from '../pki/key-parameters.ts'
import { DEFAULT_TLS_KEY_TYPE, type TlsKeyType } from '../pki/key-type.ts'

/** What a new device tells its parent: its public keys, what it is, and a friendly name. */
export interface EnrollRequest {
  /** DER SubjectPublicKeyInfo of its RSA TLS key. */
  spkiDer: Uint8Array
  /** Its Ed25519 ledger public key. */
  ledgerKey: Uint8Array
  kind: string
  name: string
}

/** The new device's private keys; they never leave it. */
export interface DeviceSecrets {
  tls: TlsKeyPair
  ledgerSeed: Uint8Array
}

/** Generates both key pairs on the device and the request for its parent. */
export async function createEnrollRequest(
  crypto: CryptoProvider,
  pki: PkiProvider,
  info: { kind: string; name: string; keyType?: TlsKeyType },
): Promise<{ request: EnrollRequest; secrets: DeviceSecrets }> {
  // Refused before any key is made: a parent would refuse the request, and every device the authorization.
  requirePrintableName(info.kind, 'the kind')
  requirePrintableName(info.name, 'the name')
  const tls = await pki.generateTlsKeyPair(info.keyType ?? DEFAULT_TLS_KEY_TYPE)
  const ledger = crypto.ed25519KeyPair()
  return {
    request: { spkiDer: tls.spkiDer, ledgerKey: ledger.publicKey, kind: info.kind, name: info.name },
    secrets: { tls, ledgerSeed: ledger.secretKey },
  }
}

/** CBOR form of a request for transport: [spkiDer, ledgerKey, kind, name]. */
export function encodeEnrollRequest(r: EnrollRequest): Uint8Array {
  return encodeCbor([r.spkiDer, r.ledgerKey, r.kind, r.name])
}

/** Decodes a request from untrusted bytes; DecodeError on anything malformed, RSA_KEY_SIZE / RSA_EXPONENT for an RSA key kinship refuses. */
export function decodeEnrollRequest(bytes: Uint8Array): EnrollRequest {
  const v = decodeCbor(bytes, 8192)
  if (!Array.isArray(v) || v.length !== 4)
    throw new DecodeError('DECODE_SHAPE', 'an enroll request is a CBOR array of 4 items')
  const [spkiDer, ledgerKey, kind, name] = v
  if (!(spkiDer instanceof Uint8Array) || spkiDer.length < 64 || spkiDer.length > 2048)
    throw new DecodeError('DECODE_FIELD', 'enroll request: spkiDer must be 64..2048 bytes')
  if (!(ledgerKey instanceof Uint8Array) || ledgerKey.length !== 32)
    throw new DecodeError('DECODE_FIELD', 'enroll request: ledgerKey must be 32 bytes')
  if (typeof kind !== 'string' || kind.length === 0 || kind.length > 16)
    throw new DecodeError('DECODE_FIELD', 'enroll request: kind must be 1..16 characters')
  if (typeof name !== 'string' || name.length > 64)
    throw new DecodeError('DECODE_FIELD', 'enroll request: name must be at most 64 characters')
  if (!isPrintableName(kind) || !isPrintableName(name))
    throw new DecodeError(
      'NAME_NOT_PRINTABLE',
      'enroll request: kind and name must hold no control, line-breaking or bidirectional-override character',
    )
  // The parent authorizes no key the CA and every verifier would refuse: the child hears why at once.
  checkPublicKeyParameters(spkiDer, 'enroll request: TLS key', 'DECODE_FIELD')
  return { spkiDer, ledgerKey, kind, name }
}
