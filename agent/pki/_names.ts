/** @module Reading names out of parsed X.509 objects: the one subject CN, the `kin://<fleet domain>/parent/<label>` SAN URI, and the retired `DNS:parent.` form. */
import { DecodeError, VerificationError, type KinErrorCode } from '../errors.ts'
import { parentCnOfMarker, parentMarker } from '../ledger/names.ts'

const CN_OID = '2.5.4.3'
// The DNS form of the parent marker that certificates and CSRs carried before the URI marker.
const OLD_PARENT_PREFIX = 'parent.'

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

/** The parent CNs named by parent-marker URIs among the SAN URIs (URIs of any other form name no parent). */
export function parentCnsOf(sanUris: readonly string[]): string[] {
  const out: string[] = []
  for (const uri of sanUris) {
    const cn = parentCnOfMarker(uri)
    if (cn !== undefined) out.push(cn)
  }
  return out
}

/** The SAN dNSNames of the retired `DNS:parent.<CN>` marker form. */
export function oldParentMarkersOf(sanDns: readonly string[]): string[] {
  return sanDns.filter(n => n.startsWith(OLD_PARENT_PREFIX))
}

/** The SAN a kinship certificate or CSR must carry: DNS:<CN>, plus the parent marker URI unless it is L0. */
export function expectedSan(cn: string, parentCn: string | undefined): { dns: string[]; uris: string[] } {
  return { dns: [cn], uris: parentCn === undefined ? [] : [parentMarker(parentCn)] }
}

/** Throws VerificationError `code` unless `names` is exactly `expected` as a set, without repeats; `what` names the kind. */
export function requireSanSet(
  names: readonly string[],
  expected: readonly string[],
  code: KinErrorCode,
  what = 'SAN',
): void {
  const same =
    names.length === expected.length && new Set(names).size === names.length && expected.every(n => names.includes(n))
  if (!same) {
    throw new VerificationError(code, `${what} is {${names.join(', ')}}, expected {${expected.join(', ')}}`, {
      detail: { names: [...names], expected: [...expected] },
    })
  }
}
