/** @module The fleet CA's certificate-side checks of a CSR against the authorize event it comes with (docs/PAIRING.md step 5). */
import { VerificationError } from '../errors.ts'
import { bytesEqual, toHex } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { parseCsr, type ParsedCsr } from './csr-parse.ts'
import { expectedSan, oldParentMarkersOf, requireSanSet } from './_names.ts'
import { checkSignatureInputs } from './signature-algorithm.ts'

/** The parts of an authorize (or genesis/rekey) event the CA holds a CSR to. */
export interface Authorization {
  readonly cn: string
  /** The parent's CN; undefined for L0. */
  readonly parentCn: string | undefined
  /** SHA-256 of the authorized TLS SubjectPublicKeyInfo DER. */
  readonly spkiHash: Uint8Array
  /** Seconds since the epoch after which the identity is no longer authorized. */
  readonly notAfter: number
}

function parsedCsr(csr: ParsedCsr | string | Uint8Array, crypto: Pick<CryptoProvider, 'sha256'>): ParsedCsr {
  return typeof csr === 'string' || csr instanceof Uint8Array ? parseCsr(csr, { sha256: crypto.sha256 }) : csr
}

/**
 * The CSR checks that do no signature arithmetic, cheapest first: CSR_NAMES (CN), CSR_OLD_PARENT_MARKER (SAN holds the
 * retired DNS:parent.<CN> marker), CSR_NAMES (SAN ≠ {DNS:cn, URI:kin://<fleet domain>/parent/<parent label>}),
 * SIGNATURE_SHA1 / SIGNATURE_ALGORITHM (the request's signature algorithm), RSA_KEY_SIZE / RSA_EXPONENT / EC_CURVE /
 * KEY_TYPE (its key), SIGNATURE_KEY_MISMATCH (algorithm and key do not fit), CSR_KEY_MISMATCH (key ≠ authorized key). The CA runs these before
 * any signature of the request is checked; returns the parsed CSR (DecodeError CSR_PARSE when it does not parse).
 */
export function checkCsrBeforeSignature(
  csr: ParsedCsr | string | Uint8Array,
  auth: Authorization,
  crypto: Pick<CryptoProvider, 'sha256'>,
): ParsedCsr {
  const parsed = parsedCsr(csr, crypto)
  if (parsed.cn !== auth.cn)
    throw new VerificationError('CSR_NAMES', `CSR CN "${parsed.cn}" is not the authorized CN "${auth.cn}"`)
  const old = oldParentMarkersOf(parsed.sanDns)
  if (old.length > 0) {
    throw new VerificationError(
      'CSR_OLD_PARENT_MARKER',
      `CSR names its parent as DNS:${old[0]}, the marker form kinship no longer issues; make the CSR again with this version of kinship (the parent marker is now URI:kin://<fleet domain>/parent/<label>)`,
    )
  }
  if (parsed.sanOtherCount !== 0)
    throw new VerificationError('CSR_NAMES', 'CSR requests SAN entries that are neither DNS names nor URIs')
  const expected = expectedSan(auth.cn, auth.parentCn)
  requireSanSet(parsed.sanDns, expected.dns, 'CSR_NAMES', 'SAN DNS names')
  requireSanSet(parsed.sanUris, expected.uris, 'CSR_NAMES', 'SAN URIs')
  checkSignatureInputs(parsed.algorithm, parsed.spkiDer, 'CSR key', 'CSR_PARSE')
  const spkiHash = crypto.sha256(parsed.spkiDer)
  if (!bytesEqual(spkiHash, auth.spkiHash)) {
    throw new VerificationError(
      'CSR_KEY_MISMATCH',
      `CSR key ${toHex(spkiHash)} is not the authorized key ${toHex(auth.spkiHash)}`,
    )
  }
  return parsed
}

/**
 * Checks a CSR against its authorization, each failure its own code: checkCsrBeforeSignature's, then CSR_SIGNATURE
 * (self-signature invalid), last because it is the only one that costs signature arithmetic.
 * Returns the parsed CSR; DecodeError CSR_PARSE when it does not parse.
 */
export function checkCsrAgainstAuthorization(
  csr: ParsedCsr | string | Uint8Array,
  auth: Authorization,
  crypto: Pick<CryptoProvider, 'sha256'>,
): ParsedCsr {
  const parsed = checkCsrBeforeSignature(csr, auth, crypto)
  if (!parsed.signatureValid) throw new VerificationError('CSR_SIGNATURE', 'CSR is not signed by the key it carries')
  return parsed
}
