// The bundle tier (DESIGN.md "Small devices: three tiers") in dist/kin-core.js under QuickJS (1 MiB heap): the lock
// verifies its own bundle once at boot, then each peer's checking only the granting signatures it has not seen;
// a compromised L0 (miner key, CA key, its own ledger key) cannot make it accept an identity under another device's
// subtree, and what L0 may legitimately do (authorize under itself) is shown to pass, as the design states.
import t from 'tap'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import { MerkleTree } from '../../agent/ledger/merkle.ts'
import { encodeHead, headId, signHead } from '../../agent/ledger/head.ts'
import { encodeBundle, lineageEvents, verifyBundle, type ProofBundle } from '../../agent/ledger/bundle.ts'
import { authorizeEvent, certifiedEvent, policyEvent, rekeyEvent } from '../../agent/ledger/builders.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import { SignatureCache } from '../../agent/ledger/signature-cache.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import { decide } from '../../agent/access/decide.ts'
import { fleetChainVerifier } from '../../agent/access/fleet-chain.ts'
import { createCsr } from '../../agent/pki/csr.ts'
import { issueDeviceCertificate } from '../../agent/pki/issue.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { KinError } from '../../agent/errors.ts'
import { CoreVm, HEAP_PEAK_BUDGET, SMALL_DEVICE } from './_quickjs.ts'
import { footprintHouse } from './_house.ts'

const DAY = 86400
const house = await footprintHouse()
const { pf, now, lock, phone, guest, anchor, eveKeys } = house
const l0Seed = pf.fleet.ledgerSeed
const honest = pf.l0Ledger.state

// ---- what a compromised L0 can make: any head over any log, any certificate -----------------------------------

/** L0 seals the honest log plus `extra` (events it would never accept honestly) and hands out a bundle of `entries`. */
function sealedByL0(extra: readonly EncodedEvent[], entries: readonly EncodedEvent[]): Uint8Array {
  const log = [...honest.log, ...extra]
  const tree = MerkleTree.fromIds(
    nodeCrypto,
    log.map(e => e.id),
  )
  const head = signHead(
    nodeCrypto,
    {
      height: house.head.height + 1,
      prevHeadId: headId(nodeCrypto, house.head),
      time: now,
      treeSize: tree.size,
      root: tree.root(),
    },
    l0Seed,
  )
  const indexOf = new Map(log.map((e, i) => [e.idHex, i]))
  const placed = entries.map(e => ({ e, leafIndex: indexOf.get(e.idHex)! })).sort((a, b) => a.leafIndex - b.leafIndex)
  const bundle: ProofBundle = {
    version: 1,
    headBytes: encodeHead(head),
    head,
    consistency: undefined,
    entries: placed.map(({ e, leafIndex }) => ({
      eventBytes: e.bytes,
      leafIndex,
      proof: tree.inclusionProof(leafIndex),
    })),
  }
  return encodeBundle(bundle)
}

/** A fresh identity's keys, as L0 would make them for itself: an Ed25519 ledger key and Eve's TLS key. */
function newKeys(): { seed: Uint8Array; ledgerKey: Uint8Array; spkiHash: Uint8Array } {
  const seed = nodeCrypto.randomBytes(32)
  return { seed, ledgerKey: nodeCrypto.ed25519PublicKey(seed), spkiHash: nodeCrypto.sha256(eveKeys.spkiDer) }
}

/** The fleet CA (whose key L0 holds) certifies Eve's TLS key for `cn` under `parentCn`. */
async function certificateFor(cn: string, parentCn: string): Promise<Uint8Array> {
  const auth = { cn, parentCn, spkiHash: nodeCrypto.sha256(eveKeys.spkiDer), notAfter: now + DAY }
  return (
    await issueDeviceCertificate({
      now,
      randomBytes: nodeCrypto.randomBytes,
      csrPem: await createCsr({ cn, parentCn, keyPair: eveKeys }),
      auth,
      rootCertPem: pf.fleet.root.pem,
      rootKeyPem: pf.fleet.rootKey.privateKeyPem,
    })
  ).der
}

/** An authorize event by the binding `parentCn` holds, signed with `signerSeed`; and the child's certified event. */
async function forgedChild(
  parentCn: string,
  signerSeed: Uint8Array,
  keys = newKeys(),
): Promise<{ authorize: EncodedEvent; certified: EncodedEvent; cn: string; certificate: Uint8Array }> {
  const parent = honest.currentBinding(parentCn)!
  const authorize = signEvent(
    nodeCrypto,
    authorizeEvent(
      nodeCrypto,
      parent,
      {
        spkiHash: keys.spkiHash,
        ledgerKey: keys.ledgerKey,
        role: 'guest',
        depth: 0,
        notAfter: now + DAY,
        kind: 'phone',
        name: 'not a real guest',
      },
      now,
    ),
    signerSeed,
  )
  const cn = honest.cnOfLabel(authorize.event.subject)
  // The child's own binding, as the forged authorize would create it; the certified event is signed with the child's key.
  const scratch = new Ledger(nodeCrypto)
  for (const e of honest.log) scratch.ingest(e, { trustSignatures: true })
  scratch.ingest(authorize, { trustSignatures: true })
  const certificate = await certificateFor(cn, parentCn)
  const certified = signEvent(
    nodeCrypto,
    certifiedEvent(scratch.state.currentBinding(cn)!, nodeCrypto.sha256(certificate), now),
    keys.seed,
  )
  return { authorize, certified, cn, certificate }
}

/** The events a bundle for `cn` carries in the honest ledger (lineage and links). */
const lineageOf = (cn: string): EncodedEvent[] => lineageEvents({ state: honest }, cn)

// ---- the lock in kin-core -----------------------------------------------------------------------------------

const vm = await CoreVm.load(SMALL_DEVICE)
t.teardown(() => vm.dispose())

type Verdict =
  | { refused: true; code: string; message: string }
  | {
      refused: false
      code: string
      allow: boolean
      reason: string
      signatures: { tier: string; verified: number; cached: number; trusted: number }
    }

// The lock boots: its own bundle, every granting signature in it checked once and pinned.
const boot = vm.value<{ verified: number; cached: number; trusted: number; held: number }>(
  `
  globalThis.cache = new kinCore.SignatureCache(32)
  globalThis.own = kinCore.verifyBundle(input.own, input.anchor, input.now, { tier: 'bundle', cache, own: true })
  globalThis.root = new kinCore.CoreCertificate(input.root)
  const s = own.signatures
  return { verified: s.verified, cached: s.cached, trusted: s.trusted, held: cache.size }
`,
  { own: house.bundleOf(lock.cn), anchor, now, root: pf.fleet.root.der },
)

// A peer presents its bundle and certificate: verify (bundle tier, the lock's cache), combine, decide.
const PRESENT = `
  let peer
  try {
    peer = kinCore.verifyBundle(input.peer, input.anchor, input.now, { tier: 'bundle', cache })
  } catch (e) {
    return { refused: true, code: e.code, message: e.message }
  }
  const d = kinCore.decide({ certificate: input.certificate, action: 'unlock' }, kinCore.combineBundles([own, peer]), input.now,
    { self: input.self, root, lastHeadTime: peer.head.time })
  return { refused: false, code: d.code, allow: d.allow, reason: d.reason, signatures: peer.signatures }
`
const present = (peer: Uint8Array, certificate: Uint8Array): Verdict =>
  vm.value<Verdict>(PRESENT, { peer, certificate, anchor, now, self: lock.cn })

t.test(
  'boot: the lock checks the key-binding signatures of its own lineage once and pins them (the house sets no policy)',
  async t => {
    const binding = lineageOf(lock.cn).filter(e => ['genesis', 'authorize', 'rekey'].includes(e.event.type)).length
    t.equal(boot.verified, binding, `genesis and the authorize events of laptop, phone and lock: ${binding} signatures`)
    t.equal(boot.cached, 0)
    t.equal(boot.trusted, lineageOf(lock.cn).length - binding, "the certified events are taken on the miner's word")
    t.equal(boot.held, binding, 'and pinned in the cache')
  },
)

t.test(
  "an honest guest: only the authorize signatures below the common ancestor are checked, the decision is the full agent's",
  async t => {
    const first = present(house.bundleOf(guest.cn), guest.certificate.der)
    t.equal(first.refused, false)
    if (first.refused) return
    t.equal(first.code, house.v8Decision(guest.certificate, lock.cn, 'unlock').code, first.reason)
    t.equal(first.code, 'ALLOW')
    t.same(
      first.signatures,
      { tier: 'bundle', verified: 2, cached: 2, trusted: lineageOf(guest.cn).length - 4 },
      'tablet and guest checked; genesis and laptop (above the common ancestor) found in the cache',
    )
    const again = present(house.bundleOf(guest.cn), guest.certificate.der)
    t.equal(!again.refused && again.signatures.verified, 0, 'the second time, every granting signature is cached')
    t.equal(!again.refused && again.code, 'ALLOW')
  },
)

t.test("a compromised L0 cannot put an identity under the owner's phone", async t => {
  // 1. An authorize event naming the phone as issuer (its binding as first link), signed with L0's key.
  const underPhone = await forgedChild(phone.cn, l0Seed)
  const peer = sealedByL0(
    [underPhone.authorize, underPhone.certified],
    [...lineageOf(phone.cn), underPhone.authorize, underPhone.certified],
  )
  // Had the lock taken that signature on the miner's word, it would have opened: the check is what stops it.
  const trusting = new Ledger(nodeCrypto)
  for (const e of [...honest.log, underPhone.authorize, underPhone.certified])
    trusting.ingest(e, { trustSignatures: true })
  const forgedCert = DeviceCertificate.from(underPhone.certificate)
  const wouldBe = decide(
    { certificate: forgedCert, action: 'unlock' },
    {
      self: lock.cn,
      ledger: trusting.state,
      now,
      lastHeadTime: now,
      verifyChain: fleetChainVerifier(pf.fleet.root, pf.pki),
    },
  )
  t.equal(wouldBe.code, 'ALLOW', 'with the signature unchecked the forged sibling of the lock would be let in')
  const r = present(peer, underPhone.certificate)
  t.equal(r.refused, true, 'refused before any decision')
  t.equal(r.refused && r.code, 'BAD_SIGNATURE', r.refused ? r.message : '')

  // 2. L0 binds the phone's CN to keys of its own (an authorize by L0 whose subject is the phone's label), then
  //    authorizes a child under that binding, all signed with keys L0 holds.
  const keys = newKeys()
  const phoneBinding = honest.currentBinding(phone.cn)!
  const l0Binding = honest.currentBinding(pf.l0)!
  const unsigned = authorizeEvent(
    nodeCrypto,
    l0Binding,
    {
      spkiHash: keys.spkiHash,
      ledgerKey: keys.ledgerKey,
      role: 'member',
      depth: 1,
      notAfter: now + DAY,
      kind: 'phone',
      name: 'owner phone',
    },
    now,
  )
  const fakePhone = signEvent(
    nodeCrypto,
    { ...unsigned, subject: honest.event(phoneBinding.id)!.event.subject },
    l0Seed,
  )
  const fakeBinding = { ...phoneBinding, id: fakePhone.idHex, ledgerKey: keys.ledgerKey }
  const child = signEvent(
    nodeCrypto,
    authorizeEvent(
      nodeCrypto,
      fakeBinding,
      {
        spkiHash: nodeCrypto.sha256(eveKeys.spkiDer),
        ledgerKey: keys.ledgerKey,
        role: 'device',
        depth: 0,
        notAfter: now + DAY,
        kind: 'phone',
        name: 'not a real device',
      },
      now,
    ),
    keys.seed,
  )
  const childCn = honest.cnOfLabel(child.event.subject)
  const second = present(
    sealedByL0([fakePhone, child], [honest.genesis!.event, fakePhone, child]),
    await certificateFor(childCn, phone.cn),
  )
  t.equal(second.refused, true)
  t.equal(second.refused && second.code, 'CN_MISMATCH', second.refused ? second.message : '')

  // 3. L0's CA certifies Eve's key for the guest's own CN and L0 records it with a certified event it cannot sign:
  //    taken on the miner's word, and still useless, since the guest's binding names the guest's key.
  const misIssuedHash = nodeCrypto.sha256(house.misIssued.der)
  const unsignedCertified = certifiedEvent(honest.currentBinding(guest.cn)!, misIssuedHash, now)
  const junkCertified = signEvent(nodeCrypto, unsignedCertified, l0Seed)
  const third = sealedByL0([junkCertified], [...lineageOf(guest.cn), junkCertified])
  const taken = present(third, house.misIssued.der)
  t.equal(taken.refused, false, "the bundle tier takes a certified event on the miner's word")
  t.equal(!taken.refused && taken.code, 'CERT_UNBOUND', !taken.refused ? taken.reason : '')
  let fullCode: string | undefined
  try {
    verifyBundle(nodeCrypto, third, anchor, now)
  } catch (e) {
    fullCode = e instanceof KinError ? e.code : String(e)
  }
  t.equal(fullCode, 'BAD_SIGNATURE', 'the full tier (every signature) refuses the same bundle')
})

t.test("a compromised L0 cannot set the policy of another device's subtree either", async t => {
  // A policy "by the phone on the phone and its subtree" granting every action to any role: signed with L0's key.
  const phoneBinding = honest.currentBinding(phone.cn)!
  const wide = {
    subtree: true,
    maxHops: 0,
    maxHeadAge: 0,
    anchors: [],
    rules: [{ action: '*', roles: ['admin', 'member', 'device', 'guest'] as const, from: 0, to: 0 }],
  }
  const forged = signEvent(
    nodeCrypto,
    policyEvent(
      phoneBinding,
      phoneBinding,
      { ...wide, rules: wide.rules.map(r => ({ ...r, roles: [...r.roles] })) },
      now,
    ),
    l0Seed,
  )
  const r = present(
    sealedByL0(
      [forged],
      [
        ...lineageOf(guest.cn),
        ...lineageOf(phone.cn).filter(e => !lineageOf(guest.cn).some(g => g.idHex === e.idHex)),
        forged,
      ],
    ),
    guest.certificate.der,
  )
  t.equal(r.refused, true)
  t.equal(r.refused && r.code, 'BAD_SIGNATURE', r.refused ? r.message : '')
})

// Within the trust the design states: L0 may authorize directly under itself with its own key, and such an identity
// is a real one to every device, on both tiers. The rule protects other devices' subtrees, not L0's own.
t.test('control: an identity L0 authorizes under itself is accepted, as on a full device', async t => {
  const underL0 = await forgedChild(pf.l0, l0Seed)
  const peer = sealedByL0(
    [underL0.authorize, underL0.certified],
    [honest.genesis!.event, underL0.authorize, underL0.certified],
  )
  const r = present(peer, underL0.certificate)
  t.equal(r.refused, false)
  t.equal(!r.refused && r.signatures.verified, 1, "its authorize event, signed with L0's own key, verifies")
  const full = verifyBundle(nodeCrypto, peer, anchor, now)
  t.equal(full.signatures.tier, 'full')
  t.equal(full.signatures.verified, 3, 'the full tier checks all three signatures of the bundle, and accepts it too')
  t.equal(!r.refused && r.code, 'ALLOW', !r.refused ? r.reason : '')
})

// The other side of the same trust: a rekey is its parent's act (DESIGN.md "Ledger"), so L0 may give its own child new
// keys it holds, and with them rekey the grandchild, and so on down. Every signature is then genuine, and no tier can
// tell this from the owner replacing a lost laptop. The invariant holds for a subtree while the devices between it
// and L0 keep their keys; a device that sees its own ancestors rekeyed learns it only from its own synced ledger.
t.test('limit: L0 rekeys its own child, then acts with the keys it gave it — accepted on both tiers', async t => {
  const laptopKeys = newKeys(),
    phoneKeys = newKeys()
  const scratch = new Ledger(nodeCrypto)
  for (const e of honest.log) scratch.ingest(e, { trustSignatures: true })
  const rekeyLaptop = signEvent(
    nodeCrypto,
    rekeyEvent(
      nodeCrypto,
      scratch.state.currentBinding(pf.l0)!,
      scratch.state.currentBinding(house.laptop.cn)!,
      { spkiHash: laptopKeys.spkiHash, ledgerKey: laptopKeys.ledgerKey, notAfter: now + DAY },
      now,
    ),
    l0Seed,
  )
  scratch.ingest(rekeyLaptop)
  const rekeyPhone = signEvent(
    nodeCrypto,
    rekeyEvent(
      nodeCrypto,
      scratch.state.currentBinding(house.laptop.cn)!,
      scratch.state.currentBinding(phone.cn)!,
      { spkiHash: phoneKeys.spkiHash, ledgerKey: phoneKeys.ledgerKey, notAfter: now + DAY },
      now,
    ),
    laptopKeys.seed,
  )
  scratch.ingest(rekeyPhone)
  const childKeys = newKeys()
  const child = signEvent(
    nodeCrypto,
    authorizeEvent(
      nodeCrypto,
      scratch.state.currentBinding(phone.cn)!,
      {
        spkiHash: childKeys.spkiHash,
        ledgerKey: childKeys.ledgerKey,
        role: 'guest',
        depth: 0,
        notAfter: now + DAY,
        kind: 'phone',
        name: 'not a real guest',
      },
      now,
    ),
    phoneKeys.seed,
  )
  scratch.ingest(child)
  const childCn = honest.cnOfLabel(child.event.subject)
  const certificate = await certificateFor(childCn, phone.cn)
  const certified = signEvent(
    nodeCrypto,
    certifiedEvent(scratch.state.currentBinding(childCn)!, nodeCrypto.sha256(certificate), now),
    childKeys.seed,
  )
  scratch.ingest(certified)
  const extra = [rekeyLaptop, rekeyPhone, child, certified]
  const peer = sealedByL0(extra, [...lineageOf(phone.cn), ...extra])
  t.equal(
    verifyBundle(nodeCrypto, peer, anchor, now).signatures.verified,
    lineageOf(phone.cn).length + extra.length,
    'the full tier checks every signature and accepts',
  )
  const r = present(peer, certificate)
  t.equal(r.refused, false)
  t.equal(!r.refused && r.signatures.verified, 3, 'the two rekeys and the authorize, each genuinely signed')
  t.equal(!r.refused && r.code, 'ALLOW', !r.refused ? r.reason : '')
})

t.test('the engine stayed inside its limits', async t => {
  const m = vm.memory()
  t.ok(
    m.heapPeak > 0 && m.heapPeak <= HEAP_PEAK_BUDGET,
    `heap peak ${m.heapPeak} bytes of ${HEAP_PEAK_BUDGET} (live now: ${m.memory_used_size})`,
  )
  t.ok(vm.value<number>('return cache.size') <= 64, 'the cache stays within its two bounds of 32')
})

t.test('a misspelt tier or a cache of the wrong kind is refused, never read as "check less"', async t => {
  const bytes = house.bundleOf(guest.cn)
  t.throws(() => verifyBundle(nodeCrypto, bytes, anchor, now, { tier: 'bundel' as 'bundle' }), RangeError)
  t.throws(
    () => verifyBundle(nodeCrypto, bytes, anchor, now, { tier: 'bundle', cache: {} as SignatureCache }),
    TypeError,
  )
  const r = vm.run('return kinCore.verifyBundle(input.peer, input.anchor, input.now, { tier: "Bundle" })', {
    peer: bytes,
    anchor,
    now,
  })
  t.equal(r.ok === false && r.name, 'RangeError', 'inside QuickJS as well')
})

t.test('SignatureCache: bounded, least recently used out first, pinned entries stay, the key must match', async t => {
  const key = (n: number): Uint8Array => new Uint8Array(32).fill(n)
  const id = (n: number): string => n.toString(16).padStart(64, '0')
  const cache = new SignatureCache(3)
  cache.add(id(1), key(1), true)
  for (let n = 2; n <= 5; n++) cache.add(id(n), key(n))
  t.equal(cache.size, 4, 'one pinned and three recent')
  t.notOk(cache.holds(id(2), key(2)), 'the oldest recent entry was evicted')
  t.ok(cache.holds(id(3), key(3)))
  cache.add(id(6), key(6))
  t.ok(cache.holds(id(3), key(3)), 'a use keeps an entry')
  t.notOk(cache.holds(id(4), key(4)), 'the least recently used went instead')
  t.ok(cache.holds(id(1), key(1)), 'the pinned entry stays')
  t.notOk(cache.holds(id(1), key(9)), 'another key for the same event is no hit')
  t.notOk(cache.holds(id(3).toUpperCase(), key(4)))
  t.throws(() => new SignatureCache(0), RangeError)
})
