import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { memoryStorage } from '../../agent/portable/memory-storage.ts'
import { Home } from '../../runtime/home.ts'
import { policyEvent } from '../../agent/ledger/builders.ts'
import { buildBundle, decodeBundle, encodeBundle } from '../../agent/ledger/bundle.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import { encodeHead, signHead } from '../../agent/ledger/head.ts'
import { Miner } from '../../agent/ledger/miner.ts'
import { PersistentLedger } from '../../agent/ledger/persistent.ts'
import { scanRecords } from '../../agent/ledger/store.ts'
import { expectExit, kin, lastJson } from '../enroll/_harness.ts'
import { enrollThroughL0, gossipFleet, homeLedger, nowSeconds } from './_fleet.ts'

/** Drops the broker from a home's config.json: the device has no link to L0 any more. */
function unplug(dir: string): void {
  const home = new Home(dir)
  const config = home.readConfig()
  delete config.broker
  delete config['l0Cn']
  home.writeConfig(config)
}

// DESIGN.md "Blocks" (proof bundle) and "Access decision" step 5: a requester can carry its own bundle, so a lock
// verifies a stranger offline; the lock refuses a forged bundle and one whose head contradicts the head it holds.
t.test("a lock with no link to L0: a guest's own bundle admits it; forged and forking bundles are refused", async t => {
  const fleet = await gossipFleet(t, ['admin', 'member', 'device'])
  const [admin, , lock] = fleet.devices as [(typeof fleet.devices)[0], unknown, (typeof fleet.devices)[0]]
  const miner = fleet.services.miner.miner
  const h0 = miner.latestHead()!
  // A second head (a policy on the lock), which the lock syncs to; then it loses its link to L0.
  const state = fleet.services.ledger.ledger.state
  const policy = signEvent(
    nodeCrypto,
    policyEvent(
      state.currentBinding(admin!.cn)!,
      state.currentBinding(lock!.cn)!,
      {
        subtree: false,
        maxHops: 6,
        maxHeadAge: 0,
        anchors: [],
        rules: [],
      },
      nowSeconds(),
    ),
    admin!.ledgerSeed,
  )
  await fleet.services.miner.submit([policy.bytes], nowSeconds())
  const h1 = (await fleet.services.seal())!
  t.equal(h1.height, h0.height + 1)
  expectExit(t, await kin(['sync', '--home', lock!.home]), 0, 'the lock syncs to the second head')
  unplug(lock!.home)

  // The guest enrolls afterwards (L0 invites it), syncs, and exports its bundle for the lock's tree size.
  const guest = await enrollThroughL0(fleet, 'guest', "guest's phone")
  await fleet.services.seal()
  expectExit(t, await kin(['sync', '--home', guest.home]), 0, 'the guest syncs')
  const b1 = join(guest.home, 'for-lock.bundle')
  const exported = await kin([
    'ledger',
    'bundle',
    guest.cn,
    '--home',
    guest.home,
    '--known-size',
    String(h1.treeSize),
    '--out',
    b1,
    '--json',
  ])
  expectExit(t, exported, 0, 'kin ledger bundle exits 0')
  const ex = lastJson(exported.stdout) as {
    file: string
    bytes: number
    source: string
    consistency: { treeSize: number } | null
    head: { height: number }
  }
  t.same(
    [ex.file, ex.source, ex.consistency],
    [b1, 'local', { treeSize: h1.treeSize }],
    "built from the guest's own ledger, with a consistency proof to the lock's tree",
  )
  t.equal(ex.bytes, readFileSync(b1).length, 'and says how big it is')
  const b0 = join(guest.home, 'plain.bundle')
  expectExit(
    t,
    await kin(['ledger', 'bundle', guest.cn, '--home', guest.home, '--out', b0]),
    0,
    'a bundle without --known-size',
  )

  const peer = join(guest.home, 'cert.pem')
  const check = (extra: string[]) =>
    kin(['check', '--home', lock!.home, '--peer', peer, '--action', 'unlock', '--json', ...extra])
  const [without, withBundle, unproven] = await Promise.all([
    check([]),
    check(['--bundle', b1]),
    check(['--bundle', b0]),
  ])
  expectExit(t, without, 1, 'without a bundle the lock denies')
  t.match(
    lastJson(without.stdout),
    { code: 'ACCESS_MISSING_PROOF', proof: { source: 'miner', outcome: 'unavailable' } },
    'no proof and no link to the miner: fail closed',
  )
  expectExit(t, withBundle, 0, 'with its own bundle the guest is admitted')
  t.match(
    lastJson(withBundle.stdout),
    { code: 'ALLOW', peer: guest.cn, bundle: { anchoring: 'consistent' } },
    "the bundle's head is proven consistent with the lock's",
  )
  expectExit(t, unproven, 1, "a bundle on a newer head with no proof linking it to the lock's head")
  t.match(
    lastJson(unproven.stdout),
    { code: 'HEAD_UNPROVEN', bundle: { error: 'HEAD_UNPROVEN' } },
    'is refused: the lock cannot tell it from a fork',
  )

  // Forged: a changed byte in the last entry; a head re-signed by another key.
  const good = new Uint8Array(readFileSync(b1))
  const flipped = good.slice()
  flipped[flipped.length - 100]! ^= 0x01
  const forgedFile = join(guest.home, 'flipped.bundle')
  writeFileSync(forgedFile, flipped)
  const decoded = decodeBundle(good)
  const stranger = signHead(nodeCrypto, decoded.head, nodeCrypto.randomBytes(32))
  const resigned = join(guest.home, 'resigned.bundle')
  writeFileSync(resigned, encodeBundle({ ...decoded, headBytes: encodeHead(stranger), head: stranger }))

  // Forking: a miner that signs the same key's heads over another history from the first head on (guest events
  // without the policy), so its second head contradicts the one the lock holds.
  const l0Home = new Home(fleet.l0.dir)
  const ledgerBytes = new Uint8Array(readFileSync(l0Home.path('ledger')))
  const headsBytes = new Uint8Array(readFileSync(join(fleet.l0.dir, 'heads.cbor')))
  const storage = memoryStorage()
  const ledgerRecords = scanRecords(ledgerBytes).records
  const headRecords = scanRecords(headsBytes).records
  storage.files.set('ledger.cbor', ledgerBytes.slice(0, ledgerRecords[h0.treeSize]!.offset))
  storage.files.set('heads.cbor', headsBytes.slice(0, headRecords[1]!.offset))
  const forkLedger = await PersistentLedger.open(nodeCrypto, await storage.openAppendFile('ledger.cbor'))
  const fork = await Miner.open(
    nodeCrypto,
    forkLedger,
    await storage.openAppendFile('heads.cbor'),
    fleet.l0.self.ledgerSeed,
    { boundTimes: false },
  )
  const l0State = homeLedger(fleet.l0.dir).state
  const guestEvents = l0State.log.filter(e => l0State.cnOfLabel(e.event.subject) === guest.cn)
  const submitted = await fork.submit(
    guestEvents.map(e => e.bytes),
    nowSeconds(),
  )
  t.equal(submitted.accepted.length, 2, "the fork takes the guest's authorize and certified events")
  const forkHead = (await fork.seal(nowSeconds()))!
  t.equal(forkHead.height, h1.height, "its second head has the height of the lock's head")
  const forked = join(guest.home, 'forked.bundle')
  writeFileSync(forked, encodeBundle(buildBundle(fork, guest.cn, { knownTreeSize: h1.treeSize })))
  await fork.close()
  await forkLedger.close()

  const [r1, r2, r3] = await Promise.all([
    check(['--bundle', forgedFile]),
    check(['--bundle', resigned]),
    check(['--bundle', forked]),
  ])
  expectExit(t, r1, 1, 'a bundle with a changed byte is refused')
  const c1 = lastJson(r1.stdout)['code'] as string
  t.ok(c1 !== 'ALLOW' && c1 !== 'INTERNAL', `with a code (${c1})`)
  expectExit(t, r2, 1, 'a bundle whose head another key signed is refused')
  t.match(lastJson(r2.stdout), { code: 'HEAD_SIGNATURE' })
  expectExit(t, r3, 1, "a bundle signed by a head that forks from the lock's is refused")
  t.match(lastJson(r3.stdout), { code: 'HEAD_FORK' })
  t.notOk(homeLedger(lock!.home).state.currentBinding(guest.cn), "none of it touched the lock's ledger")
})
