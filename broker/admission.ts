/** @module L0's admission rule at the miner: a `certified` event only for a certificate the fleet CA issued to that CN and key. */
import { toHex } from '../agent/codec/bytes.ts'
import type { Refusal } from '../agent/ledger/ledger.ts'
import type { LedgerState } from '../agent/ledger/state.ts'
import type { EncodedEvent } from '../agent/ledger/types.ts'
import type { IssuedCertificate } from './issued.ts'

/** The certificates L0's CA issued, by certificate hash (IssuedRegistry). */
export interface IssuedLookup {
  get(certHashHex: string): Pick<IssuedCertificate, 'cn' | 'spkiHash'> | undefined
}

/**
 * CERTIFIED_NOT_ISSUED for a `certified` event naming a certificate L0's CA never issued, or issued to another CN or
 * another key than the binding the event links to; undefined for every other event. Validation stays the same on
 * every device (it cannot know what L0 issued); only the miner holds the issued set, so this is the one place the
 * rule lives. With CERTIFIED_DUPLICATE (one per binding, in validation) the ledger holds at most one `certified`
 * event per issued certificate.
 */
export function admitCertified(issued: IssuedLookup, state: LedgerState, e: EncodedEvent): Refusal | undefined {
  const ev = e.event
  if (ev.type !== 'certified') return undefined
  const certHash = toHex(ev.body.certHash)
  const record = issued.get(certHash)
  const refuse = (why: string): Refusal => ({
    idHex: e.idHex,
    code: 'CERTIFIED_NOT_ISSUED',
    message: `certificate ${certHash.slice(0, 16)}… ${why}`,
  })
  if (record === undefined) return refuse("was not issued by the fleet CA (L0's record of issued certificates)")
  const cn = state.cnOfLabel(ev.subject)
  if (record.cn !== cn) return refuse(`was issued to ${record.cn}, not ${cn}`)
  // The binding may still be in flight (submitted in the same batch); validation then checks the link itself.
  const binding = ev.links[0] === undefined ? undefined : state.bindingById(toHex(ev.links[0]))
  if (binding !== undefined && toHex(binding.spkiHash) !== record.spkiHash)
    return refuse(`certifies another key than the binding of ${cn} the event names`)
  return undefined
}
