// Proof bundles in dist/kin-core.js under QuickJS (1 MiB heap, 256 KiB stack): a lock that keeps only its own bundle
// decides on a guest from the bundle the guest presents, as the full agent does with the whole ledger; forged
// bundles are refused; and what a bundle cannot prove is shown, not hidden.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import {
  buildBundle,
  decodeBundle,
  encodeBundle,
  type BundleAnchor,
  type ProofBundle,
} from '../../agent/ledger/bundle.ts'
import { encodeHead, signHead } from '../../agent/ledger/head.ts'
import { CoreVm, HEAP_PEAK_BUDGET, SMALL_DEVICE } from './_quickjs.ts'
import { comparable, footprintHouse, idOf, type Comparable } from './_house.ts'

const house = await footprintHouse()
const { pf, now, lock, stolen, guest, anchor } = house

const rewrite = (bytes: Uint8Array, change: (b: ProofBundle) => ProofBundle): Uint8Array =>
  encodeBundle(change(decodeBundle(bytes)))

// The lock verifies its own bundle once and keeps it; each peer's bundle is verified when it is presented.
const KEEP_OWN = `globalThis.own = kinCore.verifyBundle(input.own, input.anchor, input.now); return own.state.log.length`
const DECIDE = `
  const peer = kinCore.verifyBundle(input.peer, input.anchor, input.now)
  const state = kinCore.combineBundles([own, peer])
  const d = kinCore.decide({ certificate: input.certificate, action: input.action }, state, input.now,
    { self: input.self, root: input.root, lastHeadTime: Math.min(own.head.time, peer.head.time) })
  return { allow: d.allow, code: d.code, path: d.path, hops: d.hops ?? null, commonAncestor: d.commonAncestor ?? null, peer: d.peer ?? null, retry: d.retry, reason: d.reason,
    anchoring: peer.anchoring, events: state.log.length, headAge: peer.headAge }
`
type BundleDecision = Comparable & { reason: string; anchoring: string; events: number; headAge: number }

const vm = await CoreVm.load(SMALL_DEVICE)
t.teardown(() => vm.dispose())
const ownEvents = vm.value<number>(KEEP_OWN, { own: house.bundleOf(lock.cn), anchor, now })

function decideFromBundle(peerBundle: Uint8Array, certificate: Uint8Array, action: string, at = now): BundleDecision {
  return vm.value<BundleDecision>(DECIDE, {
    peer: peerBundle,
    anchor,
    now: at,
    certificate,
    action,
    self: lock.cn,
    root: pf.fleet.root.der,
  })
}

t.test('the lock decides from its own bundle and the one the guest presents, as the full agent does', async t => {
  t.ok(
    ownEvents > 0 && ownEvents < pf.l0Ledger.state.log.length,
    `the lock keeps ${ownEvents} of the ledger's ${pf.l0Ledger.state.log.length} events`,
  )
  const { reason, anchoring, events, headAge, ...decision } = decideFromBundle(
    house.bundleOf(guest.cn),
    guest.certificate.der,
    'unlock',
    now + 30,
  )
  t.same(
    decision,
    comparable(house.v8Decision(guest.certificate, lock.cn, 'unlock', now + 30)),
    `same decision as with the whole ledger: ${reason}`,
  )
  t.equal(decision.code, 'ALLOW')
  t.equal(anchoring, 'unanchored', 'no known head was given')
  t.equal(headAge, 30)
  t.ok(events < pf.l0Ledger.state.log.length, `the two bundles hold ${events} events`)

  const anchored = vm.value<string>(
    `
    return kinCore.verifyBundle(input.peer, Object.assign({}, input.anchor, { knownHead: kinCore.decodeHead(input.head) }), input.now).anchoring
  `,
    { peer: house.bundleOf(guest.cn), anchor, now, head: encodeHead(house.head) },
  )
  t.equal(anchored, 'same', 'with the head the lock holds, the bundle is anchored to it')
})

// The compact bundles (version 2) `kin ledger bundle` writes, inside QuickJS: the guest presents one, the lock decides
// as it does on version 1; and the shared vectors (test/vectors/bundle/compact.json) give what the Node path gives.
t.test(
  'compact bundles (version 2): the lock decides on them in QuickJS, and the vectors verify as on Node',
  async t => {
    const compact = encodeBundle(buildBundle(house.miner, guest.cn, { compact: true }))
    t.ok(compact.length < house.bundleOf(guest.cn).length, `the compact bundle is ${compact.length} bytes`)
    const { reason, anchoring, events, headAge, ...decision } = decideFromBundle(
      compact,
      guest.certificate.der,
      'unlock',
      now + 30,
    )
    t.same(
      decision,
      comparable(house.v8Decision(guest.certificate, lock.cn, 'unlock', now + 30)),
      `same decision as with the whole ledger: ${reason}`,
    )
    t.equal(decision.code, 'ALLOW')
    const fromHex = (h: string) => new Uint8Array(Buffer.from(h, 'hex'))
    const file = JSON.parse(readFileSync(new URL('../vectors/bundle/compact.json', import.meta.url), 'utf8')) as {
      vectors: {
        name: string
        kind: string
        now: number
        bytes: string
        anchor: Record<string, string>
        expect: object
      }[]
    }
    const bundles = file.vectors.filter(v => v.kind === 'bundle')
    t.equal(bundles.length, 2, 'a standalone bundle and one negotiated for a known head')
    for (const v of bundles) {
      const out = vm.value<object>(
        `const a = { minerKey: input.minerKey, genesisId: input.genesisId }
      if (input.knownHead !== undefined) a.knownHead = kinCore.decodeHead(input.knownHead)
      const b = kinCore.verifyBundle(input.bytes, a, input.now)
      return { anchoring: b.anchoring, headId: b.headId, eventIds: b.state.log.map(e => e.idHex) }`,
        {
          bytes: fromHex(v.bytes),
          minerKey: fromHex(v.anchor['minerKey']!),
          genesisId: v.anchor['genesisId'],
          knownHead: v.anchor['knownHead'] === undefined ? undefined : fromHex(v.anchor['knownHead']),
          now: v.now,
        },
      )
      t.same(out, v.expect, `${v.name}: anchoring, head and events`)
    }
  },
)

t.test('a guest that presents nothing is a retryable missing proof, never an allow', async t => {
  const d = vm.value<Comparable & { reason: string }>(
    `
    const d = kinCore.decide({ certificate: input.certificate, action: 'unlock' }, own.state, input.now, { self: input.self, root: input.root })
    return { allow: d.allow, code: d.code, retry: d.retry, reason: d.reason }
  `,
    { certificate: guest.certificate.der, now, self: lock.cn, root: pf.fleet.root.der },
  )
  t.equal(d.allow, false)
  t.equal(d.code, 'ACCESS_MISSING_PROOF', d.reason)
  t.equal(d.retry, true)
})

t.test('forged bundles are refused inside QuickJS', async t => {
  const guestBundle = house.bundleOf(guest.cn)
  const verify = (bytes: Uint8Array, anchorFor: BundleAnchor = anchor) =>
    vm.run<number>('return kinCore.verifyBundle(input.bundle, input.anchor, input.now).state.log.length', {
      bundle: bytes,
      anchor: { ...anchorFor },
      now,
    })
  t.same(
    verify(guestBundle),
    { ok: true, value: decodeBundle(guestBundle).entries.length },
    'the honest bundle verifies',
  )

  const damagedProof = rewrite(guestBundle, b => ({
    ...b,
    entries: b.entries.map((e, i) =>
      i !== b.entries.length - 1
        ? e
        : { ...e, proof: e.proof.map((h, j) => (j !== 0 ? h : Uint8Array.from(h, (x, k) => (k === 0 ? x ^ 1 : x)))) },
    ),
  }))
  const evilSeed = nodeCrypto.randomBytes(32)
  const evilHead = signHead(nodeCrypto, house.head, evilSeed)
  const selfSigned = rewrite(guestBundle, b => ({ ...b, headBytes: encodeHead(evilHead), head: evilHead }))
  const cases: [string, Uint8Array, BundleAnchor, string][] = [
    ['an inclusion proof with one bit flipped', damagedProof, anchor, 'BUNDLE_INCLUSION'],
    ["a head signed by Eve's key instead of the miner's", selfSigned, anchor, 'HEAD_SIGNATURE'],
    [
      "Eve's head with Eve's key as the anchor, but the fleet's genesis",
      selfSigned,
      { ...anchor, minerKey: nodeCrypto.ed25519PublicKey(evilSeed) },
      'GENESIS_MISMATCH',
    ],
    ['bytes cut short', guestBundle.subarray(0, guestBundle.length - 40), anchor, 'DECODE_CBOR'],
  ]
  for (const [name, bytes, anchorFor, code] of cases) {
    const r = verify(bytes, anchorFor)
    t.equal(r.ok, false, `${name}: refused`)
    if (!r.ok) t.equal(r.code, code, `${name}: ${r.message}`)
  }
})

// agent/ledger/bundle.ts: inclusion proves presence, not absence. A presenter can leave a revocation out of its own
// bundle and the proofs of what remains still hold. What catches it is a fuller view (the lock's own synced ledger,
// a sync with the miner); kin-core offers nothing more here than the head's age (policy maxHeadAge).
t.test('what a bundle cannot prove: a revocation the presenter leaves out', async t => {
  const honest = house.bundleOf(stolen.cn)
  const revokeId = pf.l0Ledger.state.log.find(e => e.event.type === 'revoke')!.idHex
  const trimmed = rewrite(honest, b => ({ ...b, entries: b.entries.filter(e => idOf(e.eventBytes) !== revokeId) }))
  t.equal(
    decodeBundle(trimmed).entries.length,
    decodeBundle(honest).entries.length - 1,
    'the revoke was in the honest bundle and is gone',
  )
  const fromHonest = decideFromBundle(honest, stolen.certificate.der, 'view')
  t.equal(fromHonest.code, 'ACCESS_REVOKED', fromHonest.reason)
  const fromTrimmed = decideFromBundle(trimmed, stolen.certificate.der, 'view')
  t.equal(fromTrimmed.code, 'ALLOW', 'the trimmed bundle verifies and the lock, knowing nothing else, allows')
  t.equal(
    house.v8Decision(stolen.certificate, lock.cn, 'view').code,
    'ACCESS_REVOKED',
    'the lock with its own synced ledger refuses',
  )
})

// The heap's high-water mark, measured outside the engine (_quickjs.ts explains why QuickJS's own limit is no byte
// count in its wasm build): loading kin-core and everything above, within 1 MiB.
t.test('the engine stayed inside its limits', async t => {
  const m = vm.memory()
  t.ok(
    m.heapPeak > 0 && m.heapPeak <= HEAP_PEAK_BUDGET,
    `heap peak ${m.heapPeak} bytes of ${HEAP_PEAK_BUDGET} (live now: ${m.memory_used_size})`,
  )
  t.equal(vm.value('return 1 + 1'), 2, 'the runtime is still healthy after all of the above')
})
