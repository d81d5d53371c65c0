/** @module Verified ledger state: the maps an access check reads (bindings, children, nonces), filled by `apply`. */
import { toHex } from '../codec/bytes.ts'
import { base32 } from './names.ts'
import type { Binding, EncodedEvent, GenesisBody, LedgerEvent, PolicyBody, Revocation } from './types.ts'

/** A policy event as recorded for its subject. */
export interface PolicyRecord {
  eventId: string
  issuerBindingId: string
  subjectCn: string
  time: number
  body: PolicyBody
}

/** Why a binding is not valid at a given time; undefined when it is. */
export type InvalidReason =
  | { code: 'REVOKED'; cn: string; revocation: Revocation }
  | { code: 'ANCESTOR_REVOKED'; cn: string; ancestorCn: string; revocation: Revocation }
  | { code: 'EXPIRED'; cn: string; notAfter: number }
  | { code: 'LINEAGE_GAP'; cn: string }
  | { code: 'PARENT_SUPERSEDED'; cn: string; ancestorCn: string }

/**
 * Everything the ledger knows after validation. Reads are hash-map look-ups; no signature is checked here.
 * Mutated only by `applyEvent` (apply.ts) after `validateEvent` accepted the event.
 */
export class LedgerState {
  /** Accepted events in ledger order. */
  readonly log: EncodedEvent[] = []
  readonly byId: Map<string, EncodedEvent> = new Map()
  readonly bindings: Map<string, Binding> = new Map()
  /** CN → its bindings, oldest first; the last is current. */
  readonly bindingsByCn: Map<string, Binding[]> = new Map()
  /** Parent CN → child CNs, in order of authorization. */
  readonly childrenByCn: Map<string, string[]> = new Map()
  readonly usedNonces: Set<string> = new Set()
  readonly policiesByCn: Map<string, PolicyRecord[]> = new Map()
  genesis: { event: EncodedEvent; body: GenesisBody; cn: string } | undefined = undefined
  /** The log's time: the latest time an accepted event claims (the miner keeps each within skew of its clock). */
  logTime = 0
  /** Memo: was the signer of revocation `eventId` void when it signed (per recursion depth)? Cleared by applyEvent. */
  readonly voidSigners: Map<string, boolean> = new Map()

  /** The fleet domain from genesis. */
  get domain(): string | undefined {
    return this.genesis?.body.domain
  }

  /** The CN of a 10-byte label in this fleet. */
  cnOfLabel(label: Uint8Array): string {
    // Flat: the CN is a key of bindingsByCn and childrenByCn for as long as the ledger lives.
    if (this.genesis === undefined) return base32(label)
    // Array join builds one flat string at once; splitting a template string into characters to flatten it cost
    // ~1 % of a 400-device fleet's CPU (every replica names the subject of every event it validates).
    return [base32(label), this.genesis.body.domain].join('.')
  }

  /** Whether the event with this hex id was accepted. */
  has(idHex: string): boolean {
    return this.byId.has(idHex)
  }

  /** The accepted event with this hex id. */
  event(idHex: string): EncodedEvent | undefined {
    return this.byId.get(idHex)
  }

  /** The newest binding of a CN (its current keys), whatever its validity. */
  currentBinding(cn: string): Binding | undefined {
    const list = this.bindingsByCn.get(cn)
    return list === undefined ? undefined : list[list.length - 1]
  }

  /** The binding created by the event with this hex id. */
  bindingById(idHex: string): Binding | undefined {
    return this.bindings.get(idHex)
  }

  /** The binding of `cn` in force at `time`: the newest one created at or before it (or the first one). */
  bindingAt(cn: string, time: number): Binding | undefined {
    const list = this.bindingsByCn.get(cn)
    if (list === undefined) return undefined
    let found = list[0]
    for (const b of list) if (b.time <= time) found = b
    return found
  }

  /** Child CNs authorized by `cn`. */
  children(cn: string): string[] {
    return this.childrenByCn.get(cn) ?? []
  }

  /** The bindings from `binding` up to genesis, following the parent binding each was authorized under. */
  lineageOf(binding: Binding): Binding[] {
    const out: Binding[] = [binding]
    let b = binding
    while (b.parentBindingId !== undefined && out.length <= 32) {
      const p = this.bindings.get(b.parentBindingId)
      if (p === undefined) break
      out.push(p)
      b = p
    }
    return out
  }

  /** CNs from `cn` up to L0 (current bindings), e.g. [lock, phone, laptop, home-pc]. */
  lineage(cn: string): string[] {
    const b = this.currentBinding(cn)
    return b === undefined ? [] : this.lineageOf(b).map(x => x.cn)
  }

  /** True when `ancestorCn` is `cn` itself or appears above it in its lineage. */
  isAncestorOrSelf(ancestorCn: string, binding: Binding): boolean {
    return this.lineageOf(binding).some(b => b.cn === ancestorCn)
  }

  /** Whether a rekey had replaced `binding` at `time` (its CN had newer keys in force). */
  supersededAt(binding: Binding, time: number): boolean {
    const next = binding.supersededBy === undefined ? undefined : this.bindings.get(binding.supersededBy)
    return next !== undefined && next.time <= time
  }

  /**
   * The revocations of `binding` that count, earliest effective first: those whose signer was neither void nor
   * superseded when it signed (a compromised or replaced key cannot revoke others after it lost its standing).
   */
  effectiveRevocations(binding: Binding, depth = 0): Revocation[] {
    return binding.revocations
      .filter(r => depth >= 8 || !this.signerWasVoid(binding, r, depth))
      .sort((a, b) => a.effective - b.effective)
  }

  /** The revocation of `binding` that applies to the binding itself: the earliest effective one that counts. */
  effectiveRevocation(binding: Binding, depth = 0): Revocation | undefined {
    return this.effectiveRevocations(binding, depth)[0]
  }

  private signerWasVoid(binding: Binding, r: Revocation, depth: number): boolean {
    const key = `${r.eventId}/${depth}`
    let isVoid = this.voidSigners.get(key)
    if (isVoid === undefined) {
      const signer = this.bindings.get(r.issuerBindingId)
      isVoid =
        signer !== undefined &&
        signer !== binding &&
        (this.supersededAt(signer, r.time) || this.invalidAt(signer, r.time, depth + 1) !== undefined)
      this.voidSigners.set(key, isVoid)
    }
    return isVoid
  }

  /**
   * Why `binding` is not valid at `time` (undefined when valid): its own revocation, expiry, or an ancestor's
   * revocation that covers it (a subtree revocation, or any revocation that took effect before it was created), or an
   * ancestor whose keys had been replaced by a rekey before it was created.
   */
  invalidAt(binding: Binding, time: number, depth = 0): InvalidReason | undefined {
    const own = this.effectiveRevocation(binding, depth)
    if (own !== undefined && own.effective <= time) return { code: 'REVOKED', cn: binding.cn, revocation: own }
    if (time > binding.notAfter) return { code: 'EXPIRED', cn: binding.cn, notAfter: binding.notAfter }
    let child = binding
    let guard = 0
    while (child.parentBindingId !== undefined) {
      const parent = this.bindings.get(child.parentBindingId)
      if (parent === undefined || ++guard > 32) return { code: 'LINEAGE_GAP', cn: child.cn }
      if (this.supersededAt(parent, child.time))
        return { code: 'PARENT_SUPERSEDED', cn: binding.cn, ancestorCn: parent.cn }
      const r = this.effectiveRevocations(parent, depth).find(
        x => (x.subtree && x.effective <= time) || child.time >= x.effective,
      )
      if (r !== undefined) return { code: 'ANCESTOR_REVOKED', cn: binding.cn, ancestorCn: parent.cn, revocation: r }
      child = parent
    }
    return undefined
  }

  /**
   * The revocation in this log that ends `binding`'s standing by log time `logTime` (undefined when none does): its
   * own, or an ancestor's over its subtree, that counts and is effective at or before `logTime`. Unlike `invalidAt`,
   * it does not ask what time an event claims: it is the verdict of log position (validate.ts checkStandingInLog).
   */
  standingEndedBy(
    binding: Binding,
    logTime: number,
  ): Extract<InvalidReason, { code: 'REVOKED' | 'ANCESTOR_REVOKED' }> | undefined {
    const own = this.effectiveRevocation(binding)
    if (own !== undefined && own.effective <= logTime) return { code: 'REVOKED', cn: binding.cn, revocation: own }
    let child = binding
    for (let guard = 0; child.parentBindingId !== undefined && guard <= 32; guard++) {
      const parent = this.bindings.get(child.parentBindingId)
      if (parent === undefined) return undefined
      const r = this.effectiveRevocations(parent).find(x => x.subtree && x.effective <= logTime)
      if (r !== undefined) return { code: 'ANCESTOR_REVOKED', cn: binding.cn, ancestorCn: parent.cn, revocation: r }
      child = parent
    }
    return undefined
  }

  /** Policies recorded with `cn` as subject. */
  policies(cn: string): PolicyRecord[] {
    return this.policiesByCn.get(cn) ?? []
  }

  /** Hex ids of all accepted events, in ledger order. */
  ids(): string[] {
    return this.log.map(e => e.idHex)
  }
}

/** `text` as one flat string (a rope from concatenation becomes a single run of characters). */
export function flatString(text: string): string {
  return text.split('').join('')
}

/** Key for the used-nonce set. */
export function nonceKey(nonce: Uint8Array): string {
  return toHex(nonce)
}

/** The subject CN of an event in a state that has a genesis. */
export function subjectCn(state: LedgerState, event: LedgerEvent): string {
  return state.cnOfLabel(event.subject)
}
