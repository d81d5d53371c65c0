import t from 'tap'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { portableCrypto } from '../../agent/portable/crypto.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import { mergeLedgers, type MergeResult } from '../../agent/ledger/merge.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import { authorizeEvent, certifiedEvent } from '../../agent/ledger/builders.ts'
import { fromHex } from '../../agent/codec/bytes.ts'
import { decodeCbor, encodeCbor, type CborValue } from '../../agent/codec/cbor.ts'
import { LedgerFleet, T0, YEAR, codeOf, houseFleet } from '../helpers/ledger-fleet.ts'

t.test('a certified event signed by someone else than its subject is refused CERTIFIED_NOT_SUBJECT', async t => {
  const { f, phone, lock } = houseFleet('bug1')
  const u = certifiedEvent(f.binding(lock), f.bytes(32), T0 + 400)
  u.issuer = f.ledger.state.event(f.binding(phone).id)!.event.subject
  u.links = [fromHex(f.binding(phone).id)]
  t.equal(
    codeOf(() => f.ledger.ingest(signEvent(f.crypto, u, f.secrets.get(phone)!))),
    'CERTIFIED_NOT_SUBJECT',
  )
  u.links = [fromHex(f.binding(lock).id)]
  t.equal(
    codeOf(() => f.ledger.ingest(signEvent(f.crypto, u, f.secrets.get(phone)!))),
    'CERTIFIED_NOT_SUBJECT',
  )
})

t.test('a subtree revocation is not masked by an earlier revocation without subtree', async t => {
  const { f, laptop, phone, lock } = houseFleet('bug2')
  f.revoke(laptop, phone, { reason: 'lost', effective: T0 + 1000, subtree: false, time: T0 + 1000 })
  f.revoke(laptop, phone, { reason: 'compromised', effective: T0 + 2000, subtree: true, time: T0 + 2000 })
  t.equal(f.ledger.state.invalidAt(f.binding(lock), T0 + 1500)?.code, undefined, 'the lock stands between the two')
  t.equal(
    f.ledger.state.invalidAt(f.binding(lock), T0 + 2000)?.code,
    'ANCESTOR_REVOKED',
    'and falls with the subtree revocation',
  )
})

t.test('a child signed with a key after its rekey is invalid whatever the arrival order', async t => {
  const { f, laptop, phone } = houseFleet('bug3')
  const oldPhone = f.binding(phone)
  const oldSecret = f.secrets.get(phone)!
  const rk = f.rekey(laptop, phone, T0 + 1000, false)
  const kp = f.keyPair()
  const x = signEvent(
    f.crypto,
    authorizeEvent(
      f.crypto,
      oldPhone,
      {
        spkiHash: f.bytes(32),
        ledgerKey: kp.publicKey,
        role: 'device',
        depth: 0,
        notAfter: T0 + YEAR,
        kind: 'lock',
        name: 'backdoor',
        nonce: f.bytes(12),
      },
      T0 + 1100,
    ),
    oldSecret,
  )
  const a = new Ledger(nodeCrypto)
  for (const e of f.events) a.ingest(e)
  a.ingest(x)
  a.ingest(rk)
  const cn = a.state.cnOfLabel(x.event.subject)
  t.not(a.state.invalidAt(a.state.currentBinding(cn)!, T0 + 1200), undefined, 'x then rekey: x is not valid')
  const b = new Ledger(nodeCrypto)
  for (const e of f.events) b.ingest(e)
  b.ingest(rk)
  t.equal(
    codeOf(() => b.ingest(x)),
    'ISSUER_NOT_CURRENT',
    'rekey then x: refused',
  )
  // A revocation signed with the superseded key does not count either.
  const { f: g, laptop: gl, phone: gp, lock: glock } = houseFleet('bug3b')
  const grk = g.rekey(gl, gp, T0 + 1000, false)
  const rev = g.revoke(
    gp,
    glock,
    { reason: 'compromised', effective: T0 + 300, subtree: false, time: T0 + 1100 },
    false,
  )
  g.ledger.ingest(rev)
  g.ledger.ingest(grk)
  t.equal(
    g.ledger.state.invalidAt(g.binding(glock), T0 + 1200),
    undefined,
    'a revocation by the superseded key is void',
  )
})

// What a merge hands to the next one: its union once MergeResult has it (the proposed fix), its accepted log today.
const handOver = (r: MergeResult): EncodedEvent[] =>
  (r as MergeResult & { union?: EncodedEvent[] }).union ?? r.ledger.state.log

t.test('merging merges gives the merge of all replicas (associativity)', async t => {
  // (a) a retroactive revocation voids the conflict winner of an inner merge
  {
    const g = LedgerFleet.create({ tag: 'bug4' })
    const p1 = g.enroll(g.l0, { role: 'admin', time: T0 + 10, certify: false })
    const p2 = g.enroll(g.l0, { role: 'admin', time: T0 + 10, certify: false })
    const orig = g.sign(g.authorizeUnsigned(p1, { role: 'device', time: T0 + 100 }).unsigned, p1, false)
    const twin = g.twinAuthorize(orig, p2, T0 + 150)
    const rev = g.revoke(g.l0, p1, { reason: 'compromised', effective: T0 + 50, time: T0 + 60 }, false)
    const A = [...g.events, orig],
      B = [...g.events, twin],
      C = [...g.events, rev]
    const ids = (l: Ledger): string => l.state.ids().slice().sort().join()
    const flat = mergeLedgers(nodeCrypto, [A, B, C]).ledger
    const left = mergeLedgers(nodeCrypto, [handOver(mergeLedgers(nodeCrypto, [A, B])), C]).ledger
    t.equal(ids(left), ids(flat), 'merge(merge(A, B), C) = merge(A, B, C)')
    t.ok(flat.state.has(twin.idHex), 'the twin wins once the original is void')
  }
  // (b) nested conflicts: the parent of the inner winner loses its own conflict in the outer merge
  {
    const g = LedgerFleet.create({ tag: 'bug4b' })
    const q = g.enroll(g.l0, { role: 'admin', time: T0 + 10, certify: false })
    const r = g.enroll(g.l0, { role: 'admin', time: T0 + 20, certify: false })
    const base = [...g.events]
    const p = g.enroll(q, { role: 'admin', depth: 5, time: T0 + 100, certify: false })
    const w = g.enroll(p, { role: 'device', time: T0 + 200, certify: false })
    const pAuth = g.events.find(e => e.event.type === 'authorize' && g.subjectCn(e) === p)!
    const wAuth = g.events.find(e => e.event.type === 'authorize' && g.subjectCn(e) === w)!
    const pTwin = g.twinAuthorize(pAuth, r, T0 + 90)
    const wTwin = g.twinAuthorize(wAuth, r, T0 + 250)
    const A = [...base, pAuth, wAuth],
      B = [...base, wTwin],
      C = [...base, pTwin]
    const ids = (l: Ledger): string => l.state.ids().slice().sort().join()
    const flat = mergeLedgers(nodeCrypto, [A, B, C]).ledger
    const left = mergeLedgers(nodeCrypto, [handOver(mergeLedgers(nodeCrypto, [A, B])), C]).ledger
    t.ok(flat.state.has(wTwin.idHex), "all at once: W's twin binds W, since W's own parent lost its conflict")
    t.equal(ids(left), ids(flat), 'merge(merge(A, B), C) = merge(A, B, C)')
  }
})

t.test('checking a binding costs polynomial work in the number of revocations on its lineage', async t => {
  const f = LedgerFleet.create({ tag: 'bug5' })
  const chain = [f.l0]
  for (let i = 1; i <= 8; i++)
    chain.push(f.enroll(chain[i - 1]!, { role: 'admin', depth: 15 - i, time: T0 + i * 10, certify: false }))
  let time = T0 + 1000
  const k = 6
  for (let i = 1; i <= 8; i++)
    for (let j = 0; j < k; j++)
      f.revoke(chain[i - 1]!, chain[i]!, { reason: 'retired', effective: T0 + 10_000_000 + j, time: time++ })
  const s = f.ledger.state
  let calls = 0
  const original = s.invalidAt.bind(s)
  s.invalidAt = (b, tm, d) => {
    calls++
    return original(b, tm, d)
  }
  s.invalidAt(f.binding(chain[8]!), T0 + 5000)
  t.ok(calls < 2000, `invalidAt calls for one check: ${calls} (48 revocations on an 8-hop lineage)`)
})

t.test('both providers refuse an Ed25519 signature with a non-canonical S (RFC 8032 §5.1.7)', async t => {
  const { f, phone } = houseFleet('bug6')
  const e = f.sign(
    authorizeEvent(
      f.crypto,
      f.binding(phone),
      {
        spkiHash: f.bytes(32),
        ledgerKey: f.keyPair().publicKey,
        role: 'device',
        depth: 0,
        notAfter: T0 + YEAR,
        kind: 'lock',
        name: 'x',
        nonce: f.bytes(12),
      },
      T0 + 400,
    ),
    phone,
    false,
  )
  const top = decodeCbor(e.bytes) as CborValue[]
  const sig = Uint8Array.from(top[7] as Uint8Array)
  // S + L, little-endian, where L = 2^252 + 27742317777372353535851937790883648493
  const L = fromHex('edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010')
  let carry = 0
  for (let i = 0; i < 32; i++) {
    const v = sig[32 + i]! + L[i]! + carry
    sig[32 + i] = v & 0xff
    carry = v >> 8
  }
  top[7] = sig
  const malleated = encodeCbor(top)
  for (const crypto of [nodeCrypto, portableCrypto]) {
    const l = new Ledger(crypto)
    for (const x of f.events) l.ingest(x.bytes)
    t.equal(
      codeOf(() => l.ingest(malleated)),
      'BAD_SIGNATURE',
      `${crypto.name}: the malleated twin of a valid event is refused`,
    )
  }
})
