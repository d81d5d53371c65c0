// A mixed-tier fleet (DESIGN.md "Small devices: three tiers"): the inviting devices keep the whole ledger, the leaves
// run the bundle tier through the real broker (own bundle from L0 after enrollment, one bundle request to refresh),
// and every check of a full fleet holds; a bundle device refuses a revoked peer whichever bundle it presents.
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildBundle, decodeBundle, encodeBundle } from '../../agent/ledger/bundle.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { DEFAULT_KEY_POOL_FILE } from '../../sim/fleet/key-pool.ts'
import { planFleet } from '../../sim/fleet/plan.ts'
import { runFleet } from '../../sim/fleet/run.ts'

const DEVICES = 30
const parents = new Map(planFleet({ devices: DEVICES, depth: 3, tiers: 'mixed' }).devices.map(d => [d.label, d.parent]))

t.test(
  'the plan gives the inviting devices the full tier and the leaves the bundle tier; all full unless asked',
  async t => {
    const mixed = planFleet({ devices: DEVICES, depth: 3, tiers: 'mixed' })
    for (const d of mixed.devices) t.equal(d.tier, d.inner ? 'full' : 'bundle', `${d.label} (${d.role}, ${d.kind})`)
    t.ok(
      mixed.devices.some(d => d.role === 'guest' && d.tier === 'bundle'),
      "a guest's phone is a bundle device",
    )
    t.ok(
      planFleet({ devices: DEVICES, depth: 3 }).devices.every(d => d.tier === 'full'),
      'the default plan keeps every device full',
    )
  },
)

t.test(
  `${DEVICES} devices, the leaves on the bundle tier: convergence, every decision as planned, nothing lost, revoked peers refused`,
  async t => {
    const dir = mkdtempSync(join(tmpdir(), 'kin-fleet-tiers-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const looked: Record<string, unknown> = {}
    const r = await runFleet({
      devices: DEVICES,
      depth: 3,
      dir,
      concurrency: 8,
      checks: 300,
      tlsChecks: 4,
      revocations: 2,
      keyPool: DEFAULT_KEY_POOL_FILE,
      tiers: 'mixed',
      report: true,
      inspect: async (fleet, _partitioned, tier) => {
        const miner = fleet.l0.miner.miner
        const latest = miner.latestHead()!
        looked['replicas'] = [...tier.devices.keys()].filter(
          l => fleet.device(l).replica !== undefined || fleet.device(l).follower !== undefined,
        )
        looked['largestBundleEvents'] = Math.max(...[...tier.devices.values()].map(d => d.heldEvents))
        const revoked = r0(
          fleet.l0.ledger.ledger.state,
          [...tier.devices.keys()].map(l => fleet.device(l)),
        )
        const target = tier.standing()[0]!
        const t1 = tier.devices.get(target.label)!
        looked['targetHead'] = t1.head?.height
        looked['latest'] = latest.height
        // The revoked device can still present the bundle it got before it fell: sealed under an older head.
        const r1 = tier.devices.get(revoked.label)!
        const stale = r1.present()
        looked['staleHead'] = decodeBundle(stale).head.height
        const der = DeviceCertificate.from(revoked.identity.certPem, { sha256: nodeCrypto.sha256 }).der
        looked['stale'] = t1.decide(der, stale, 'view')
        // Or a fresh one from the miner (anyone may fetch a bundle for a CN): it carries the revocation.
        looked['fresh'] = t1.decide(der, encodeBundle(buildBundle(miner, revoked.cn)), 'view')
        // Control: a standing peer's fresh bundle is decided on its merits (a device may view).
        const peer = tier.standing().find(d => d.label !== target.label)!
        looked['control'] = t1.decide(
          DeviceCertificate.from(peer.identity.certPem, { sha256: nodeCrypto.sha256 }).der,
          encodeBundle(buildBundle(miner, peer.cn)),
          'view',
        )
        // A peer presenting no bundle of itself: the target's own lineage lacks the peer.
        looked['noBundle'] = target.session.decide(der, 'view').code

        // An ancestor revoked with its subtree, after the run: a member whose leaves are bundle-tier devices, revoked by
        // its admin. The target learns of it by refreshing its head (one bundle request), then refuses the member's
        // leaf with the bundle it held before (stale) and with a fresh one (it carries the ancestor's revocation).
        const standing = tier.standing().map(d => d.label)
        const victim = standing.find(
          l => l !== target.label && parents.get(l) !== parents.get(target.label) && parents.get(l)!.startsWith('L2.'),
        )!
        const member = parents.get(victim)!,
          admin = parents.get(member)!
        const victimDevice = fleet.device(victim)
        const held = tier.devices.get(victim)!.present()
        const headBefore = t1.head!.height
        await fleet.revoke(admin, member, { reason: 'compromised', subtree: true })
        looked['refreshFailures'] = await tier.refresh([target.label], 1)
        looked['refreshedPast'] = t1.head!.height > headBefore
        const vder = DeviceCertificate.from(victimDevice.identity.certPem, { sha256: nodeCrypto.sha256 }).der
        looked['subtreeStale'] = t1.decide(vder, held, 'view')
        looked['subtreeFresh'] = t1.decide(vder, encodeBundle(buildBundle(miner, victimDevice.cn)), 'view')
        looked['victimStandsNoMore'] = !tier.standing().some(d => d.label === victim)
      },
    })
    t.same(r.failures, [], 'no failure')
    t.ok(r.ok, 'the run held')
    t.equal(r.lost, 0, 'every event a device handed L0 is in its ledger')
    const tiers = r.tiers!
    t.ok(tiers !== undefined, 'both tiers reported')
    const planned = planFleet({ devices: DEVICES, depth: 3, tiers: 'mixed' }).devices
    t.equal(
      tiers.bundle.devices,
      planned.filter(d => d.tier === 'bundle').length,
      `${tiers.bundle.devices} bundle-tier devices`,
    )
    t.equal(
      tiers.full.devices,
      planned.filter(d => d.tier === 'full').length,
      `${tiers.full.devices} full devices besides L0`,
    )
    t.same(looked['replicas'], [], 'no bundle-tier device keeps a replica or follows the ledger')
    t.ok(
      (looked['largestBundleEvents'] as number) <= 12,
      `a bundle device holds its lineage only (at most ${looked['largestBundleEvents']} events of ${r.convergence.events})`,
    )
    t.ok(r.convergence.sameHead, "every standing full device on L0's latest head")
    t.equal(tiers.bundle.oldestHeight, tiers.bundle.latestHeight, "every standing bundle device on L0's latest head")
    t.equal(tiers.bundle.refreshed, tiers.bundle.standing, 'each standing bundle device refreshed once')
    t.equal(r.decisions.unexpected, 0, `all ${r.decisions.count} in-process decisions as the plan predicts`)
    t.equal(r.decisions.tls.unexpected, 0, 'and the ones over mutual TLS')
    const onBundle = r.checks.filter(
      c => c.via === 'session' && planned.find(d => d.label === c.target)?.tier === 'bundle',
    )
    t.ok(
      onBundle.filter(c => c.decision.allow).length > 0 && onBundle.filter(c => !c.decision.allow).length > 0,
      `bundle-tier targets allowed and denied (${onBundle.length} decisions)`,
    )
    t.equal(tiers.bundle.decisions.count, onBundle.length, 'the bundle tier counts its decisions')
    t.ok(
      onBundle.filter(c => c.decision.allow).every(c => c.decision.path.length > 0),
      'an allow on the bundle tier names its path',
    )
    // Revoked devices (leaves: bundle tier) asked once each at least: a full target holds the revocation; a bundle
    // target holds a head newer than the bundle the revoked device still has, and refuses it as stale.
    const revokedChecks = r.checks.filter(c => r.revoked.includes(c.peer) && c.via === 'session')
    t.ok(revokedChecks.length >= 2, 'each revoked device asked')
    for (const c of revokedChecks) {
      const bundleTarget = planned.find(d => d.label === c.target)?.tier === 'bundle'
      t.equal(
        c.decision.code,
        bundleTarget ? 'BUNDLE_STALE' : 'ACCESS_REVOKED',
        `${c.peer} → ${c.target} (${bundleTarget ? 'bundle' : 'full'} tier)`,
      )
    }
    t.ok(
      (looked['staleHead'] as number) < (looked['targetHead'] as number),
      `the revoked device's own bundle (head ${looked['staleHead']}) is older than the target's head (${looked['targetHead']})`,
    )
    t.equal(looked['targetHead'], looked['latest'], "the target holds L0's latest head")
    t.match(
      looked['stale'],
      { allow: false, code: 'BUNDLE_STALE', retry: true },
      'a bundle under an older head is refused before any signature is checked',
    )
    t.match(
      looked['fresh'],
      { allow: false, code: 'ACCESS_REVOKED' },
      'a fresh bundle carries the revocation: refused as revoked',
    )
    t.match(looked['control'], { allow: true, code: 'ALLOW' }, 'a standing peer with a fresh bundle may view')
    t.equal(
      looked['noBundle'],
      'ACCESS_MISSING_PROOF',
      'without a presented bundle, the own lineage alone proves nothing about the peer',
    )
    t.same(looked['refreshFailures'], [], 'the target refreshed its head after the subtree revocation')
    t.ok(looked['refreshedPast'], 'to a head newer than the one it held')
    t.ok(looked['victimStandsNoMore'], "the member's leaf no longer stands")
    t.match(
      looked['subtreeStale'],
      { allow: false, code: 'BUNDLE_STALE' },
      "the leaf's bundle from before its ancestor's revocation is refused as stale",
    )
    t.match(
      looked['subtreeFresh'],
      { allow: false, code: 'ACCESS_ANCESTOR_REVOKED' },
      "a fresh bundle carries the ancestor's revocation",
    )
    // The report shows both tiers.
    const figures = new Map(r.report!.figures.map(f => [f.name, f.value]))
    t.equal(figures.get('bundle-tier devices'), tiers.bundle.devices, 'the report counts the bundle tier')
    t.equal(figures.get('full-tier devices'), tiers.full.devices, 'and the full tier')
    t.ok(
      r.report!.charts.some(c => c.title.startsWith('Access decision latency per tier')),
      'a latency chart per tier',
    )
    t.ok(
      r.report!.notes.some(n => n.startsWith('Bundle tier:')) && r.report!.notes.some(n => n.startsWith('Full tier')),
      'a note per tier',
    )
    t.comment(JSON.stringify({ seconds: r.seconds, tiers }))
  },
)

/** The first revoked bundle-tier device. */
function r0<D extends { cn: string; label: string }>(
  state: { currentBinding(cn: string): { revocations: unknown[] } | undefined },
  devices: D[],
): D {
  const d = devices.find(x => (state.currentBinding(x.cn)?.revocations.length ?? 0) > 0)
  if (d === undefined) throw new Error('no revoked bundle-tier device')
  return d
}
