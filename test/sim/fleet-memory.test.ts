import t from 'tap'
import { toHex } from '../../agent/codec/bytes.ts'
import { readEvent } from '../../agent/ledger/event.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import { MerkleTree, merkleRootOfIds } from '../../agent/ledger/merkle.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { LedgerFleet, T0 } from '../helpers/ledger-fleet.ts'

// A replica keeps accepted events compactly (agent/ledger/event.ts, readEvent: one buffer per event): the same values, fewer objects.
t.test(
  'an accepted event keeps one buffer; its decoded fields are views with the decoded values; ids and keys are the same strings',
  async t => {
    const f = LedgerFleet.create({ tag: 'fleet-memory', time: T0 })
    const parents = [f.l0]
    for (let i = 0; i < 40; i++)
      parents.push(
        f.enroll(parents[Math.floor(i / 4)]!, { role: i < 10 ? 'admin' : 'device', kind: 'lock', name: `lock ${i}` }),
      )
    f.revoke(parents[2]!, parents[12]!, { reason: 'retired' })
    f.rekey(parents[4]!, parents[20]!)
    const replica = new Ledger(nodeCrypto)
    for (const e of f.events) replica.ingest(Uint8Array.from(e.bytes))
    t.equal(replica.size, f.events.length, 'every event accepted')
    for (const [i, e] of replica.state.log.entries()) {
      const fresh = readEvent(nodeCrypto, Uint8Array.from(f.events[i]!.bytes))
      t.same(e.event, fresh.event, `${e.event.type} ${i}: the decoded event is unchanged`)
      t.same(e.bytes, fresh.bytes, `${i}: bytes`)
      t.equal(e.idHex, fresh.idHex, `${i}: hex id`)
      t.equal(e.idHex, toHex(e.id), `${i}: hex id of the id`)
      t.equal(e.id.buffer, e.bytes.buffer, `${i}: id and bytes share one buffer`)
      const views = [e.event.subject, e.event.issuer, e.event.signature, ...e.event.links]
      t.ok(
        views.every(v => v.buffer === e.bytes.buffer),
        `${i}: labels, links and signature are views into it`,
      )
    }
    for (const [cn, list] of replica.state.bindingsByCn) {
      t.same(
        list.map(b => b.cn),
        list.map(() => cn),
        `${cn}: bindings under their CN`,
      )
      t.same(replica.state.lineage(cn), f.ledger.state.lineage(cn), `${cn}: the same lineage as the builder's ledger`)
      t.same(
        list.map(b => [b.label, b.certHashes, b.revocations.length]),
        f.ledger.state.bindingsByCn.get(cn)!.map(b => [b.label, b.certHashes, b.revocations.length]),
        `${cn}: labels, certificate hashes and revocations as in the builder's ledger`,
      )
    }
    t.same([...replica.state.usedNonces].sort(), [...f.ledger.state.usedNonces].sort(), 'the same used nonces')
    // Re-ingesting the compacted events (as a replica's rewrite does) keeps them as they are.
    const again = new Ledger(nodeCrypto)
    for (const e of replica.state.log) again.ingest(e, { trustSignatures: true })
    t.equal(again.state.log[5], replica.state.log[5], 'the same event objects')
    t.equal(again.state.log[5]!.bytes, replica.state.log[5]!.bytes, 'bytes not copied twice')
  },
)

t.test('the Merkle tree in one buffer per level answers as the recursive definition', async t => {
  const ids = Array.from({ length: 300 }, (_, i) => nodeCrypto.sha256(Uint8Array.of(i & 255, i >> 8)))
  const tree = MerkleTree.fromIds(nodeCrypto, ids)
  for (const n of [1, 2, 3, 4, 5, 7, 8, 9, 63, 64, 65, 127, 128, 129, 255, 256, 257, 300])
    t.same(tree.root(n), merkleRootOfIds(nodeCrypto, ids, n), `root of ${n}`)
  const leaf = tree.leafHashAt(7)
  leaf.fill(0)
  t.notSame(tree.leafHashAt(7), leaf, 'leafHashAt hands out a copy')
  const sub = tree.subtreeHash(0, 256)
  sub.fill(0)
  t.same(tree.root(256), merkleRootOfIds(nodeCrypto, ids, 256), 'subtreeHash hands out a copy')
})
