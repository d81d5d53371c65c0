import t from 'tap'
import fc from 'fast-check'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import { canonicalOrder, mergeLedgers } from '../../agent/ledger/merge.ts'
import { certifiedEvent } from '../../agent/ledger/builders.ts'
import type { EncodedEvent, RevokeReasonName, RoleName } from '../../agent/ledger/types.ts'
import { LedgerFleet, T0, codeOf, houseFleet } from '../helpers/ledger-fleet.ts'

// ---- random fleets -----------------------------------------------------------------------------------------

type Op =
  | { kind: 'enroll'; parent: number; role: number; certify: boolean }
  | { kind: 'certify'; target: number }
  | { kind: 'revoke'; target: number; by: number; reason: number; subtree: boolean; delta: number; backdate: number }
  | { kind: 'rekey'; target: number }
  | { kind: 'twin'; target: number; parent: number; sameTime: boolean }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant('enroll' as const),
      parent: fc.nat(31),
      role: fc.nat(3),
      certify: fc.boolean(),
    }),
    weight: 6,
  },
  { arbitrary: fc.record({ kind: fc.constant('certify' as const), target: fc.nat(31) }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant('revoke' as const),
      target: fc.nat(31),
      by: fc.nat(7),
      reason: fc.nat(2),
      subtree: fc.boolean(),
      delta: fc.integer({ min: -40, max: 40 }),
      backdate: fc.nat(60),
    }),
    weight: 2,
  },
  { arbitrary: fc.record({ kind: fc.constant('rekey' as const), target: fc.nat(31) }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant('twin' as const),
      target: fc.nat(31),
      parent: fc.nat(31),
      sameTime: fc.boolean(),
    }),
    weight: 3,
  },
)

/**
 * How a random fleet may be shaped.
 * `retroactive`: revocations may be dated before events the fleet already accepted and take effect before they are
 * signed (voiding those events), and twins may bind delegating CNs (conflicts nested in conflicts). Both make acceptance
 * depend on events outside a replica: merge stays commutative and idempotent, but merging merges is no longer
 * associative, and a ledger that accepted events out of canonical order can lose some in a merge (docs/PROTOCOL.md §9, §14).
 */
interface Shape {
  retroactive: boolean
}

interface RandomFleet {
  f: LedgerFleet
  /** Every event made: those the fleet's own ledger accepted, then conflicting twins it never applied. */
  universe: EncodedEvent[]
  /** Hex ids of authorize events binding the same CN, per CN, for CNs with at least two. */
  conflicts: Map<string, string[]>
}

const ROLES: RoleName[] = ['admin', 'member', 'device', 'guest']
const REASONS: RevokeReasonName[] = ['compromised', 'lost', 'retired']

function buildFleet(ops: Op[], shape: Shape): RandomFleet {
  const f = LedgerFleet.create({ tag: 'merge-property' })
  const s = f.ledger.state
  const authorizeByCn = new Map<string, EncodedEvent>()
  const twins: EncodedEvent[] = []
  let clock = T0 + 100
  const members = (): string[] => [...s.bindingsByCn.keys()]
  const validNow = (cn: string): boolean => s.invalidAt(s.currentBinding(cn)!, clock) === undefined
  const delegators = (): string[] =>
    members().filter(cn => {
      const b = s.currentBinding(cn)!
      return (b.role === 'admin' || b.role === 'member') && b.depth >= 1 && validNow(cn)
    })
  const apply = (e: EncodedEvent): boolean => {
    if (codeOf(() => f.ledger.ingest(e)) !== undefined) return false
    f.events.push(e)
    return true
  }
  for (const op of ops) {
    clock += 10
    const all = members()
    switch (op.kind) {
      case 'enroll': {
        const parents = delegators()
        if (parents.length === 0) break
        const parentCn = parents[op.parent % parents.length]!
        const parent = s.currentBinding(parentCn)!
        const roles = parent.role === 'admin' ? ROLES : ROLES.slice(2)
        const role = roles[op.role % roles.length]!
        const depth = role === 'admin' || role === 'member' ? parent.depth - 1 : 0
        const cn = f.enroll(parentCn, { role, depth, time: clock, certify: false, notAfter: parent.notAfter })
        authorizeByCn.set(cn, s.event(s.bindingsByCn.get(cn)![0]!.id)!)
        // Certified one second later: refused (and left out) when a revocation takes effect in between.
        if (op.certify) apply(f.sign(certifiedEvent(f.binding(cn), f.bytes(32), clock + 1), cn, false))
        break
      }
      case 'certify': {
        const cn = all[op.target % all.length]!
        if (!validNow(cn)) break
        apply(f.sign(certifiedEvent(f.binding(cn), f.bytes(32), clock), cn, false))
        break
      }
      case 'revoke': {
        const candidates = all.filter(cn => cn !== f.l0)
        if (candidates.length === 0) break
        const target = candidates[op.target % candidates.length]!
        const line = s.lineage(target)
        const by = line[op.by % line.length]!
        if (!validNow(by)) break
        const time = shape.retroactive ? clock - op.backdate : clock
        const effective = time + (shape.retroactive ? op.delta : Math.abs(op.delta))
        apply(f.revoke(by, target, { reason: REASONS[op.reason]!, subtree: op.subtree, effective, time }, false))
        break
      }
      case 'rekey': {
        const candidates = all.filter(cn => cn !== f.l0)
        if (candidates.length === 0) break
        const target = candidates[op.target % candidates.length]!
        const parentCn = f.binding(target).parentCn!
        if (!validNow(parentCn)) break
        const { event, seed } = f.rekeyWithSeed(parentCn, target, clock, false)
        if (apply(event)) f.secrets.set(target, seed)
        break
      }
      case 'twin': {
        const originals = [...authorizeByCn.entries()].filter(
          ([cn]) => shape.retroactive || s.bindingsByCn.get(cn)![0]!.depth === 0,
        )
        const parents = delegators()
        if (originals.length === 0 || parents.length === 0) break
        const [, original] = originals[op.target % originals.length]!
        const parentCn = parents[op.parent % parents.length]!
        const twin = f.twinAuthorize(original, parentCn, op.sameTime ? original.event.time : clock)
        // Keep only twins that are valid in every respect but the conflict itself: CN_EXISTS is checked after every
        // issuer, role, depth, validity and label rule.
        const fresh = twin.idHex !== original.idHex && !twins.some(x => x.idHex === twin.idHex)
        if (fresh && codeOf(() => f.ledger.check(twin)) === 'CN_EXISTS') twins.push(twin)
        break
      }
    }
  }
  const universe = [...f.events, ...twins]
  const byCn = new Map<string, string[]>()
  for (const e of universe) {
    if (e.event.type !== 'authorize') continue
    const cn = f.subjectCn(e)
    byCn.set(cn, [...(byCn.get(cn) ?? []), e.idHex])
  }
  const conflicts = new Map([...byCn].filter(([, ids]) => ids.length > 1))
  return { f, universe, conflicts }
}

/** A replica: a ledger that received some of the events (always the genesis), as the canonical merge of them. */
function replicaOf(universe: EncodedEvent[], mask: boolean[]): EncodedEvent[] {
  const subset = universe.filter((_e, i) => i === 0 || mask[i % mask.length]!)
  return mergeLedgers(nodeCrypto, [subset]).ledger.state.log
}

const merged = (replicas: Array<Iterable<EncodedEvent>>, opts = {}): Ledger =>
  mergeLedgers(nodeCrypto, replicas, opts).ledger
const idSet = (l: Ledger | EncodedEvent[]): string[] =>
  (l instanceof Ledger ? l.state.ids() : l.map(e => e.idHex)).slice().sort()

function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs]
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map(p => [x, ...p]))
}

/** Operations and replica masks; the fleet is built inside each property so a counterexample prints as its recipe. */
const recipeArb: fc.Arbitrary<{ ops: Op[]; masks: boolean[][] }> = fc.record({
  ops: fc.array(opArb, { minLength: 4, maxLength: 18 }),
  masks: fc.array(fc.array(fc.boolean(), { minLength: 23, maxLength: 23 }), { minLength: 3, maxLength: 3 }),
})

function assertEqual<T>(actual: T, expected: T, what: string): void {
  const a = JSON.stringify(actual),
    b = JSON.stringify(expected)
  if (a !== b) throw new Error(`${what}:\n  got      ${a}\n  expected ${b}`)
}

// ---- properties --------------------------------------------------------------------------------------------

for (const retroactive of [false, true]) {
  const shape = { retroactive }
  const label = retroactive ? 'with retroactive revocations and nested conflicts' : 'with conflicts'

  t.test(`merge is commutative: every order of the replicas gives the same ledger (${label})`, async t => {
    t.doesNotThrow(() =>
      fc.assert(
        fc.property(recipeArb, ({ ops, masks }) => {
          const fleet = buildFleet(ops, shape)
          const replicas = masks.map(m => replicaOf(fleet.universe, m))
          const reference = merged(replicas).state.ids()
          for (const order of permutations(replicas))
            assertEqual(merged(order).state.ids(), reference, 'merge in another order')
          // Replicas that hand over their events in another order within themselves change nothing either.
          assertEqual(merged(replicas.map(r => [...r].reverse())).state.ids(), reference, 'replicas reversed inside')
        }),
        { numRuns: 40 },
      ),
    )
  })

  t.test(`merge is idempotent (${label})`, async t => {
    t.doesNotThrow(() =>
      fc.assert(
        fc.property(recipeArb, ({ ops, masks }) => {
          const fleet = buildFleet(ops, shape)
          const replicas = masks.map(m => replicaOf(fleet.universe, m))
          for (const r of replicas) assertEqual(idSet(merged([r, r])), idSet(r), 'a replica merged with itself')
          const m = merged(replicas)
          assertEqual(merged([m.state.log, m.state.log]).state.ids(), m.state.ids(), 'a merge merged with itself')
          assertEqual(
            merged([m.state.log, ...replicas]).state.ids(),
            m.state.ids(),
            'a merge merged again with its inputs',
          )
          // Without backdated events the fleet's own ledger was built in canonical order: merging it with itself gives it back.
          if (!retroactive)
            assertEqual(
              idSet(merged([fleet.f.ledger.state.log, fleet.f.ledger.state.log])),
              idSet(fleet.f.ledger),
              "the fleet's ledger merged with itself",
            )
        }),
        { numRuns: 40 },
      ),
    )
  })
}

t.test('merge is associative on accepted sets (conflicts between leaves, revocations never retroactive)', async t => {
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(recipeArb, ({ ops, masks }) => {
        const fleet = buildFleet(ops, { retroactive: false })
        const [a, b, c] = masks.map(m => replicaOf(fleet.universe, m)) as [
          EncodedEvent[],
          EncodedEvent[],
          EncodedEvent[],
        ]
        const left = merged([merged([a, b]).state.log, c])
        const right = merged([a, merged([b, c]).state.log])
        const flat = merged([a, b, c])
        assertEqual(idSet(left), idSet(flat), 'merge(merge(a, b), c) = merge(a, b, c)')
        assertEqual(idSet(right), idSet(flat), 'merge(a, merge(b, c)) = merge(a, b, c)')
      }),
      { numRuns: 40 },
    ),
  )
})

t.test(
  'conflicting authorize events: the first in canonical order wins, every other is reported CN_EXISTS',
  async t => {
    let groups = 0
    t.doesNotThrow(() =>
      fc.assert(
        fc.property(recipeArb, ({ ops }) => {
          const fleet = buildFleet(ops, { retroactive: false })
          const result = mergeLedgers(nodeCrypto, [fleet.universe])
          const s = result.ledger.state
          const refusedCode = new Map(result.refused.map(r => [r.idHex, r.code]))
          const order = canonicalOrder(fleet.universe).map(e => e.idHex)
          for (const [cn, ids] of fleet.conflicts) {
            groups++
            const byId = new Map(fleet.universe.map(e => [e.idHex, e]))
            const eligible = ids.filter(id => byId.get(id)!.event.links.every(l => s.has(toHex(l))))
            const accepted = ids.filter(id => s.has(id))
            if (eligible.length === 0) {
              assertEqual(accepted, [], `${cn}: no member could enter`)
              continue
            }
            const first = [...eligible].sort((x, y) => order.indexOf(x) - order.indexOf(y))[0]!
            assertEqual(accepted, [first], `${cn}: the canonical first wins`)
            assertEqual(
              s.currentBinding(cn)!.id === first || s.bindingsByCn.get(cn)![0]!.id === first,
              true,
              `${cn}: bound by the winner`,
            )
            for (const id of eligible)
              if (id !== first) assertEqual(refusedCode.get(id), 'CN_EXISTS', `${cn}: loser ${id.slice(0, 8)} reported`)
          }
        }),
        { numRuns: 40 },
      ),
    )
    t.ok(groups > 10, `conflict groups exercised: ${groups}`)
  },
)

t.test("with the miner's log, the conflicting event first in the miner's log wins", async t => {
  let decided = 0
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(recipeArb, fc.array(fc.nat(), { minLength: 64, maxLength: 64 }), ({ ops, masks }, keys) => {
        const fleet = buildFleet(ops, { retroactive: false })
        // The miner received every event in some arbitrary order; its log is what it accepted, in that order.
        const shuffled = fleet.universe
          .map((e, i) => ({ e, k: keys[i % keys.length]! * 64 + i }))
          .sort((x, y) => x.k - y.k)
          .map(x => x.e)
        const miner = new Ledger(nodeCrypto)
        miner.ingestMany(shuffled)
        const minerOrder = miner.state.ids()
        const replicas = masks.map(m => replicaOf(fleet.universe, m))
        const result = mergeLedgers(nodeCrypto, [...replicas, fleet.universe], { minerOrder })
        const s = result.ledger.state
        assertEqual(s.ids().slice(0, minerOrder.length), minerOrder, "the merge replays the miner's log first")
        for (const [cn, ids] of fleet.conflicts) {
          const inLog = ids.filter(id => miner.state.has(id))
          assertEqual(
            ids.filter(id => s.has(id)),
            inLog,
            `${cn}: the miner's choice stands`,
          )
          // A loser whose issuer's revocation comes before it in this order is refused for that first (§8.4), whatever its time.
          // A loser whose issuer's own binding never entered (refused itself) cannot be judged: it waits on that link,
          // out of the ledger all the same.
          const loserCodes = ['CN_EXISTS', 'ISSUER_REVOKED_IN_LOG']
          for (const id of ids) {
            if (inLog.includes(id) || inLog.length === 0) continue
            const reported = loserCodes.includes(result.refused.find(r => r.idHex === id)?.code ?? '')
            const waiting =
              result.pending.some(e => e.idHex === id) &&
              !s.has(toHex(result.pending.find(e => e.idHex === id)!.event.links[0]!))
            assertEqual(
              reported || waiting,
              true,
              `${cn}: loser reported, or waiting on an issuer binding that never entered`,
            )
          }
          if (inLog.length > 0) decided++
        }
      }),
      { numRuns: 30 },
    ),
  )
  t.ok(decided > 5, `conflicts decided by the miner: ${decided}`)
})

// ---- fixed cases -------------------------------------------------------------------------------------------

t.test('two parents authorize one CN: time decides, then id; the miner overrides both', async t => {
  const { f, laptop, lock } = houseFleet('merge-fixed')
  const original = f.events.find(e => e.event.type === 'authorize' && f.subjectCn(e) === lock)!
  const later = f.twinAuthorize(original, laptop, T0 + 5000)
  const sameTime = f.twinAuthorize(original, laptop, original.event.time)
  const base = f.events
  const r1 = mergeLedgers(nodeCrypto, [base, [later]])
  t.ok(r1.ledger.state.has(original.idHex), 'the earlier authorize wins')
  t.same(
    r1.refused.map(r => [r.idHex, r.code]),
    [[later.idHex, 'CN_EXISTS']],
    'the later one is reported',
  )
  const r2 = mergeLedgers(nodeCrypto, [[sameTime], base])
  const winner = original.idHex < sameTime.idHex ? original.idHex : sameTime.idHex
  t.ok(r2.ledger.state.has(winner), 'same time: the smaller id wins')
  t.equal(r2.ledger.state.bindingsByCn.get(lock)![0]!.id, winner)
  const r3 = mergeLedgers(nodeCrypto, [base, [later]], {
    minerOrder: [...base.filter(e => e.idHex !== original.idHex).map(e => e.idHex), later.idHex],
  })
  t.ok(r3.ledger.state.has(later.idHex), "the miner's log decides: its event wins though it is later")
  t.equal(r3.ledger.state.bindingsByCn.get(lock)![0]!.parentCn, laptop)
  t.equal(r3.refused.find(r => r.idHex === original.idHex)?.code, 'CN_EXISTS')
  t.ok(r3.pending.length > 0, "events that built on the loser (the lock's certified event) wait, never enter")
  t.notOk(r3.ledger.state.has(f.events.find(e => e.event.type === 'certified' && f.subjectCn(e) === lock)!.idHex))
})

t.test('merge validates: a forged event in one replica is refused with its code, the rest merges', async t => {
  const { f, phone } = houseFleet('merge-forged')
  const good = f.enroll(phone, { role: 'device', name: 'cam', time: T0 + 500 })
  const forged = f.sign(
    f.authorizeUnsigned(phone, { role: 'device', time: T0 + 600 }).unsigned,
    phone,
    false,
    new Uint8Array(32).fill(3),
  )
  const r = mergeLedgers(nodeCrypto, [f.events.slice(0, 5), f.events, [forged]])
  t.same(
    r.refused.map(x => x.code),
    ['BAD_SIGNATURE'],
  )
  t.same(idSet(r.ledger), idSet(f.events))
  t.ok(r.ledger.state.currentBinding(good))
})

t.test('merge with an empty replica and of nothing', async t => {
  const { f } = houseFleet('merge-empty')
  t.same(idSet(merged([f.events, []])), idSet(f.events))
  t.equal(merged([]).size, 0)
  const r = mergeLedgers(nodeCrypto, [f.events.slice(1)])
  t.equal(r.ledger.size, 0, 'without the genesis nothing enters')
  t.equal(r.pending.length, f.events.length - 1, 'and everything is reported pending')
})
