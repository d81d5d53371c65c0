/** @module Reading names out of parsed X.509 objects: the one subject CN and the `parent.<CN>` SAN entries. */
import { DecodeError, VerificationError, type KinErrorCode } from '../errors.ts'
import { parentMarker } from '../ledger/names.ts'

const CN_OID = '2.5.4.3'
// The marker of the empty name is the bare prefix, so parsing follows whatever names.ts writes.
const PARENT_PREFIX = parentMarker('')

/** The single CN among forge subject attributes; `code` (DecodeError) when there is none, several, or it is not printable ASCII. */
export function subjectCn(attributes: readonly { type?: string; value?: unknown }[], code: KinErrorCode): string {
  const cns = attributes.filter(a => a.type === CN_OID)
  if (cns.length !== 1) throw new DecodeError(code, `subject holds ${cns.length} CNs, expected 1`)
  const value = cns[0]!.value
  if (typeof value !== 'string' || value.length === 0 || value.length > 253 || !/^[\x20-\x7e]+$/.test(value)) {
    throw new DecodeError(code, 'subject CN is not printable ASCII of 1 to 253 characters')
  }
  return value
}

/** The parent CNs named by `parent.<CN>` entries among SAN dNSNames. */
export function parentCnsOf(sanDns: readonly string[]): string[] {
  return sanDns.filter(n => n.startsWith(PARENT_PREFIX)).map(n => n.slice(PARENT_PREFIX.length))
}

/** The SAN dNSName set a kinship certificate or CSR must carry: the CN, plus the parent marker unless it is L0. */
export function expectedSanDns(cn: string, parentCn: string | undefined): string[] {
  return parentCn === undefined ? [cn] : [cn, parentMarker(parentCn)]
}

/** Throws VerificationError `code` unless `sanDns` is exactly `expected` as a set, without repeats. */
export function requireSanSet(sanDns: readonly string[], expected: readonly string[], code: KinErrorCode): void {
  const same = sanDns.length === expected.length && new Set(sanDns).size === sanDns.length && expected.every(n => sanDns.includes(n))
  if (!same) {
    throw new VerificationError(code, `SAN is {${sanDns.join(', ')}}, expected {${expected.join(', ')}}`, { detail: { sanDns: [...sanDns], expected: [...expected] } })
  }
}
