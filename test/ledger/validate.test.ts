import t from 'tap'
import { readFileSync } from 'node:fs'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { portableCrypto } from '../../agent/portable/crypto.ts'
import { fromHex, toHex } from '../../agent/codec/bytes.ts'
import { DecodeError, KinError, VerificationError } from '../../agent/errors.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import { authorizeEvent, certifiedEvent, rekeyEvent, revokeEvent } from '../../agent/ledger/builders.ts'
import { MAX_CLOCK_SKEW } from '../../agent/ledger/validate.ts'
import type { AuthorizeRequest } from '../../agent/ledger/builders.ts'
import type { Binding, EncodedEvent, RoleName } from '../../agent/ledger/types.ts'
import { LedgerFleet, T0, YEAR, codeOf, houseFleet } from '../helpers/ledger-fleet.ts'

const refusals = JSON.parse(readFileSync(new URL('../vectors/ledger/refusals.json', import.meta.url), 'utf8'))

// ---- refusal vectors ---------------------------------------------------------------------------------------

for (const crypto of [nodeCrypto, portableCrypto]) {
  t.test(`${crypto.name}: every refusal vector is refused with its code after its prefix is accepted`, async t => {
    for (const v of refusals.vectors) {
      const ledger = new Ledger(crypto)
      const opts = v.now === undefined ? {} : { now: v.now as number }
      const prefixCodes = v.prefix.map((hex: string) => codeOf(() => ledger.ingest(fromHex(hex), opts)))
      t.same(
        prefixCodes,
        v.prefix.map(() => undefined),
        `${v.name}: prefix accepted`,
      )
      let thrown: unknown
      try {
        ledger.ingest(fromHex(v.event), { ...opts, intake: v.intake })
      } catch (e) {
        thrown = e
      }
      t.equal(thrown instanceof KinError ? thrown.code : String(thrown), v.code, `${v.name}: ${v.description}`)
      const decodeStage = /^(DECODE_|UNKNOWN_)/.test(v.code)
      t.ok(
        decodeStage ? thrown instanceof DecodeError : thrown instanceof VerificationError,
        `${v.name}: ${decodeStage ? 'DecodeError' : 'VerificationError'}`,
      )
      t.equal(ledger.size, v.prefix.length, `${v.name}: nothing applied`)
    }
  })
}

// Codes the sources can name but no input can produce; each is a known defect (see docs/PROTOCOL.md §14).
// A fix must add a vector and remove the code from this list, or the test below fails.
const KNOWN_UNREACHABLE = new Set<string>([])

t.test('the refusal vectors cover every code the codec and validation can throw', async t => {
  const files = ['agent/codec/cbor.ts', 'agent/ledger/event.ts', 'agent/ledger/validate.ts']
  const thrown = new Set<string>()
  for (const file of files) {
    const src = readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8')
    for (const m of src.matchAll(/(?:refuse|DecodeError|VerificationError|KinError)\(\s*'([A-Z_]+)'/g))
      thrown.add(m[1]!)
  }
  t.ok(thrown.size >= 30, `found ${thrown.size} codes in the sources`)
  const covered = new Set<string>(refusals.vectors.map((v: { code: string }) => v.code))
  const missing = [...thrown].filter(c => !covered.has(c) && !KNOWN_UNREACHABLE.has(c)).sort()
  const stray = [...covered].filter(c => !thrown.has(c)).sort()
  t.same(missing, [], 'every thrown code has a vector')
  t.same(stray, [], 'every vector code is thrown by the sources')
  t.same(
    [...KNOWN_UNREACHABLE].filter(c => covered.has(c) || !thrown.has(c)),
    [],
    'the unreachable list holds only codes still thrown and without a vector',
  )
})

// ---- helpers -----------------------------------------------------------------------------------------------

function request(f: LedgerFleet, over: Partial<AuthorizeRequest> = {}): AuthorizeRequest & { seed: Uint8Array } {
  const kp = f.keyPair()
  return {
    spkiHash: f.bytes(32),
    ledgerKey: kp.publicKey,
    seed: kp.seed,
    role: 'device',
    depth: 0,
    notAfter: T0 + YEAR,
    kind: 'sensor',
    name: 'sensor',
    nonce: f.bytes(12),
    ...over,
  }
}

/** An authorize by `parent` (any binding) signed with `secret`, not applied. */
function authorizeBy(
  f: LedgerFleet,
  parent: Binding,
  secret: Uint8Array,
  time: number,
  over: Partial<AuthorizeRequest> = {},
): EncodedEvent {
  return signEvent(f.crypto, authorizeEvent(f.crypto, parent, request(f, over), time), secret)
}

/** Authorizes by `parentCn` with its current key; returns the refusal code or, when accepted, the child's CN (secret recorded). */
function tryAuthorize(
  f: LedgerFleet,
  parentCn: string,
  time: number,
  over: Partial<AuthorizeRequest> = {},
): { code: string | undefined; cn: string } {
  const req = request(f, over)
  const e = signEvent(f.crypto, authorizeEvent(f.crypto, f.binding(parentCn), req, time), f.secrets.get(parentCn)!)
  const code = codeOf(() => f.ledger.ingest(e))
  const cn = f.subjectCn(e)
  if (code === undefined) f.secrets.set(cn, req.seed)
  return { code, cn }
}

function certifyAt(
  f: LedgerFleet,
  cn: string,
  time: number,
  secret = f.secrets.get(cn)!,
  binding = f.binding(cn),
): string | undefined {
  const e = signEvent(f.crypto, certifiedEvent(binding, f.bytes(32), time), secret)
  return codeOf(() => f.ledger.ingest(e))
}

function invalidCode(f: LedgerFleet, cn: string, time: number): string | undefined {
  return f.ledger.state.invalidAt(f.binding(cn), time)?.code
}

// ---- revocation: effective time ----------------------------------------------------------------------------

t.test('revoked as compromised: signatures at or after the effective time are void, earlier ones stand', async t => {
  const { f, laptop, phone, lock } = houseFleet('rv-compromised')
  const E = T0 + 2000
  const secret = f.secrets.get(phone)!
  const before = authorizeBy(f, f.binding(phone), secret, E - 1)
  t.equal(
    codeOf(() => f.ledger.ingest(before)),
    undefined,
    'one second before, logged before the revocation: accepted',
  )
  // Signed 500 s after it takes effect: a revocation is usually issued after the compromise it reports.
  f.revoke(laptop, phone, { reason: 'compromised', effective: E, subtree: false, time: E + 500 })
  t.equal(
    codeOf(() => f.ledger.ingest(authorizeBy(f, f.binding(phone), secret, E))),
    'VOID_AFTER_REVOKE',
    'at the effective time',
  )
  t.equal(
    codeOf(() => f.ledger.ingest(authorizeBy(f, f.binding(phone), secret, E + 100))),
    'VOID_AFTER_REVOKE',
    'after it',
  )
  t.equal(certifyAt(f, phone, E + 1), 'VOID_AFTER_REVOKE', 'any event type, not only authorize')
  t.equal(
    codeOf(() => f.ledger.ingest(authorizeBy(f, f.binding(phone), secret, E - 1))),
    'ISSUER_REVOKED_IN_LOG',
    'one second before, but offered after the revocation is in the log: refused',
  )
  t.equal(invalidCode(f, phone, E - 1), undefined, 'the phone is valid before E')
  t.equal(invalidCode(f, phone, E), 'REVOKED', 'and revoked from E')
  t.equal(
    f.ledger.state.invalidAt(f.binding(phone), E)?.code === 'REVOKED' &&
      f.ledger.state.effectiveRevocation(f.binding(phone))?.reason,
    'compromised',
  )
  t.equal(invalidCode(f, lock, E + 10_000), undefined, 'a child authorized before E stays valid (no subtree)')
  t.equal(certifyAt(f, lock, E + 10_000), undefined, 'and can still sign')
  t.equal(invalidCode(f, f.subjectCn(before), E + 10_000), undefined, 'so does the child authorized at E - 1')
})

t.test(
  'revocations that arrive late: children authorized at or after the effective time fall when it arrives',
  async t => {
    const { f, laptop, phone } = houseFleet('rv-late')
    const E = T0 + 2000
    const late = tryAuthorize(f, phone, E + 10)
    const early = tryAuthorize(f, phone, E - 10)
    t.equal(late.code, undefined, 'accepted while the ledger knows of no revocation')
    t.equal(early.code, undefined)
    f.revoke(laptop, phone, { reason: 'compromised', effective: E, subtree: false, time: E + 20 })
    const r = f.ledger.state.invalidAt(f.binding(late.cn), E + 30)
    t.equal(r?.code, 'ANCESTOR_REVOKED', 'the child created after E is invalid')
    t.equal(r?.code === 'ANCESTOR_REVOKED' ? r.ancestorCn : undefined, phone)
    t.equal(invalidCode(f, late.cn, E + 10), 'ANCESTOR_REVOKED', 'from the moment it was created')
    t.equal(invalidCode(f, early.cn, E + 30), undefined, 'the child created before E stays valid')
    t.equal(certifyAt(f, late.cn, E + 40), 'ISSUER_REVOKED', 'the fallen child can no longer sign')
  },
)

t.test('subtree revocation invalidates every descendant from the effective time, not before', async t => {
  const { f, laptop, phone, lock } = houseFleet('rv-subtree')
  const E = T0 + 3000
  f.revoke(f.l0, laptop, { reason: 'retired', effective: E, subtree: true, time: E })
  for (const cn of [phone, lock]) {
    t.equal(invalidCode(f, cn, E - 1), undefined, `${cn === phone ? 'phone' : 'lock'} valid before E`)
    const r = f.ledger.state.invalidAt(f.binding(cn), E)
    t.equal(r?.code, 'ANCESTOR_REVOKED', `${cn === phone ? 'phone' : 'lock'} invalid from E`)
    t.equal(r?.code === 'ANCESTOR_REVOKED' ? r.ancestorCn : undefined, laptop, 'because of the laptop')
  }
  t.equal(invalidCode(f, laptop, E), 'REVOKED')
  t.equal(invalidCode(f, f.l0, E), undefined, 'the revoker itself is untouched')
  t.equal(
    certifyAt(f, lock, E - 1),
    'ISSUER_REVOKED_IN_LOG',
    'a descendant that signs a time before E, once the revocation is in the log, is refused',
  )
  t.equal(certifyAt(f, lock, E), 'ISSUER_REVOKED', 'and from E')
  t.equal(tryAuthorize(f, phone, E + 5).code, 'ISSUER_REVOKED', 'nor may the phone delegate')
  // Contrast: the same revocation without subtree leaves the descendants valid.
  const g = houseFleet('rv-subtree')
  g.f.revoke(g.f.l0, g.laptop, { reason: 'retired', effective: E, subtree: false, time: E })
  t.equal(invalidCode(g.f, g.phone, E + 1000), undefined, 'no subtree: phone stays valid')
  t.equal(invalidCode(g.f, g.lock, E + 1000), undefined, 'no subtree: lock stays valid')
  t.equal(g.f.ledger.state.lineage(g.lock).length, 4)
})

t.test('revoked as lost or retired: later events are refused ISSUER_REVOKED, not void', async t => {
  for (const reason of ['lost', 'retired'] as const) {
    const { f, laptop, phone } = houseFleet(`rv-${reason}`)
    const E = T0 + 2000
    f.revoke(laptop, phone, { reason, effective: E, time: E })
    t.equal(tryAuthorize(f, phone, E).code, 'ISSUER_REVOKED', `${reason}: at E`)
    t.equal(
      tryAuthorize(f, phone, E - 1).code,
      'ISSUER_REVOKED_IN_LOG',
      `${reason}: dated before E, offered after the revocation is in the log`,
    )
  }
})

t.test('a revocation with a future effective time leaves the binding valid until then', async t => {
  const { f, laptop, phone } = houseFleet('rv-future')
  f.revoke(laptop, phone, { reason: 'retired', effective: T0 + 5000, time: T0 + 1000 })
  t.equal(invalidCode(f, phone, T0 + 4999), undefined)
  t.equal(tryAuthorize(f, phone, T0 + 4999).code, undefined)
  t.equal(invalidCode(f, phone, T0 + 5000), 'REVOKED')
  t.equal(tryAuthorize(f, phone, T0 + 5000).code, 'ISSUER_REVOKED')
})

t.test('the earliest effective revocation applies', async t => {
  const { f, laptop, phone } = houseFleet('rv-earliest')
  f.revoke(laptop, phone, { reason: 'retired', effective: T0 + 9000, time: T0 + 1000 })
  f.revoke(phone, phone, { reason: 'lost', effective: T0 + 4000, time: T0 + 1100 })
  t.equal(f.ledger.state.effectiveRevocation(f.binding(phone))?.effective, T0 + 4000)
  t.equal(f.ledger.state.effectiveRevocation(f.binding(phone))?.by, phone, 'a device may revoke itself')
  t.equal(invalidCode(f, phone, T0 + 4000), 'REVOKED')
})

t.test('a revocation signed by a key that was itself void when it signed does not take effect', async t => {
  const E = T0 + 2000
  // Order 1: the revoker's own revocation is known first, so its revocation is refused on entry.
  {
    const { f, laptop, phone } = houseFleet('rv-void')
    f.revoke(f.l0, laptop, { reason: 'compromised', effective: E, time: E })
    const r = f.revoke(
      laptop,
      phone,
      { reason: 'compromised', effective: T0 + 300, subtree: true, time: E + 10 },
      false,
    )
    t.equal(
      codeOf(() => f.ledger.ingest(r)),
      'VOID_AFTER_REVOKE',
    )
    t.equal(invalidCode(f, phone, E + 100), undefined, 'the phone stays valid (the laptop revocation has no subtree)')
  }
  // Order 2: the void revocation arrives first; it is accepted but stops counting once the revoker is known to be void.
  {
    const { f, laptop, phone, lock } = houseFleet('rv-void')
    f.revoke(laptop, phone, { reason: 'compromised', effective: T0 + 300, subtree: true, time: E + 10 })
    t.equal(invalidCode(f, phone, E + 100), 'REVOKED', 'before the news: revoked')
    t.equal(invalidCode(f, lock, E + 100), 'ANCESTOR_REVOKED', 'with its subtree')
    f.revoke(f.l0, laptop, { reason: 'compromised', effective: E, time: E })
    t.equal(f.ledger.state.effectiveRevocation(f.binding(phone)), undefined, 'the laptop revocation is void')
    t.equal(invalidCode(f, phone, E + 100), undefined, 'the phone is valid again')
    t.equal(invalidCode(f, lock, E + 100), undefined, 'and so is the lock')
  }
  // A revocation the revoker signed before its own revocation took effect stands.
  {
    const { f, laptop, phone } = houseFleet('rv-void')
    f.revoke(laptop, phone, { reason: 'lost', effective: E - 100, time: E - 10 })
    f.revoke(f.l0, laptop, { reason: 'compromised', effective: E, time: E })
    t.equal(invalidCode(f, phone, E), 'REVOKED')
  }
  // Any reason voids later signatures of the revoker, not only compromise.
  {
    const { f, laptop, phone } = houseFleet('rv-void')
    f.revoke(laptop, phone, { reason: 'retired', effective: T0 + 300, time: E + 10 })
    f.revoke(f.l0, laptop, { reason: 'retired', effective: E, time: E + 20 })
    t.equal(invalidCode(f, phone, E + 100), undefined)
  }
})

t.test('who may revoke: the subject itself or an ancestor', async t => {
  const { f, laptop, phone, lock } = houseFleet('rv-who')
  const cam = f.enroll(phone, { role: 'device', kind: 'camera', name: 'cam', time: T0 + 400 })
  t.equal(
    codeOf(() => f.ledger.ingest(f.revoke(cam, lock, { time: T0 + 500 }, false))),
    'REVOKE_NOT_ALLOWED',
    'sibling',
  )
  t.equal(
    codeOf(() => f.ledger.ingest(f.revoke(lock, phone, { time: T0 + 500 }, false))),
    'REVOKE_NOT_ALLOWED',
    'child revoking its parent',
  )
  t.equal(
    codeOf(() => f.ledger.ingest(f.revoke(lock, lock, { time: T0 + 500 }, false))),
    undefined,
    'self',
  )
  t.equal(
    codeOf(() => f.ledger.ingest(f.revoke(f.l0, cam, { time: T0 + 500 }, false))),
    undefined,
    'L0, an ancestor three levels up',
  )
  t.equal(
    codeOf(() => f.ledger.ingest(f.revoke(laptop, cam, { time: T0 + 600 }, false))),
    undefined,
    'a second revocation of the same binding is recorded too',
  )
  t.equal(f.binding(cam).revocations.length, 2)
})

// ---- rekey -------------------------------------------------------------------------------------------------

t.test('rekey: the old key can no longer sign, the new one can, from the rekey time', async t => {
  const { f, laptop, phone, lock } = houseFleet('rk-basic')
  const old = f.binding(phone)
  const oldSecret = f.secrets.get(phone)!
  const R = T0 + 1000
  const rk = f.rekey(laptop, phone, R)
  const now = f.binding(phone)
  t.not(now.id, old.id)
  t.equal(now.cn, phone, 'same CN')
  t.equal(now.generation, 1)
  t.equal(old.supersededBy, rk.idHex)
  t.equal(now.parentBindingId, f.binding(laptop).id)
  t.same(
    [now.role, now.depth, now.kind, now.name],
    [old.role, old.depth, old.kind, old.name],
    'role, depth, kind and name carry over',
  )
  t.same(now.certHashes, [], 'certificates belong to the old keys')
  t.equal(f.ledger.state.bindingAt(phone, R - 1), old)
  t.equal(f.ledger.state.bindingAt(phone, R), now)
  t.equal(
    codeOf(() => f.ledger.ingest(authorizeBy(f, old, oldSecret, R))),
    'ISSUER_NOT_CURRENT',
    'old key at the rekey time',
  )
  t.equal(
    codeOf(() => f.ledger.ingest(authorizeBy(f, old, oldSecret, R + 500))),
    'ISSUER_NOT_CURRENT',
    'old key after',
  )
  t.equal(
    codeOf(() => f.ledger.ingest(authorizeBy(f, old, f.secrets.get(phone)!, R + 500))),
    'ISSUER_NOT_CURRENT',
    'new key on the old binding',
  )
  t.equal(
    codeOf(() => f.ledger.ingest(authorizeBy(f, now, f.secrets.get(phone)!, R - 1))),
    'ISSUER_NOT_CURRENT',
    'new key before the rekey',
  )
  t.equal(
    codeOf(() => f.ledger.ingest(authorizeBy(f, now, oldSecret, R + 500))),
    'BAD_SIGNATURE',
    'old key on the new binding',
  )
  t.equal(
    codeOf(() => f.ledger.ingest(authorizeBy(f, old, oldSecret, R - 1))),
    undefined,
    'old key before the rekey: still valid',
  )
  t.equal(tryAuthorize(f, phone, R + 600).code, undefined, 'the new key delegates')
  t.equal(certifyAt(f, phone, R + 700), undefined, 'and records its new certificate')
  t.equal(f.binding(phone).certHashes.length, 1)
  t.equal(invalidCode(f, lock, R + 10_000), undefined, 'children of the old binding stay valid')
  t.equal(certifyAt(f, lock, R + 10_000), undefined, 'and keep signing')
  t.same(f.ledger.state.lineage(lock), [lock, phone, laptop, f.l0])
})

t.test('rekey: a revoked CN is valid again with new keys and can authorize', async t => {
  const { f, laptop, phone, lock } = houseFleet('rk-revive')
  const E = T0 + 2000
  const oldSecret = f.secrets.get(phone)!
  const old = f.binding(phone)
  f.revoke(laptop, phone, { reason: 'compromised', effective: E, subtree: true, time: E })
  t.equal(invalidCode(f, phone, E), 'REVOKED')
  f.rekey(laptop, phone, E + 100)
  t.equal(invalidCode(f, phone, E + 200), undefined, 'new binding valid')
  t.equal(f.ledger.state.invalidAt(old, E + 200)?.code, 'REVOKED', 'the old binding stays revoked')
  const child = tryAuthorize(f, phone, E + 200)
  t.equal(child.code, undefined, 'the rekeyed phone authorizes')
  t.equal(invalidCode(f, child.cn, E + 300), undefined, 'and its new child is valid')
  t.equal(
    invalidCode(f, lock, E + 300),
    'ANCESTOR_REVOKED',
    'the subtree revocation of the old binding still holds for its children',
  )
  t.equal(
    codeOf(() => f.ledger.ingest(authorizeBy(f, old, oldSecret, E + 50))),
    'VOID_AFTER_REVOKE',
    'old key between revocation and rekey',
  )
  t.equal(
    codeOf(() => f.ledger.ingest(authorizeBy(f, old, oldSecret, E + 150))),
    'ISSUER_NOT_CURRENT',
    'old key after the rekey',
  )
})

t.test(
  'rekey: only the parent, only of the current binding, within the parent validity, with a fresh nonce',
  async t => {
    const { f, laptop, phone, lock } = houseFleet('rk-rules')
    t.equal(
      codeOf(() => f.ledger.ingest(f.rekey(laptop, lock, T0 + 500, false))),
      'REKEY_NOT_PARENT',
      'grandparent',
    )
    t.equal(
      codeOf(() => f.ledger.ingest(f.rekey(lock, lock, T0 + 500, false))),
      'REKEY_SELF_LIMITS',
      'itself, with a new ledger key',
    )
    t.equal(
      codeOf(() => f.ledger.ingest(f.rekey(f.l0, f.l0, T0 + 500, false))),
      'REKEY_NOT_PARENT',
      'L0 has no parent',
    )
    const old = f.binding(lock)
    const early = signEvent(
      f.crypto,
      rekeyEvent(
        f.crypto,
        f.binding(phone),
        old,
        { spkiHash: f.bytes(32), ledgerKey: f.keyPair().publicKey, notAfter: old.notAfter, nonce: f.bytes(12) },
        T0 + 299,
      ),
      f.secrets.get(phone)!,
    )
    t.equal(
      codeOf(() => f.ledger.ingest(early)),
      'LINK_MISMATCH',
      'dated before the binding it replaces',
    )
    const tooLong = signEvent(
      f.crypto,
      rekeyEvent(
        f.crypto,
        f.binding(phone),
        old,
        {
          spkiHash: f.bytes(32),
          ledgerKey: f.keyPair().publicKey,
          notAfter: f.binding(phone).notAfter + 1,
          nonce: f.bytes(12),
        },
        T0 + 500,
      ),
      f.secrets.get(phone)!,
    )
    t.equal(
      codeOf(() => f.ledger.ingest(tooLong)),
      'NOT_AFTER_EXCEEDS_PARENT',
    )
    const lockNonce = (f.ledger.state.event(old.id)!.event.body as { nonce: Uint8Array }).nonce
    const reused = signEvent(
      f.crypto,
      rekeyEvent(
        f.crypto,
        f.binding(phone),
        old,
        { spkiHash: f.bytes(32), ledgerKey: f.keyPair().publicKey, notAfter: old.notAfter, nonce: lockNonce },
        T0 + 500,
      ),
      f.secrets.get(phone)!,
    )
    t.equal(
      codeOf(() => f.ledger.ingest(reused)),
      'NONCE_REUSED',
    )
    const first = f.rekey(phone, lock, T0 + 600, false)
    const second = f.rekey(phone, lock, T0 + 700, false)
    t.equal(
      codeOf(() => f.ledger.ingest(first)),
      undefined,
      'the parent rekeys',
    )
    t.equal(
      codeOf(() => f.ledger.ingest(second)),
      'LINK_MISMATCH',
      'a competing rekey of the same binding loses',
    )
    t.equal(f.ledger.state.bindingsByCn.get(lock)!.length, 2)
  },
)

t.test('rekey by the device itself: a new TLS key under its ledger key, nothing more, not once revoked', async t => {
  const { f, phone, lock } = houseFleet('rk-self')
  const selfRekey = (cn: string, time: number, change: { ledgerKey?: Uint8Array; notAfter?: number } = {}) => {
    const b = f.binding(cn)
    return signEvent(
      f.crypto,
      rekeyEvent(
        f.crypto,
        b,
        b,
        {
          spkiHash: f.bytes(32),
          ledgerKey: change.ledgerKey ?? b.ledgerKey,
          notAfter: change.notAfter ?? b.notAfter,
          nonce: f.bytes(12),
        },
        time,
      ),
      f.secrets.get(cn)!,
    )
  }
  t.equal(
    codeOf(() => f.ledger.ingest(selfRekey(lock, T0 + 500, { notAfter: f.binding(lock).notAfter + 1 }))),
    'REKEY_SELF_LIMITS',
    'a later notAfter needs the parent',
  )
  const before = f.binding(lock)
  const lineageBefore = f.ledger.state.lineage(lock)
  const ok = selfRekey(lock, T0 + 600)
  t.equal(
    codeOf(() => f.ledger.ingest(ok)),
    undefined,
    'the same ledger key, a new TLS key',
  )
  const after = f.ledger.state.currentBinding(lock)!
  t.equal(after.id, ok.idHex, 'the rekey is the current binding')
  t.equal(after.parentBindingId, before.parentBindingId, 'under the same parent binding')
  t.equal(after.generation, before.generation + 1)
  t.notOk(toHex(after.spkiHash) === toHex(before.spkiHash), 'for the new key')
  t.same(f.ledger.state.lineage(lock), lineageBefore, 'the same lineage')
  f.ledger.ingest(f.revoke(phone, lock, { time: T0 + 700 }, false))
  t.equal(
    codeOf(() => f.ledger.ingest(selfRekey(lock, T0 + 800))),
    'VOID_AFTER_REVOKE',
    'a revoked device cannot (revoked as compromised: its later signatures are void)',
  )
})

// ---- delegation ----------------------------------------------------------------------------------------------

t.test('delegation: admins authorize any role, members devices and guests, devices and guests nobody', async t => {
  const { f, laptop, phone, lock } = houseFleet('dl-roles')
  const roles: RoleName[] = ['admin', 'member', 'device', 'guest']
  let time = T0 + 1000
  for (const role of roles) {
    const depth = role === 'admin' || role === 'member' ? 3 : 0
    t.equal(tryAuthorize(f, laptop, time++, { role, depth }).code, undefined, `admin → ${role}`)
    t.equal(
      tryAuthorize(f, phone, time++, { role, depth }).code,
      role === 'admin' || role === 'member' ? 'ROLE_ESCALATION' : undefined,
      `member → ${role}`,
    )
  }
  const guest = tryAuthorize(f, phone, time++, { role: 'guest' })
  for (const role of roles) {
    t.equal(tryAuthorize(f, lock, time++, { role }).code, 'ROLE_CANNOT_DELEGATE', `device → ${role}`)
    t.equal(tryAuthorize(f, guest.cn, time++, { role }).code, 'ROLE_CANNOT_DELEGATE', `guest → ${role}`)
  }
})

t.test(
  'delegation depth: each child at most its parent depth - 1; depth 0 cannot delegate; devices and guests have 0',
  async t => {
    const f = LedgerFleet.create({ tag: 'dl-depth' })
    t.equal(f.binding(f.l0).depth, 15, 'L0 has depth 15')
    const a2 = tryAuthorize(f, f.l0, T0 + 10, { role: 'admin', depth: 2 })
    t.equal(a2.code, undefined)
    t.equal(
      tryAuthorize(f, a2.cn, T0 + 20, { role: 'admin', depth: 2 }).code,
      'DEPTH_EXHAUSTED',
      'same depth as the parent',
    )
    const a1 = tryAuthorize(f, a2.cn, T0 + 30, { role: 'admin', depth: 1 })
    t.equal(a1.code, undefined)
    const m0 = tryAuthorize(f, a1.cn, T0 + 40, { role: 'member', depth: 0 })
    t.equal(m0.code, undefined)
    t.equal(
      tryAuthorize(f, m0.cn, T0 + 50, { role: 'device' }).code,
      'DEPTH_EXHAUSTED',
      'a member of depth 0 cannot even add a device',
    )
    t.equal(
      tryAuthorize(f, a1.cn, T0 + 60, { role: 'device', depth: 1 }).code,
      'DEPTH_EXHAUSTED',
      'a device with depth 1',
    )
    t.equal(tryAuthorize(f, a1.cn, T0 + 70, { role: 'guest', depth: 0 }).code, undefined, 'a guest with depth 0')
  },
)

t.test('validity windows: notAfter bounded by the parent, inclusive at both ends', async t => {
  const { f, phone } = houseFleet('dl-notafter')
  const parentEnd = f.binding(phone).notAfter
  t.equal(tryAuthorize(f, phone, T0 + 1000, { notAfter: parentEnd }).code, undefined, 'same notAfter as the parent')
  t.equal(tryAuthorize(f, phone, T0 + 1001, { notAfter: parentEnd + 1 }).code, 'NOT_AFTER_EXCEEDS_PARENT')
  t.equal(tryAuthorize(f, phone, T0 + 1002, { notAfter: T0 + 1002 }).code, undefined, 'issued at its own notAfter')
  t.equal(tryAuthorize(f, phone, T0 + 1003, { notAfter: T0 + 1002 }).code, 'NOT_AFTER_PASSED')
})

t.test('expiry: valid through notAfter, EXPIRED after it; an expired issuer cannot sign', async t => {
  const { f, phone } = houseFleet('ex')
  const N = T0 + 5000
  const s = tryAuthorize(f, phone, T0 + 1000, { notAfter: N })
  t.equal(s.code, undefined)
  t.equal(invalidCode(f, s.cn, N), undefined, 'valid at notAfter')
  const r = f.ledger.state.invalidAt(f.binding(s.cn), N + 1)
  t.equal(r?.code, 'EXPIRED', 'expired one second later')
  t.equal(r?.code === 'EXPIRED' ? r.notAfter : undefined, N)
  t.equal(certifyAt(f, s.cn, N), undefined, 'signs at notAfter')
  t.equal(certifyAt(f, s.cn, N + 1), 'ISSUER_EXPIRED', 'not after')
  const g = LedgerFleet.create({ tag: 'ex-l0', time: T0 })
  t.equal(
    g.ledger.state.invalidAt(g.binding(g.l0), T0 + 20 * YEAR + 1)?.code,
    'EXPIRED',
    'L0 expires with its genesis notAfter',
  )
})

// ---- other rules -----------------------------------------------------------------------------------------------

t.test('clock skew: at most MAX_CLOCK_SKEW seconds ahead of the validating clock', async t => {
  const { f, phone } = houseFleet('skew')
  const now = T0 + 10_000
  const at = (time: number): EncodedEvent => authorizeBy(f, f.binding(phone), f.secrets.get(phone)!, time)
  t.equal(MAX_CLOCK_SKEW, 300)
  t.equal(
    codeOf(() => f.ledger.check(at(now + 301), { now })),
    'TIME_IN_FUTURE',
  )
  t.equal(
    codeOf(() => f.ledger.check(at(now + 300), { now })),
    undefined,
  )
  t.equal(
    codeOf(() => f.ledger.check(at(now + 100_000))),
    undefined,
    'no clock given: no check',
  )
  t.equal(f.ledger.size, f.events.length, 'check() applies nothing')
})

t.test('nonces are single-use across genesis, authorize and rekey', async t => {
  const { f, phone, lock } = houseFleet('nonce')
  const genesisNonce = (f.events[0]!.event.body as { nonce: Uint8Array }).nonce
  t.equal(tryAuthorize(f, phone, T0 + 1000, { nonce: genesisNonce }).code, 'NONCE_REUSED', 'genesis nonce')
  const rk = f.rekey(phone, lock, T0 + 1100)
  const rekeyNonce = (rk.event.body as { nonce: Uint8Array }).nonce
  t.equal(tryAuthorize(f, phone, T0 + 1200, { nonce: rekeyNonce }).code, 'NONCE_REUSED', 'rekey nonce')
  t.ok(f.ledger.state.usedNonces.has(toHex(rekeyNonce)))
})

t.test('certified: by the subject with its own key, each certificate once per binding', async t => {
  const { f, phone, lock } = houseFleet('cert')
  t.equal(f.binding(lock).certHashes.length, 1, 'enrollment recorded one certificate')
  t.equal(certifyAt(f, lock, T0 + 1000), undefined, 'a renewed certificate')
  t.equal(f.binding(lock).certHashes.length, 2)
  t.equal(
    certifyAt(f, lock, T0 + 1001, f.secrets.get(phone)!),
    'BAD_SIGNATURE',
    "the parent's key on the lock's certified event",
  )
})

t.test('policy: set by an ancestor, recorded for its subject', async t => {
  const { f, laptop, phone, lock } = houseFleet('policy')
  const p = f.policy(
    laptop,
    phone,
    { maxHops: 3, rules: [{ action: 'unlock', roles: ['guest'], from: 0, to: 86400 }] },
    T0 + 500,
  )
  t.same(
    f.ledger.state.policies(phone).map(r => r.eventId),
    [p.idHex],
  )
  t.equal(f.ledger.state.policies(phone)[0]!.body.maxHops, 3)
  t.equal(f.ledger.state.policies(phone)[0]!.issuerBindingId, f.binding(laptop).id)
  t.equal(
    codeOf(() => f.ledger.ingest(f.policy(lock, phone, {}, T0 + 600, false))),
    'POLICY_NOT_ANCESTOR',
    'a child on its parent',
  )
  const cam = f.enroll(phone, { role: 'device', name: 'cam', time: T0 + 700 })
  t.equal(
    codeOf(() => f.ledger.ingest(f.policy(cam, lock, {}, T0 + 800, false))),
    'POLICY_NOT_ANCESTOR',
    'a sibling',
  )
  t.same(f.ledger.state.policies(lock), [])
})

t.test('policy: only from identities that may delegate (admin or member, depth 1 or more)', async t => {
  const { f, laptop, phone, lock } = houseFleet('policy-delegator')
  t.equal(
    codeOf(() => f.ledger.ingest(f.policy(lock, lock, {}, T0 + 600, false))),
    'POLICY_NOT_DELEGATOR',
    'a device on itself',
  )
  const guest = f.enroll(phone, { role: 'guest', name: 'visitor', time: T0 + 700 })
  t.equal(
    codeOf(() => f.ledger.ingest(f.policy(guest, guest, {}, T0 + 800, false))),
    'POLICY_NOT_DELEGATOR',
    'a guest on itself',
  )
  const leaf = f.enroll(laptop, { role: 'member', depth: 0, name: 'teen', time: T0 + 700 })
  t.equal(
    codeOf(() => f.ledger.ingest(f.policy(leaf, leaf, {}, T0 + 800, false))),
    'POLICY_NOT_DELEGATOR',
    'a member of depth 0 on itself',
  )
  t.same(f.ledger.state.policies(lock), [])
  t.equal(
    codeOf(() => f.ledger.ingest(f.policy(phone, phone, {}, T0 + 900, false))),
    undefined,
    'a member that may delegate, on itself',
  )
})

t.test('look-ups: lineage, children, ancestors, bindings, ids', async t => {
  const { f, laptop, phone, lock } = houseFleet('lookups')
  const guest = f.enroll(phone, { role: 'guest', kind: 'phone', name: 'guest phone', time: T0 + 400 })
  const s = f.ledger.state
  t.equal(s.genesis?.cn, f.l0)
  t.equal(s.domain, 'smith.home.arpa')
  t.match(f.l0, /^[a-z2-7]{16}\.smith\.home\.arpa$/)
  t.same(s.lineage(lock), [lock, phone, laptop, f.l0])
  t.same(s.lineage(f.l0), [f.l0])
  t.same(s.lineage('nobody.smith.home.arpa'), [])
  t.same(s.children(phone), [lock, guest], 'in order of authorization')
  t.same(s.children(f.l0), [laptop])
  t.same(s.children(lock), [])
  t.ok(s.isAncestorOrSelf(laptop, f.binding(lock)))
  t.ok(s.isAncestorOrSelf(lock, f.binding(lock)))
  t.notOk(s.isAncestorOrSelf(guest, f.binding(lock)))
  t.notOk(s.isAncestorOrSelf(lock, f.binding(phone)))
  const b = f.binding(lock)
  t.equal(s.bindingById(b.id), b)
  t.equal(s.event(b.id)?.event.type, 'authorize')
  t.same([b.parentCn, b.role, b.depth, b.kind, b.name, b.generation], [phone, 'device', 0, 'lock', 'front-door-1', 0])
  t.equal(b.parentBindingId, f.binding(phone).id)
  t.equal(s.cnOfLabel(s.event(b.id)!.event.subject), lock)
  t.same(
    s.ids(),
    f.events.map(e => e.idHex),
    'ids in ledger order',
  )
  t.ok(f.events.every(e => s.has(e.idHex)))
  t.notOk(s.has('00'.repeat(32)))
  t.equal(s.currentBinding('nobody.smith.home.arpa'), undefined)
})

t.test('duplicates and batches', async t => {
  const { f } = houseFleet('batch')
  const l = new Ledger(nodeCrypto)
  l.ingest(f.events[0]!.bytes)
  t.equal(
    codeOf(() => l.ingest(f.events[0]!.bytes)),
    'DUPLICATE_EVENT',
    'the same genesis twice',
  )
  const shuffled = [...f.events].reverse()
  const r = l.ingestMany(shuffled.map(e => e.bytes))
  t.equal(r.accepted.length, f.events.length - 1, 'every event but the genesis already held, whatever the order')
  t.same(r.refused, [], 'duplicates are skipped silently')
  t.same(r.pending, [])
  t.same(new Set(l.state.ids()), new Set(f.events.map(e => e.idHex)))
  const m = new Ledger(nodeCrypto)
  const partial = m.ingestMany([...f.events.slice(2).map(e => e.bytes), new Uint8Array(0)])
  t.equal(partial.accepted.length, 0, 'no genesis: nothing can enter')
  t.equal(partial.pending.length, f.events.length - 2, 'everything waits for its links')
  t.same(
    partial.refused.map(x => x.code),
    ['DECODE_CBOR'],
    'undecodable bytes are refused with their code',
  )
})

t.test('trustSignatures skips only the Ed25519 check', async t => {
  const { f, phone } = houseFleet('trust')
  const forged = authorizeBy(f, f.binding(phone), new Uint8Array(32).fill(1), T0 + 1000)
  t.equal(
    codeOf(() => f.ledger.check(forged)),
    'BAD_SIGNATURE',
  )
  t.equal(
    codeOf(() => f.ledger.check(forged, { trustSignatures: true })),
    undefined,
  )
  const early = authorizeBy(f, f.binding(phone), new Uint8Array(32).fill(1), T0 + 1)
  t.equal(
    codeOf(() => f.ledger.check(early, { trustSignatures: true })),
    'ISSUER_NOT_CURRENT',
    'every other rule still runs',
  )
})

t.test('genesis: L0 is an admin of depth 15, bound to its own keys', async t => {
  const f = LedgerFleet.create({ tag: 'genesis', domain: 'jones.example.org' })
  const b = f.binding(f.l0)
  t.same(
    [b.role, b.depth, b.parentCn, b.parentBindingId, b.kind, b.name],
    ['admin', 15, undefined, undefined, 'l0', 'home pc'],
  )
  t.ok(f.l0.endsWith('.jones.example.org'))
  const other = LedgerFleet.create({ tag: 'genesis-2' })
  t.equal(
    codeOf(() => f.ledger.ingest(other.events[0]!.bytes)),
    'GENESIS_EXISTS',
  )
  const next = new Ledger(portableCrypto)
  t.equal(
    codeOf(() => next.ingest(f.events[0]!.bytes)),
    undefined,
    'the portable provider accepts it too',
  )
})

t.test('revocation and rekey events use the builders the agent uses', async t => {
  const { f, phone, lock } = houseFleet('builders')
  const u = revokeEvent(
    f.binding(phone),
    f.binding(lock),
    { reason: 'lost', effective: T0 + 900, subtree: false },
    T0 + 900,
  )
  t.same(u.links.map(toHex), [f.binding(phone).id, f.binding(lock).id], 'links: [issuer binding, revoked binding]')
  const k = rekeyEvent(
    f.crypto,
    f.binding(phone),
    f.binding(lock),
    { spkiHash: f.bytes(32), ledgerKey: f.keyPair().publicKey, notAfter: T0 + 1000 },
    T0 + 950,
  )
  t.same(k.links.map(toHex), [f.binding(phone).id, f.binding(lock).id], 'links: [issuer binding, replaced binding]')
  t.equal((k.body as { nonce: Uint8Array }).nonce.length, 12, 'a fresh 12-byte nonce when none is given')
})
