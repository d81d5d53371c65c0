/** @module Applying a validated event to the ledger state: bindings, certificates, revocations, policies. */
import { toHex } from '../codec/bytes.ts'
import { base32 } from './names.ts'
import { nonceKey, type LedgerState } from './state.ts'
import type { ValidatedEvent } from './validate.ts'
import type { Binding } from './types.ts'

function addBinding(state: LedgerState, b: Binding): void {
  state.bindings.set(b.id, b)
  const list = state.bindingsByCn.get(b.cn)
  if (list === undefined) state.bindingsByCn.set(b.cn, [b])
  else list.push(b)
}

/** Records a validated event in the state and the log. Call only with the result of `validateEvent`. */
export function applyEvent(state: LedgerState, v: ValidatedEvent): void {
  const e = v.encoded
  const ev = e.event
  state.voidSigners.clear()
  state.log.push(e)
  state.byId.set(e.idHex, e)
  if (ev.time > state.logTime) state.logTime = ev.time
  switch (ev.type) {
    case 'genesis': {
      const cn = `${base32(ev.subject)}.${ev.body.domain}`
      state.genesis = { event: e, body: ev.body, cn }
      state.usedNonces.add(nonceKey(ev.body.nonce))
      addBinding(state, {
        id: e.idHex,
        cn,
        label: base32(ev.subject),
        parentCn: undefined,
        parentBindingId: undefined,
        spkiHash: ev.body.spkiHash,
        ledgerKey: ev.body.ledgerKey,
        role: 'admin',
        depth: 15,
        notAfter: ev.body.notAfter,
        time: ev.time,
        kind: 'l0',
        name: ev.body.name,
        generation: 0,
        certHashes: [],
        revocations: [],
        supersededBy: undefined,
      })
      return
    }
    case 'authorize': {
      const issuer = v.issuerBinding!
      const cn = state.cnOfLabel(ev.subject)
      state.usedNonces.add(nonceKey(ev.body.nonce))
      addBinding(state, {
        id: e.idHex,
        cn,
        label: base32(ev.subject),
        parentCn: issuer.cn,
        parentBindingId: issuer.id,
        spkiHash: ev.body.spkiHash,
        ledgerKey: ev.body.ledgerKey,
        role: ev.body.role,
        depth: ev.body.depth,
        notAfter: ev.body.notAfter,
        time: ev.time,
        kind: ev.body.kind,
        name: ev.body.name,
        generation: 0,
        certHashes: [],
        revocations: [],
        supersededBy: undefined,
      })
      const kids = state.childrenByCn.get(issuer.cn)
      if (kids === undefined) state.childrenByCn.set(issuer.cn, [cn])
      else kids.push(cn)
      return
    }
    case 'certified':
      v.targetBinding!.certHashes.push(toHex(ev.body.certHash))
      return
    case 'revoke':
      v.targetBinding!.revocations.push({
        eventId: e.idHex,
        issuerBindingId: v.issuerBinding!.id,
        reason: ev.body.reason,
        effective: ev.body.effective,
        subtree: ev.body.subtree,
        by: v.issuerBinding!.cn,
        time: ev.time,
      })
      return
    case 'rekey': {
      const old = v.targetBinding!
      state.usedNonces.add(nonceKey(ev.body.nonce))
      old.supersededBy = e.idHex
      addBinding(state, {
        ...old,
        id: e.idHex,
        // A device's rekey of itself keeps the parent binding its old keys had.
        parentBindingId: v.issuerBinding === old ? old.parentBindingId : v.issuerBinding!.id,
        spkiHash: ev.body.spkiHash,
        ledgerKey: ev.body.ledgerKey,
        notAfter: ev.body.notAfter,
        time: ev.time,
        generation: old.generation + 1,
        certHashes: [],
        revocations: [],
        supersededBy: undefined,
      })
      return
    }
    case 'policy': {
      const cn = v.targetBinding!.cn
      const rec = {
        eventId: e.idHex,
        issuerBindingId: v.issuerBinding!.id,
        subjectCn: cn,
        time: ev.time,
        body: ev.body,
      }
      const list = state.policiesByCn.get(cn)
      if (list === undefined) state.policiesByCn.set(cn, [rec])
      else list.push(rec)
      return
    }
  }
}
