/** @module Which issued certificates the ledger no longer stands behind: revoked, under a revoked ancestor, or superseded by a rekey. */
import { toHex } from '../agent/codec/bytes.ts'
import type { LedgerState } from '../agent/ledger/state.ts'
import type { Binding, RevokeReasonName } from '../agent/ledger/types.ts'
import type { CrlReason, RevokedSerial } from './crl.ts'
import type { IssuedCertificate } from './issued.ts'

/** A revoked serial with the CN and the ledger's reason, for logs and the export's summary. */
export interface RevokedCertificate extends RevokedSerial {
  cn: string
  /** REVOKED, ANCESTOR_REVOKED or SUPERSEDED. */
  why: 'REVOKED' | 'ANCESTOR_REVOKED' | 'SUPERSEDED'
}

// A lost device's key is in unknown hands: treated as compromised.
const REASONS: Record<RevokeReasonName, CrlReason> = {
  compromised: 'keyCompromise',
  lost: 'keyCompromise',
  retired: 'cessationOfOperation',
}

function bindingOf(state: LedgerState, record: IssuedCertificate): Binding | undefined {
  const bindings = state.bindingsByCn.get(record.cn) ?? []
  return (
    bindings.find(b => b.certHashes.includes(record.certHash)) ??
    bindings.find(b => toHex(b.spkiHash) === record.spkiHash)
  )
}

/**
 * The issued certificates a CRL made at `now` must list. A certificate is revoked when the binding its key belongs
 * to is revoked (the revoke's reason; date: its effective time), when an ancestor's revocation covers it
 * (privilegeWithdrawn; date: that revocation's effective time, or the binding's creation if later), or when a rekey
 * replaced that binding (superseded; date: the rekey's time). Expired certificates are left out (their validity
 * already refuses them), and so are certificates whose CN the ledger does not know.
 */
export function revokedCertificates(
  state: LedgerState,
  issued: readonly IssuedCertificate[],
  now: number,
): RevokedCertificate[] {
  const out: RevokedCertificate[] = []
  for (const record of issued) {
    if (record.notAfter < now) continue
    const binding = bindingOf(state, record)
    if (binding === undefined) continue
    const base = { serial: record.serial, cn: record.cn }
    const invalid = state.invalidAt(binding, now)
    if (invalid?.code === 'REVOKED') {
      out.push({
        ...base,
        why: 'REVOKED',
        reason: REASONS[invalid.revocation.reason],
        revokedAt: invalid.revocation.effective,
      })
    } else if (invalid?.code === 'ANCESTOR_REVOKED') {
      out.push({
        ...base,
        why: 'ANCESTOR_REVOKED',
        reason: 'privilegeWithdrawn',
        revokedAt: Math.max(invalid.revocation.effective, binding.time),
      })
    } else if (binding.supersededBy !== undefined) {
      const rekey = state.event(binding.supersededBy)
      out.push({ ...base, why: 'SUPERSEDED', reason: 'superseded', revokedAt: rekey?.event.time ?? now })
    }
  }
  return out
}
