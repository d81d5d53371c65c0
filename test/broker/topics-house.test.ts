import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodeSigning } from '../../runtime/node/signing.ts'
import { askOverInbox, serveInboxChallenges } from '../../agent/gossip/challenge-session.ts'
import type { GossipClient } from '../../agent/gossip/client.ts'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { liveHouseDriver } from '../../sim/house/live-driver.ts'
import { playHouse } from '../../sim/house/story.ts'
import { borrowFollowerClient, rideFollowerSessions } from '../../sim/attacks/inbox-link.ts'

t.test(
  "what L0's broker sees of a whole house — pairing enrollments, gossip, an inbox ask — holds no dotted topic level",
  async t => {
    const dir = mkdtempSync(join(tmpdir(), 'kin-topics-house-'))
    const seen: Array<{ op: string; clientId: string; topic: string }> = []
    const refused: unknown[] = []
    const driver = await liveHouseDriver(
      dir,
      r => {
        if (r['event'] === 'acl.refused') refused.push(r)
      },
      use => seen.push(use),
    )
    const { fleet } = driver
    const clients: GossipClient[] = []
    t.teardown(async () => {
      for (const c of clients) c.close()
      await fleet.close()
      rmSync(dir, { recursive: true, force: true })
    })
    const steps = await playHouse(driver, () => undefined)
    t.ok(
      steps.every(s => s.ok),
      'the house story plays as it does on any broker',
    )

    // An inbox ask: the kid's phone (L2.1) asks the lock (L3.3), which serves challenges on its follower's session.
    const lock = fleet.device('L3.3'),
      phone = fleet.device('L2.1')
    const verifier = serveInboxChallenges({
      fleet: fleet.l0.fleet,
      self: lock.cn,
      certificateDer: DeviceCertificate.from(lock.identity.certPem).der,
      privateKeyPem: lock.identity.keyPem,
      signing: nodeSigning,
      randomBytes: nodeCrypto.randomBytes,
      clock: { now: () => fleet.clock.now() },
      decider: lock.session,
      deadline: 30,
    })
    const stopRiding = await rideFollowerSessions(fleet, 'L3.3', session => verifier.attach(session))
    t.teardown(() => {
      stopRiding()
      verifier.close()
    })
    const link = await borrowFollowerClient(fleet, 'L2.1')
    clients.push(link)
    const outcome = await askOverInbox(
      link,
      {
        fleet: fleet.l0.fleet,
        cn: phone.cn,
        certificateDer: DeviceCertificate.from(phone.identity.certPem).der,
        privateKeyPem: phone.identity.keyPem,
        signing: nodeSigning,
        randomBytes: nodeCrypto.randomBytes,
        check: phone.session,
      },
      { verifierCn: lock.cn, action: 'unlock', timeoutMs: 20_000 },
    )
    t.equal(
      typeof outcome.verdict.allow,
      'boolean',
      `the lock's signed verdict came back over the inbox: ${outcome.verdict.code}`,
    )

    const topics = fleetTopics(fleet.l0.fleet)
    const kin = seen.filter(u => u.topic.startsWith('kin/'))
    const ops = (op: string, prefix: string) => kin.filter(u => u.op === op && u.topic.startsWith(prefix)).length
    t.ok(ops('publish', `${topics.base}/pair/`) > 0, 'pairing sessions published')
    t.ok(ops('publish', `${topics.base}/ledger/submit/`) > 0, 'devices submitted')
    t.ok(ops('subscribe', topics.head) > 0, 'devices follow the head')
    t.ok(ops('publish', `${topics.base}/ledger/sync/`) > 0, 'devices asked for sync')
    t.ok(
      kin.some(u => u.op === 'publish' && u.topic === topics.inbox(lock.cn, phone.cn)),
      "the ask reached the lock's inbox under the phone's label",
    )
    t.ok(
      kin.some(u => u.op === 'publish' && u.topic === topics.inbox(phone.cn, lock.cn)),
      "the challenge and result went back under the lock's label",
    )
    t.ok(
      kin.some(u => u.op === 'subscribe' && u.topic === topics.inboxAll(lock.cn)),
      'the lock reads its inbox with a + filter',
    )
    const dotted = kin.filter(u => u.topic.split('/').some(level => level.includes('.')))
    t.same(dotted, [], `no dotted level in any of ${kin.length} topics and filters the sessions used`)
    t.same(
      seen.filter(u => !u.topic.startsWith('kin/')),
      [],
      'nothing outside kin/',
    )
    // Two refusals are the protocol working, and L0's log marks them: a session L0 is closing (a revoked device's,
    // or a rekeyed device's old one) takes no new subscriptions, and a new device's first session asks until L0's
    // miner has recorded its certified event. Every other refusal is a topic the scheme got wrong.
    const expected = (r: unknown): boolean => {
      const e = r as { leaving?: boolean; provisional?: boolean }
      return e.leaving === true || e.provisional === true
    }
    t.same(
      refused.filter(r => !expected(r)),
      [],
      'the ACL refused nothing the fleet did',
    )
    t.comment(`${kin.length} topic uses: ${ops('publish', '')} publishes, ${ops('subscribe', '')} subscribes`)
  },
)
