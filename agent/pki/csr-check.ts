/** @module The fleet CA's certificate-side checks of a CSR against the authorize event it comes with (enrollment step 8). */
import { VerificationError } from '../errors.ts'
import { bytesEqual, toHex } from '../codec/bytes.ts'
import type { CryptoProvider } from '../../firmware-shims/types.ts'
import { parseCsr, type ParsedCsr } from './csr-parse.ts'
import { expectedSan, oldParentMarkersOf, requireSanSet } from './_names.ts'

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

/**
 * Checks a CSR against its authorization, each failure its own VerificationError code:
 * CSR_SIGNATURE (self-signature invalid), CSR_KEY_MISMATCH (key ≠ authorized key), CSR_OLD_PARENT_MARKER (SAN holds the
 * retired DNS:parent.<CN> marker), CSR_NAMES (CN, or SAN ≠ {DNS:cn, URI:kin://<fleet domain>/parent/<parent label>}).
 * Returns the parsed CSR; DecodeError CSR_PARSE when it does not parse.
 */
export function checkCsrAgainstAuthorization(csr: ParsedCsr | string | Uint8Array, auth: Authorization, crypto: Pick<CryptoProvider, 'sha256'>): ParsedCsr {
  const parsed = typeof csr === 'string' || csr instanceof Uint8Array ? parseCsr(csr, { sha256: crypto.sha256 }) : csr
  if (!parsed.signatureValid) throw new VerificationError('CSR_SIGNATURE', 'CSR is not signed by the key it carries')
  const spkiHash = crypto.sha256(parsed.spkiDer)
  if (!bytesEqual(spkiHash, auth.spkiHash)) {
    throw new VerificationError('CSR_KEY_MISMATCH', `CSR key ${toHex(spkiHash)} is not the authorized key ${toHex(auth.spkiHash)}`)
  }
  if (parsed.cn !== auth.cn) throw new VerificationError('CSR_NAMES', `CSR CN "${parsed.cn}" is not the authorized CN "${auth.cn}"`)
  const old = oldParentMarkersOf(parsed.sanDns)
  if (old.length > 0) {
    throw new VerificationError('CSR_OLD_PARENT_MARKER', `CSR names its parent as DNS:${old[0]}, the marker form kinship no longer issues; make the CSR again with this version of kinship (the parent marker is now URI:kin://<fleet domain>/parent/<label>)`)
  }
  if (parsed.sanOtherCount !== 0) throw new VerificationError('CSR_NAMES', 'CSR requests SAN entries that are neither DNS names nor URIs')
  const expected = expectedSan(auth.cn, auth.parentCn)
  requireSanSet(parsed.sanDns, expected.dns, 'CSR_NAMES', 'SAN DNS names')
  requireSanSet(parsed.sanUris, expected.uris, 'CSR_NAMES', 'SAN URIs')
  return parsed
}
