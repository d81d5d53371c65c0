import t from 'tap'
import { readFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { AccessSession } from '../../agent/access/session.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { decideWithProofs } from '../../agent/gossip/missing-proof.ts'
import { expectExit, kin, lastJson } from '../enroll/_harness.ts'
import { enrollThroughL0, followerOf, gossipFleet, homeLedger, nowSeconds } from './_fleet.ts'

// DESIGN.md "Access decision" step 5: a missing proof → ask the miner (deadline), retry once; otherwise deny.
t.test(
  'a missing proof is fetched from the miner within the deadline, then allowed; denied when the miner is unreachable',
  async t => {
    const fleet = await gossipFleet(t, ['admin', 'member', 'device'])
    const [, phone, lock] = fleet.devices as [unknown, (typeof fleet.devices)[0], (typeof fleet.devices)[0]]
    const synced = await Promise.all([kin(['sync', '--home', lock!.home]), kin(['sync', '--home', phone!.home])])
    synced.forEach(r => expectExit(t, r, 0, 'the lock and a phone sync, then the guest enrolls'))
    const guest = await enrollThroughL0(fleet, 'guest', "guest's phone")
    await fleet.services.seal()
    const peer = join(guest.home, 'cert.pem')
    const ledgerBefore = readFileSync(join(lock!.home, 'ledger.cbor'))

    // kin check: ACCESS_MISSING_PROOF → the guest's bundle from the miner → ALLOW.
    const fetched = await kin(['check', '--home', lock!.home, '--peer', peer, '--action', 'unlock', '--json'])
    expectExit(t, fetched, 0, 'kin check allows once the miner handed over the proof')
    t.match(lastJson(fetched.stdout), {
      code: 'ALLOW',
      peer: guest.cn,
      proof: { source: 'miner', outcome: 'ok', anchoring: 'consistent' },
    })
    t.same(
      readFileSync(join(lock!.home, 'ledger.cbor')),
      ledgerBefore,
      "the proof served one decision; the lock's ledger file is untouched",
    )
    const audit = readFileSync(join(lock!.home, 'audit.log'), 'utf8')
      .trim()
      .split('\n')
      .map(l => JSON.parse(l) as Record<string, unknown>)
    t.same(
      audit.map(a => a['code']),
      ['ALLOW'],
      'one audit line, for the decision made with the proof',
    )

    // kin ledger bundle: the guest's fresh home holds no verified head yet, so it asks the miner; L0's home builds its own.
    const [fromMiner, fromL0] = await Promise.all([
      kin(['ledger', 'bundle', guest.cn, '--home', guest.home, '--out', join(guest.home, 'g.bundle'), '--json']),
      kin(['ledger', 'bundle', guest.cn, '--home', fleet.l0.dir, '--out', join(guest.home, 'l0.bundle'), '--json']),
    ])
    expectExit(t, fromMiner, 0, 'kin ledger bundle on a home without a head exits 0')
    t.match(lastJson(fromMiner.stdout), { source: 'miner', cn: guest.cn }, 'it got the bundle from L0')
    expectExit(t, fromL0, 0, "kin ledger bundle on L0's home exits 0")
    t.match(
      lastJson(fromL0.stdout),
      { source: 'local', head: { treeSize: fleet.services.miner.miner.latestHead()!.treeSize } },
      "L0 builds it from the miner's files",
    )
    t.same(
      readFileSync(join(guest.home, 'g.bundle')),
      readFileSync(join(guest.home, 'l0.bundle')),
      'the same bundle both ways',
    )

    // The same in-process on the phone: its follower asks, decideWithProofs retries once with the verified bundle.
    const f = await followerOf(t, phone!.home)
    const fresh = f.follower.replica.head!
    const session = new AccessSession({
      self: phone!.cn,
      root: DeviceCertificate.from(fleet.l0.rootPem),
      pki: nodePki,
      sha256: nodeCrypto.sha256,
      clock: { now: nowSeconds },
      ledger: () => f.follower.replica.ledger.ledger.state,
      lastHeadTime: () => f.follower.lastHeadTime(),
    })
    const der = DeviceCertificate.from(guest.certPem).der
    t.equal(session.decide(der, 'view').code, 'ACCESS_MISSING_PROOF', "the phone's own ledger lacks the guest")
    const anchor = {
      minerKey: f.files.minerKey,
      genesisId: f.follower.replica.ledger.ledger.state.genesis!.event.idHex,
      knownHead: fresh,
    }
    const fetch = async (cn: string, ms: number) => (await f.follower.requestBundle(cn, ms)).bytes
    const proved = await decideWithProofs(session, der, 'view', { crypto: nodeCrypto, anchor, fetch, deadlineMs: 5000 })
    t.match(proved, {
      decision: { allow: true, code: 'ALLOW' },
      first: { code: 'ACCESS_MISSING_PROOF' },
      proof: { source: 'miner', outcome: 'ok' },
    })
    await f.close()

    // L0 down: the same check denies, for want of a proof, with the miner's failure in the reason.
    await fleet.stop()
    const down = await kin([
      'check',
      '--home',
      lock!.home,
      '--peer',
      peer,
      '--action',
      'unlock',
      '--proof-deadline',
      '1000',
      '--json',
    ])
    expectExit(t, down, 1, 'kin check denies when the miner is unreachable')
    const d = lastJson(down.stdout) as { code: string; reason: string; proof: { outcome: string; code: string } }
    t.match(d, {
      code: 'ACCESS_MISSING_PROOF',
      proof: { source: 'miner', outcome: 'unavailable', code: 'BROKER_UNREACHABLE' },
    })
    t.match(d.reason, /the miner did not hand over a proof within 1000 ms/)

    // A broker address that accepts and never answers: the deadline ends the wait, the answer is deny.
    const held: Socket[] = []
    const blackhole = createServer(s => {
      held.push(s)
    })
    await new Promise<void>(r => blackhole.listen(fleet.services.port, '127.0.0.1', () => r()))
    t.teardown(() => {
      for (const s of held) s.destroy()
      blackhole.close()
    })
    const silent = await kin([
      'check',
      '--home',
      lock!.home,
      '--peer',
      peer,
      '--action',
      'unlock',
      '--proof-deadline',
      '800',
      '--json',
    ])
    expectExit(t, silent, 1, 'a silent miner is a deny too')
    t.match(lastJson(silent.stdout), {
      code: 'ACCESS_MISSING_PROOF',
      proof: { outcome: 'unavailable', code: 'BROKER_TIMEOUT' },
    })
    t.ok(held.length > 0, 'the check did try the broker address')
    t.notOk(homeLedger(lock!.home).state.currentBinding(guest.cn), "the lock's ledger never learned the guest")
  },
)
