/** @module verifyBinding: the ledger stage after verifyChain — the certificate's key is the one the ledger binds to its CN, and was certified. */
import { VerificationError } from '../errors.ts'
import { bytesEqual, toHex } from '../codec/bytes.ts'

/** The part of a ledger binding this stage reads (the ledger's `Binding` fits). */
export interface BindingRecord {
  readonly spkiHash: Uint8Array
  /** Lowercase hex SHA-256 of each certificate a `certified` event recorded for this binding. */
  readonly certHashes: readonly string[]
}

/** How the stage asks the ledger: the current (newest authorize/rekey) binding of a CN, if any. */
export interface BindingLookup<B extends BindingRecord = BindingRecord> {
  currentBinding(cn: string): B | undefined
}

/**
 * Checks that the ledger's current binding for `cn` names exactly this certificate's SPKI hash (CERT_UNBOUND otherwise —
 * the Eve case: a certificate with the right names but another key) and that a certified event recorded this very
 * certificate (CERT_NOT_CERTIFIED). Returns the binding.
 */
export function verifyBinding<B extends BindingRecord>(
  certInfo: { readonly cn: string; readonly spkiHash: Uint8Array; readonly certHash: Uint8Array },
  lookup: BindingLookup<B>,
): B {
  const binding = lookup.currentBinding(certInfo.cn)
  if (binding === undefined) throw new VerificationError('CERT_UNBOUND', `the ledger binds no key to "${certInfo.cn}"`)
  if (!bytesEqual(binding.spkiHash, certInfo.spkiHash)) {
    throw new VerificationError(
      'CERT_UNBOUND',
      `the ledger binds "${certInfo.cn}" to key ${toHex(binding.spkiHash)}, not to this certificate's key ${toHex(certInfo.spkiHash)}`,
    )
  }
  const certHashHex = toHex(certInfo.certHash)
  if (!binding.certHashes.includes(certHashHex)) {
    throw new VerificationError(
      'CERT_NOT_CERTIFIED',
      `no certified event records certificate ${certHashHex} for "${certInfo.cn}"`,
    )
  }
  return binding
}
