import t from 'tap'
import { readFileSync } from 'node:fs'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { portableCrypto } from '../../agent/portable/crypto.ts'
import { bytesEqual, fromHex, toHex } from '../../agent/codec/bytes.ts'
import { decodeCbor, encodeCbor, type CborValue } from '../../agent/codec/cbor.ts'
import { KinError } from '../../agent/errors.ts'
import { decodeHead, encodeHead, headId, signHead, type BlockHead } from '../../agent/ledger/head.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import { PersistentLedger } from '../../agent/ledger/persistent.ts'
import type { LedgerState } from '../../agent/ledger/state.ts'
import type { Miner } from '../../agent/ledger/miner.ts'
import {
  buildBundle,
  decodeBundle,
  encodeBundle,
  lineageEvents,
  mergeBundleInto,
  verifyAuditPathBundle,
  verifyBundle,
  type BundleAnchor,
  type ProofBundle,
} from '../../agent/ledger/bundle.ts'
import { buildSyncResponse, encodeSyncResponse } from '../../agent/ledger/sync.ts'
import { lineageRefusal } from '../../agent/access/lineage-stage.ts'
import type { LedgerFleet } from '../helpers/ledger-fleet.ts'
import { T0, deepFleet, memoryStorage, minerKeyOf, minerSecret, openMiner, openReplica } from './helpers.ts'
import { mineInParts } from '../../sim/memory-miner.ts'

const NOW = T0 + 10_000

async function sealedMiner(
  f: LedgerFleet,
  cuts: number[] = [f.events.length],
): Promise<{ miner: Miner; heads: BlockHead[] }> {
  const miner = await openMiner(f, memoryStorage())
  return { miner, heads: await mineInParts(miner, f.events, cuts, NOW, { sealAt: i => NOW + i }) }
}

function anchorOf(f: LedgerFleet, extra: Partial<BundleAnchor> = {}): BundleAnchor {
  return { minerKey: minerKeyOf(f), genesisId: f.events[0]!.idHex, ...extra }
}

function codeOf(fn: () => unknown): string {
  try {
    fn()
    return 'accepted'
  } catch (e) {
    return e instanceof KinError
      ? e.code
      : `NOT_A_KIN_ERROR: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`
  }
}

/** The verified facts the access stages read about `cn`, in a comparable form. */
function factsOf(state: LedgerState, cn: string, now: number): object {
  const b = state.currentBinding(cn)!
  return {
    id: b.id,
    key: toHex(b.ledgerKey),
    spki: toHex(b.spkiHash),
    role: b.role,
    parent: b.parentCn,
    certs: b.certHashes,
    revocations: b.revocations.map(r => r.eventId),
    invalid: state.invalidAt(b, now)?.code,
    lineage: state.lineageOf(b).map(x => `${x.cn}:${x.id}:${x.certHashes.length}:${x.revocations.length}`),
    policies: state.lineage(cn).map(c => state.policies(c).map(p => p.eventId)),
  }
}

const { f: deep, chain, siblings } = deepFleet()

t.test("bundles at depth 2, 4 and 8 verify and give the access stages what the miner's ledger gives them", async t => {
  const { miner, heads } = await sealedMiner(deep)
  const head = heads[0]!
  for (const depth of [2, 4, 8]) {
    const cn = chain[depth]!
    const bundle = buildBundle(miner, cn)
    const bytes = encodeBundle(bundle)
    t.same(decodeBundle(bytes), bundle, 'decode(encode(bundle)) = bundle')
    for (const crypto of [nodeCrypto, portableCrypto]) {
      const v = verifyBundle(crypto, bytes, anchorOf(deep), NOW)
      t.equal(v.anchoring, 'unanchored')
      t.equal(v.headId, toHex(headId(nodeCrypto, head)))
      t.equal(v.headAge, NOW - head.time)
      t.same(
        factsOf(v.state, cn, NOW),
        factsOf(miner.ledger.ledger.state, cn, NOW),
        `depth ${depth} (${crypto.name}): binding, certificates, revocations, lineage and policies as the miner has them`,
      )
      t.equal(
        lineageRefusal(v.state, v.state.currentBinding(cn)!),
        undefined,
        'the lineage stage can follow it to genesis',
      )
    }
    const types = bundle.entries.map(e => decodeCbor(e.eventBytes) as CborValue[]).map(e => e[1])
    const count = (type: number) => types.filter(x => x === type).length
    t.equal(count(0), 1, 'genesis')
    t.equal(count(1), depth, 'one authorize per lineage member below L0')
    t.equal(count(4), depth >= 3 ? 1 : 0, 'the rekey of level 3 when it is on the lineage')
    t.equal(count(2), depth + (depth >= 3 ? 1 : 0), "each binding's certified event")
    t.equal(count(5), depth >= 2 ? 1 : 0, 'the policy on level 2')
    t.equal(count(3), 0, 'no revocation touches this lineage')
    const siblingLabels = new Set(siblings.map(s => s.split('.')[0]))
    const state = miner.ledger.ledger.state
    t.notOk(
      bundle.entries.some(e =>
        siblingLabels.has(state.cnOfLabel((decodeCbor(e.eventBytes) as Uint8Array[])[2]!).split('.')[0]!),
      ),
      'nothing about siblings',
    )
    t.ok(
      bundle.entries.every(e => e.proof.length <= Math.ceil(Math.log2(head.treeSize)) + 1),
      'audit paths of at most ⌈log2 n⌉ hashes',
    )
    t.comment(`depth ${depth}: ${bundle.entries.length} events, ${bytes.length} bytes over a log of ${head.treeSize}`)
  }
})

t.test('the offline rule: a known head needs the same head or a consistency proof', async t => {
  const cuts = [40, 70, deep.events.length]
  const { miner, heads } = await sealedMiner(deep, cuts)
  const [h0, h1, h2] = heads as [BlockHead, BlockHead, BlockHead]
  const cn = chain[2]!
  const plain = encodeBundle(buildBundle(miner, cn))

  t.equal(verifyBundle(nodeCrypto, plain, anchorOf(deep, { knownHead: h2 }), NOW).anchoring, 'same')
  t.equal(
    codeOf(() => verifyBundle(nodeCrypto, plain, anchorOf(deep, { knownHead: h0 }), NOW)),
    'HEAD_UNPROVEN',
    'an older known head and no proof: fail closed',
  )
  t.equal(
    verifyBundle(
      nodeCrypto,
      plain,
      anchorOf(deep, { knownHead: h0, consistencyProof: miner.consistencyProof(h0.treeSize, h2.treeSize) }),
      NOW,
    ).anchoring,
    'consistent',
    'a proof from the verifier (e.g. from its own sync)',
  )

  const forLock = buildBundle(miner, cn, { knownTreeSize: h0.treeSize })
  t.equal(forLock.consistency!.treeSize, h0.treeSize)
  const forLockBytes = encodeBundle(forLock)
  t.equal((decodeCbor(forLockBytes) as CborValue[]).length, 4, 'the proof travels as the fourth item')
  t.equal(
    verifyBundle(nodeCrypto, forLockBytes, anchorOf(deep, { knownHead: h0 }), NOW).anchoring,
    'consistent',
    "a bundle built for the lock's tree size carries the proof",
  )
  t.equal(
    codeOf(() => verifyBundle(nodeCrypto, forLockBytes, anchorOf(deep, { knownHead: h1 }), NOW)),
    'HEAD_UNPROVEN',
    'a proof for another tree size does not count',
  )

  // The verifier is ahead of the bundle: a bundle signed at h1, the lock holding h2.
  const older = buildBundle({ ...miner.bundleSource(), head: h1, headBytes: encodeHead(h1) }, cn, {
    knownTreeSize: h2.treeSize,
  })
  t.equal(verifyBundle(nodeCrypto, encodeBundle(older), anchorOf(deep, { knownHead: h2 }), NOW).anchoring, 'consistent')
  t.equal(
    verifyBundle(nodeCrypto, encodeBundle({ ...older, consistency: undefined }), anchorOf(deep), NOW).anchoring,
    'unanchored',
  )

  // Contradictions: a proof that does not hold, a fork at the known height, a successor naming another head.
  const wrongProof = miner.consistencyProof(h1.treeSize, h2.treeSize)
  t.equal(
    codeOf(() => verifyBundle(nodeCrypto, plain, anchorOf(deep, { knownHead: h0, consistencyProof: wrongProof }), NOW)),
    'HEAD_INCONSISTENT',
  )
  const forkAtH2 = signHead(nodeCrypto, { ...h2, time: h2.time + 1 }, minerSecret(deep))
  t.equal(
    codeOf(() => verifyBundle(nodeCrypto, plain, anchorOf(deep, { knownHead: forkAtH2 }), NOW)),
    'HEAD_FORK',
    'two heads at one height',
  )
  const otherH1 = signHead(nodeCrypto, { ...h1, time: h1.time + 1 }, minerSecret(deep))
  t.equal(
    codeOf(() => verifyBundle(nodeCrypto, plain, anchorOf(deep, { knownHead: otherH1 }), NOW)),
    'HEAD_FORK',
    'h2 does not name the known h1',
  )
  const beyond = signHead(
    nodeCrypto,
    { ...h2, height: h2.height + 3, prevHeadId: new Uint8Array(32).fill(1), treeSize: h0.treeSize, root: h0.root },
    minerSecret(deep),
  )
  t.equal(
    codeOf(() => verifyBundle(nodeCrypto, plain, anchorOf(deep, { knownHead: beyond }), NOW)),
    'HEAD_ROLLBACK',
    'a known later head with a smaller tree',
  )
})

t.test("the anchor: another fleet's genesis or miner key is refused", async t => {
  const { miner } = await sealedMiner(deep)
  const bytes = encodeBundle(buildBundle(miner, chain[4]!))
  const other = deepFleet({ tag: 'another fleet', others: 2 })
  const theirs = await sealedMiner(other.f)
  t.equal(
    codeOf(() => verifyBundle(nodeCrypto, bytes, anchorOf(other.f), NOW)),
    'HEAD_SIGNATURE',
    'their miner key did not sign our head',
  )
  t.equal(
    codeOf(() => verifyBundle(nodeCrypto, bytes, anchorOf(deep, { genesisId: other.f.events[0]!.idHex }), NOW)),
    'GENESIS_MISMATCH',
  )
  // Their bundle under a head our miner key signed: the genesis inside still names their miner key.
  const theirBundle = buildBundle(theirs.miner, other.chain[2]!)
  const resigned = signHead(nodeCrypto, theirBundle.head, minerSecret(deep))
  const smuggled = encodeBundle({ ...theirBundle, head: resigned, headBytes: encodeHead(resigned) })
  t.equal(
    codeOf(() => verifyBundle(nodeCrypto, smuggled, { minerKey: minerKeyOf(deep) }, NOW)),
    'GENESIS_MISMATCH',
  )
  t.throws(() => verifyBundle(nodeCrypto, bytes, { minerKey: new Uint8Array(31) }, NOW), RangeError)
})

t.test('what a bundle can and cannot show: a missing link is caught, an omitted leaf event is not', async t => {
  const revoked = deepFleet({ tag: 'revoked lineage', others: 5, revoke: 5 })
  const { miner } = await sealedMiner(revoked.f)
  const cn = revoked.chain[7]!
  const bundle = buildBundle(miner, cn)
  const full = verifyBundle(nodeCrypto, encodeBundle(bundle), anchorOf(revoked.f), NOW)
  t.equal(
    full.state.invalidAt(full.state.currentBinding(cn)!, NOW)?.code,
    'ANCESTOR_REVOKED',
    'the revocation of level 5 is in the bundle',
  )
  t.same(factsOf(full.state, cn, NOW), factsOf(miner.ledger.ledger.state, cn, NOW))

  const without = (type: number, subject?: string): ProofBundle => ({
    ...bundle,
    entries: bundle.entries.filter(e => {
      const ev = decodeCbor(e.eventBytes) as CborValue[]
      return !(
        ev[1] === type &&
        (subject === undefined || miner.ledger.ledger.state.cnOfLabel(ev[2] as Uint8Array) === subject)
      )
    }),
  })
  t.equal(
    codeOf(() => verifyBundle(nodeCrypto, encodeBundle(without(1, revoked.chain[3]!)), anchorOf(revoked.f), NOW)),
    'BUNDLE_INCOMPLETE',
    'an authorize others build on',
  )
  // The limit documented in bundle.ts: inclusion proves presence, not absence.
  const stripped = verifyBundle(nodeCrypto, encodeBundle(without(3)), anchorOf(revoked.f), NOW)
  t.equal(
    stripped.state.invalidAt(stripped.state.currentBinding(cn)!, NOW),
    undefined,
    'a presenter can leave its revocation out',
  )
  // …which is why a device merges bundles into its own ledger: a revocation it knows still applies.
  const lock = new Ledger(nodeCrypto)
  lock.ingestMany(
    miner.ledger.ledger.state.log
      .slice(0, 40)
      .concat(miner.ledger.ledger.state.log.filter(e => e.event.type === 'revoke')),
  )
  const merged = await mergeBundleInto(lock, stripped)
  t.same(merged.refused, [])
  t.equal(
    lock.state.invalidAt(lock.state.currentBinding(cn)!, NOW)?.code,
    'ANCESTOR_REVOKED',
    "the lock's own knowledge of the revocation wins",
  )
})

t.test('building: unknown CNs, unsealed events and a miner without heads are refused with codes', async t => {
  const { f, chain: c } = deepFleet({ tag: 'building', others: 1 })
  const miner = await openMiner(f, memoryStorage())
  await miner.submit(
    f.events.map(e => e.bytes),
    NOW,
  )
  t.equal(
    codeOf(() => buildBundle(miner, c[3]!)),
    'HEAD_MISSING',
  )
  await miner.seal(NOW)
  t.equal(
    codeOf(() => buildBundle(miner, `aaaaaaaaaaaaaaaa.${miner.ledger.ledger.state.domain}`)),
    'BUNDLE_INCOMPLETE',
  )
  const late = f.enroll(c[8 - 1]!, { role: 'device', name: 'unsealed', time: T0 + 9500 })
  await miner.submit(
    f.events.slice(-2).map(e => e.bytes),
    NOW,
  )
  t.equal(
    codeOf(() => buildBundle(miner, late)),
    'BUNDLE_INCOMPLETE',
    'not covered by the head yet',
  )
  await miner.seal(NOW + 1)
  t.equal(
    verifyBundle(nodeCrypto, encodeBundle(buildBundle(miner, late)), anchorOf(f), NOW).state.lineage(late).length,
    9,
  )
  // The generic selection, without the miner's subject index, picks the same events.
  const src = miner.bundleSource()
  const indexed = lineageEvents(src, late)
    .map(e => e.idHex)
    .sort()
  const scanned = lineageEvents({ state: src.state }, late)
    .map(e => e.idHex)
    .sort()
  t.same(scanned, indexed)
})

t.test(
  'a replica builds the very bundle the miner builds at the same head; devices merge bundles they keep',
  async t => {
    const { miner } = await sealedMiner(deep)
    const device = memoryStorage()
    const replica = await openReplica(device)
    await replica.applySyncResponse(
      encodeSyncResponse(buildSyncResponse(miner, replica.syncRequest(), 1024)),
      minerKeyOf(deep),
      NOW,
    )
    const empty = await openReplica(memoryStorage())
    t.equal(
      codeOf(() => buildBundle(empty, chain[6]!)),
      'HEAD_MISSING',
      'a replica without a head has nothing to prove against',
    )
    const fromReplica = encodeBundle(buildBundle(replica, chain[6]!))
    t.ok(bytesEqual(fromReplica, encodeBundle(buildBundle(miner, chain[6]!))))

    // A small device keeping bundles, not the ledger: its own, then a peer's, merged into one persistent ledger.
    const small = memoryStorage()
    const kept = await PersistentLedger.open(nodeCrypto, await small.openAppendFile('ledger.cbor'))
    const own = verifyBundle(nodeCrypto, encodeBundle(buildBundle(miner, siblings[3]!)), anchorOf(deep), NOW)
    const peer = verifyBundle(nodeCrypto, fromReplica, anchorOf(deep), NOW)
    const r1 = await mergeBundleInto(kept, own)
    const r2 = await mergeBundleInto(kept, peer)
    t.equal(r1.accepted.length, own.state.log.length)
    t.equal(
      r2.accepted.length + own.state.log.filter(e => peer.state.has(e.idHex)).length,
      peer.state.log.length,
      'shared ancestors are not added twice',
    )
    t.same([...r1.refused, ...r2.refused], [])
    const state = kept.ledger.state
    const common = state.lineage(chain[6]!).find(cn => state.lineage(siblings[3]!).includes(cn))
    t.equal(common, chain[3], 'both lineages meet at level 3 in the merged ledger')
  },
)

t.test('bundle codec: strict decoding with coded errors', async t => {
  const { miner } = await sealedMiner(deep)
  const bundle = buildBundle(miner, chain[2]!)
  const items = decodeCbor(encodeBundle(bundle)) as CborValue[]
  const variant = (f: (v: CborValue[]) => CborValue): Uint8Array => encodeCbor(f(structuredClone(items)))
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['version 3', variant(v => [3, ...v.slice(1)]), /UNKNOWN_VERSION/],
    ['version 2 with a version 1 body', variant(v => [2, ...v.slice(1)]), /DECODE_SHAPE/],
    ['two items', variant(v => v.slice(0, 2)), /DECODE_SHAPE/],
    ['five items', variant(v => [...v, [0, []], 1]), /DECODE_SHAPE/],
    ['no entries', variant(v => [v[0]!, v[1]!, []]), /DECODE_SHAPE/],
    ['entries out of order', variant(v => [v[0]!, v[1]!, [...(v[2] as CborValue[])].reverse()]), /DECODE_FIELD/],
    [
      'duplicate entry',
      variant(v => [v[0]!, v[1]!, [(v[2] as CborValue[])[0]!, ...(v[2] as CborValue[])]]),
      /DECODE_FIELD/,
    ],
    [
      'leaf past the head',
      variant(v => {
        const e = v[2] as CborValue[][]
        e[e.length - 1]![1] = bundle.head.treeSize
        return v
      }),
      /DECODE_FIELD/,
    ],
    [
      'short proof hash',
      variant(v => {
        ;(v[2] as CborValue[][])[1]![2] = [new Uint8Array(31)]
        return v
      }),
      /DECODE_FIELD/,
    ],
    ['consistency of one item', variant(v => [...v, [3]]), /DECODE_SHAPE/],
    ['head as text', variant(v => [v[0]!, 'head', v[2]!]), /DECODE_FIELD/],
  ]
  for (const [name, bytes, code] of cases) {
    t.match(
      codeOf(() => decodeBundle(bytes)),
      code,
      name,
    )
    t.match(
      codeOf(() => verifyBundle(nodeCrypto, bytes, anchorOf(deep), NOW)),
      code,
      `${name} (through verifyBundle)`,
    )
  }
  // The version 1 reader (verifyAuditPathBundle) refuses a compact bundle as UNKNOWN_VERSION; verifyBundle, which
  // kin-core runs too, reads both.
  const compact = encodeBundle(buildBundle(miner, chain[2]!, { compact: true }))
  t.equal(
    codeOf(() => verifyAuditPathBundle(nodeCrypto, compact, anchorOf(deep), NOW)),
    'UNKNOWN_VERSION',
    'a version 2 bundle to the version 1 reader',
  )
  t.equal(
    verifyAuditPathBundle(nodeCrypto, encodeBundle(bundle), anchorOf(deep), NOW).state.log.length,
    verifyBundle(nodeCrypto, compact, anchorOf(deep), NOW).state.log.length,
    'both readers prove the same events',
  )
})

t.test('vectors: a small deterministic bundle (test/vectors/bundle/bundle.json)', async t => {
  const vectors = JSON.parse(readFileSync(new URL('../vectors/bundle/bundle.json', import.meta.url), 'utf8'))
  t.equal(vectors.vectors.length, 2)
  for (const v of vectors.vectors) {
    const bytes = fromHex(v.bundle)
    for (const crypto of [nodeCrypto, portableCrypto]) {
      const anchor: BundleAnchor = { minerKey: fromHex(v.anchor.minerKey), genesisId: v.anchor.genesisId }
      if (v.anchor.knownHead !== undefined) anchor.knownHead = decodeHead(fromHex(v.anchor.knownHead))
      const out = verifyBundle(crypto, bytes, anchor, v.now)
      t.equal(out.anchoring, v.expect.anchoring, `${v.name} (${crypto.name})`)
      t.equal(out.headId, v.expect.headId)
      t.same(
        out.state.log.map(e => e.idHex),
        v.expect.eventIds,
      )
      t.same(out.state.lineage(v.cn), v.expect.lineage)
    }
    t.same(bytes.length, v.bytes)
  }
  // The generator is deterministic: the same fleet gives the same bytes.
  const { vectorBundles } = await import('../vectors/bundle/generate.ts')
  const again = await vectorBundles()
  t.same(
    again.map(x => x.bundle),
    vectors.vectors.map((x: { bundle: string }) => x.bundle),
    'regenerated bytes are identical',
  )
})
