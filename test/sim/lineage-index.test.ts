// L0's lineage for a new device (broker/lineage.ts) reads each appended event once instead of walking the whole log
// on every enrollment; what it hands over must stay exactly what the walk handed over, as the log grows.
import t from 'tap'
import { toHex } from '../../agent/codec/bytes.ts'
import type { LedgerState } from '../../agent/ledger/state.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import { MAX_LINEAGE_BYTES, lineageFor } from '../../broker/lineage.ts'
import { LedgerFleet, T0 } from '../helpers/ledger-fleet.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'

/** The walk lineageFor replaced: the whole prefix when it fits, else genesis and the ancestors' events, closed under links. */
function walked(state: LedgerState, authorize: EncodedEvent): EncodedEvent[] {
  const end = state.log.findIndex(e => e.idHex === authorize.idHex)
  const prefix = state.log.slice(0, end < 0 ? state.log.length : end)
  if (prefix.reduce((n, e) => n + e.bytes.length, 0) <= MAX_LINEAGE_BYTES) return prefix
  const ancestors = new Set(state.lineage(state.cnOfLabel(authorize.event.issuer)))
  const kept = new Set<string>()
  return prefix.filter(e => {
    const ok =
      e.event.type === 'genesis' ||
      (ancestors.has(state.cnOfLabel(e.event.subject)) && e.event.links.every(l => kept.has(toHex(l))))
    if (ok) kept.add(e.idHex)
    return ok
  })
}

const ids = (events: EncodedEvent[]) => events.map(e => e.idHex)

/** L0 → `admins` admins → `members` members each → `leaves` devices each, certified, with policies (on leaves and on admins) and revocations between. */
function grow(f: LedgerFleet, admins: string[], members: string[], count: number, time: number): number {
  for (let i = 0; i < count; i++) {
    time += 10
    if (i % 7 === 0 || admins.length === 0)
      admins.push(f.enroll(f.l0, { role: 'admin', kind: 'laptop', name: `admin ${admins.length}`, time }))
    else if (i % 3 === 0)
      members.push(f.enroll(admins[i % admins.length]!, { role: 'member', kind: 'phone', name: `m${i}`, time }))
    else if (members.length > 0) {
      const parent = members[i % members.length]!
      const lock = f.enroll(parent, { role: 'device', kind: 'lock', name: `lock ${i}`, time })
      if (i % 11 === 0) f.policy(parent, lock, {}, time + 1)
      if (i % 13 === 0) f.revoke(parent, lock, { reason: 'retired', subtree: false, time: time + 2 })
    }
    // Events about ancestors after their children's authorize events: not part of those children's lineage.
    if (i % 17 === 0) f.policy(f.l0, admins[i % admins.length]!, {}, time + 3)
  }
  return time
}

t.test('the lineage of every authorize event matches the whole-log walk, before and past the byte cap', async t => {
  const f = LedgerFleet.create({ tag: 'lineage-index', time: T0 })
  const admins: string[] = [],
    members: string[] = []
  let time = T0 + 100
  let capped = 0,
    whole = 0
  const differ: string[] = []
  // Asked between growth spurts, so the index catches up on appended events rather than being built once.
  for (let round = 0; round < 6; round++) {
    time = grow(f, admins, members, 40, time)
    const state = f.ledger.state
    for (const e of state.log.filter(x => x.event.type === 'authorize')) {
      const got = lineageFor(state, e)
      if (ids(got).join() !== ids(walked(state, e)).join()) differ.push(`${e.idHex} at log size ${state.log.length}`)
      if (ids(got).join() === ids(state.log.slice(0, state.log.indexOf(e))).join()) whole++
      else capped++
    }
  }
  t.same(differ, [], 'no lineage differs from the walk')
  t.ok(whole > 0, `${whole} lineages are the whole prefix (under ${MAX_LINEAGE_BYTES} bytes)`)
  t.ok(capped > 0, `${capped} lineages are cut to the ancestors' events (the prefix is over the cap)`)
  const last = f.ledger.state.log.filter(x => x.event.type === 'authorize').at(-1)!
  const cut = lineageFor(f.ledger.state, last)
  t.ok(
    cut.length < f.ledger.state.log.length / 4,
    `the newest device gets ${cut.length} of ${f.ledger.state.log.length} events`,
  )
  t.equal(cut[0]!.event.type, 'genesis', 'the cut lineage starts at genesis')
})

t.test('an authorize event not yet in the log gets the lineage of the whole log, as before', async t => {
  const f = LedgerFleet.create({ tag: 'lineage-pending', time: T0 })
  const admins: string[] = [],
    members: string[] = []
  for (const count of [10, 200]) {
    grow(f, admins, members, count, T0 + 100 + count * 20)
    const { unsigned } = f.authorizeUnsigned(members[0]!, { role: 'device', kind: 'lock', name: 'pending' })
    const pending = f.sign(unsigned, members[0]!, false)
    t.same(ids(lineageFor(f.ledger.state, pending)), ids(walked(f.ledger.state, pending)), `after ${count} more steps`)
  }
})

t.test("a parent's rekey of a revoked child past the byte cap: the lineage holds the child's own events", async t => {
  const f = LedgerFleet.create({ tag: 'lineage-rekey', time: T0 })
  const admins: string[] = [],
    members: string[] = []
  let time = grow(f, admins, members, 240, T0 + 100)
  const child = members[1]!
  const parent = f.binding(child).parentCn!
  f.revoke(parent, child, { reason: 'compromised', time: (time += 10) })
  const rekey = f.rekey(parent, child, (time += 10))
  const state = f.ledger.state
  const lineage = lineageFor(state, rekey)
  t.ok(
    lineage.length < state.log.indexOf(rekey),
    `cut to ${lineage.length} of ${state.log.indexOf(rekey)} events: past the cap`,
  )
  t.ok(
    lineage.some(e => e.event.type === 'authorize' && state.cnOfLabel(e.event.subject) === child),
    "the child's authorize event, which the rekey links to",
  )
  // What the new device does with it (agent/gossip/enroll-session.ts): replay, then append the rekey.
  const replay = new Ledger(nodeCrypto)
  for (const e of lineage) replay.ingest(e, { now: time })
  replay.ingest(rekey, { now: time })
  t.equal(replay.state.currentBinding(child)?.id, rekey.idHex, "the new device's ledger takes the rekey")
  t.equal(replay.state.invalidAt(replay.state.currentBinding(child)!, time), undefined, 'under which it is valid')
})
