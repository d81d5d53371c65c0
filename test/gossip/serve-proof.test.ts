import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Home } from '../../runtime/home.ts'
import { openAccessHome } from '../../runtime/access-home.ts'
import { readHomeLog } from '../../cli/home-view.ts'
import { encodeHead } from '../../agent/ledger/head.ts'
import { buildOfflineProof, type HeadStatement } from '../../agent/ledger/offline-proof.ts'
import { MAX_OFFLINE_PROOF_BYTES, encodeOfflineProof, type OfflineProof } from '../../agent/ledger/proof-encoding.ts'
import { MAX_REQUEST_BYTES, requestAccess, type OfferedProof } from '../../runtime/node/tls-endpoint.ts'
import { expectExit, kin, lastJson, startKin } from '../enroll/_harness.ts'
import { enrollThroughL0, followerOf, gossipFleet, until, type GossipDevice, type GossipFleet } from './_fleet.ts'

// DESIGN.md "Offline proofs are negotiated, not guessed", over real TLS with the real CLI: the lock states its head
// first, the guest answers with what it lacks (docs/PROTOCOL.md §12.2, §11.7).

/** A fleet whose lock synced, then lost its broker (config.json names none): it decides on head `lockHead` alone. */
async function offlineLock(t: Test): Promise<{ fleet: GossipFleet; lock: GossipDevice; lockTreeSize: number }> {
  const fleet = await gossipFleet(t, ['admin', 'member', 'device'])
  const lock = fleet.devices[2]!
  expectExit(t, await kin(['sync', '--home', lock.home]), 0, 'the lock syncs')
  const lockTreeSize = fleet.services.miner.miner.latestHead()!.treeSize
  const home = new Home(lock.home)
  const config = home.readConfig()
  delete config.broker
  delete config['l0Cn']
  home.writeConfig(config)
  return { fleet, lock, lockTreeSize }
}

async function serveLock(t: Test, lock: GossipDevice): Promise<string> {
  const serve = startKin(['serve', '--home', lock.home, '--port', '0', '--json'])
  t.teardown(() => serve.kill())
  const listening = JSON.parse(await serve.firstLine) as { port: number; following: boolean }
  t.equal(listening.following, false, 'the lock serves without a broker: offline')
  return `127.0.0.1:${listening.port}`
}

t.test(
  'a guest enrolled while the lock was offline is decided ALLOW in one exchange, from its own replica',
  async t => {
    const { fleet, lock, lockTreeSize } = await offlineLock(t)
    const guest = await enrollThroughL0(fleet, 'guest', "guest's phone")
    await fleet.services.seal()
    expectExit(t, await kin(['sync', '--home', guest.home]), 0, 'the guest syncs')
    const guestHead = fleet.services.miner.miner.latestHead()!
    t.ok(
      guestHead.treeSize > lockTreeSize,
      `the guest's head (${guestHead.treeSize} events) is newer than the lock's (${lockTreeSize})`,
    )
    const target = await serveLock(t, lock)

    const run = await kin(['access', '--home', guest.home, '--target', target, '--action', 'unlock', '--json'])
    expectExit(t, run, 0, 'the guest is admitted')
    const out = lastJson(run.stdout) as {
      code: string
      peer: string
      sent: { kind: string; source: string; bytes: number; statedTreeSize: number }
    }
    t.equal(out.code, 'ALLOW')
    t.equal(out.peer, guest.cn)
    t.equal(out.sent.kind, 'proof', 'an offline proof went with the request')
    t.equal(out.sent.source, 'replica', "built from the guest's own replica")
    t.equal(out.sent.statedTreeSize, lockTreeSize, 'for the head the lock stated')
    t.ok(out.sent.bytes < 2048, `${out.sent.bytes} bytes: only what the lock lacks`)
    const audit = readFileSync(join(lock.home, 'audit.log'), 'utf8')
      .trim()
      .split('\n')
      .map(l => JSON.parse(l) as { peer: string; code: string })
    t.same(
      audit.filter(l => l.peer === guest.cn).map(l => l.code),
      ['ALLOW'],
      'one decision, audited',
    )

    // A second guest that never synced has no head to prove its events with: it asks L0's miner for its bundle with
    // the size the lock stated, and sends that instead, in the same exchange.
    const fresh = await enrollThroughL0(fleet, 'guest', 'second guest')
    await fleet.services.seal()
    const viaMiner = await kin(['access', '--home', fresh.home, '--target', target, '--action', 'unlock', '--json'])
    expectExit(t, viaMiner, 0, 'the unsynced guest is admitted')
    const sent = (lastJson(viaMiner.stdout) as { sent: { kind: string; source: string; statedTreeSize: number } }).sent
    t.same(
      [sent.kind, sent.source, sent.statedTreeSize],
      ['bundle', 'miner', lockTreeSize],
      "L0's bundle for the lock's size went with the request",
    )
    // --known-size reaches the miner when the bundle comes from it (it was dropped before).
    const fromMiner = await kin([
      'ledger',
      'bundle',
      fresh.cn,
      '--home',
      fresh.home,
      '--known-size',
      String(lockTreeSize),
      '--out',
      join(fresh.home, 'fresh.bundle'),
      '--json',
    ])
    expectExit(t, fromMiner, 0, 'the unsynced guest exports its bundle from the miner')
    t.same(lastJson(fromMiner.stdout)['source'], 'miner')
    t.same(
      lastJson(fromMiner.stdout)['consistency'],
      { treeSize: lockTreeSize },
      'with the consistency proof from the size asked for',
    )
    // A size beyond the log is refused, never dropped.
    const beyond = await kin([
      'ledger',
      'bundle',
      guest.cn,
      '--home',
      guest.home,
      '--known-size',
      String(guestHead.treeSize + 100),
      '--out',
      join(guest.home, 'b'),
      '--json',
    ])
    expectExit(t, beyond, 2, 'a known size beyond the log cannot be proven from')
    t.match(beyond.stdout + beyond.stderr, /BUNDLE_KNOWN_SIZE/)
  },
)

/** The guest's identity and its honest offline proof for a statement, built in-process as kin access builds it. */
async function guestSide(
  guest: GossipDevice,
  port: number,
): Promise<{
  ask: (
    offer: (s: HeadStatement, honest: OfflineProof) => OfferedProof | Promise<OfferedProof>,
  ) => Promise<{ code: string; allow: boolean }>
  close: () => Promise<void>
}> {
  const device = await openAccessHome(guest.home, { audit: false, needKey: true })
  const home = new Home(guest.home)
  const config = home.readConfig()
  return {
    close: () => device.close(),
    ask: async offer => {
      const outcome = await requestAccess({
        host: '127.0.0.1',
        port,
        action: 'unlock',
        certPem: device.certPem,
        keyPem: device.keyPem,
        rootPem: device.rootPem,
        timeoutMs: 20_000,
        checkServer: der => device.session.checkServer(der),
        proofFor: async statement =>
          offer(
            statement,
            (await readHomeLog(home, config, log => buildOfflineProof(log.proofs, config.cn, statement)))!,
          ),
      })
      return { code: outcome.answer!.code, allow: outcome.answer!.allow }
    },
  }
}

function flip(bytes: Uint8Array): Uint8Array {
  const out = Uint8Array.from(bytes)
  out[0]! ^= 1
  return out
}

t.test(
  'forged, foreign and oversized proofs are refused, each with its own code; a revoked guest is denied with a good proof',
  async t => {
    const { fleet, lock, lockTreeSize } = await offlineLock(t)
    const guest = await enrollThroughL0(fleet, 'guest', "guest's phone")
    await fleet.services.seal()
    expectExit(t, await kin(['sync', '--home', guest.home]), 0, 'the guest syncs')
    const target = await serveLock(t, lock)
    const lockHead = (await openAccessHome(lock.home, { audit: false, needKey: false }).then(async d => {
      const h = d.heldHead()
      await d.close()
      return h
    }))!
    t.equal(lockHead.treeSize, lockTreeSize)
    const side = await guestSide(guest, Number(target.split(':')[1]))
    t.teardown(() => side.close())
    const proofOf = (p: OfflineProof): OfferedProof => ({ proof: encodeOfflineProof(p) })

    t.same(
      await side.ask((_s, honest) => proofOf(honest)),
      { code: 'ALLOW', allow: true },
      'the honest proof admits the guest',
    )
    t.same(
      await side.ask(() => ({})),
      { code: 'ACCESS_MISSING_PROOF', allow: false },
      'without a proof the offline lock cannot decide: deny',
    )
    t.equal(
      (
        await side.ask((_s, honest) =>
          proofOf({ ...honest, proof: [flip(honest.proof[0]!), ...honest.proof.slice(1)] }),
        )
      ).code,
      'HEAD_INCONSISTENT',
      "a forged consistency proof (a hash of the lock's own tree changed)",
    )
    t.equal(
      (await side.ask((_s, honest) => proofOf({ ...honest, headBytes: encodeHead(lockHead), head: lockHead }))).code,
      'HEAD_ROLLBACK',
      "a head that does not extend the lock's (its own head, replayed)",
    )
    t.equal(
      (await side.ask((_s, honest) => proofOf({ ...honest, fromTreeSize: honest.fromTreeSize - 1 }))).code,
      'PROOF_BASE_MISMATCH',
      'a proof built from another tree size than the lock stated',
    )
    const lockEvents = await readHomeLog(new Home(lock.home), new Home(lock.home).readConfig(), log =>
      log.state.log.map(e => e.bytes),
    )
    t.equal(
      (
        await side.ask((_s, honest) =>
          proofOf({ ...honest, events: [...honest.events.slice(0, -1), lockEvents[lockEvents.length - 1]!] }),
        )
      ).code,
      'BUNDLE_INCLUSION',
      'an inclusion proof for the wrong event',
    )
    t.equal(
      (
        await side.ask((_s, honest) =>
          proofOf({ ...honest, leafIndexes: [honest.fromTreeSize - 1, ...honest.leafIndexes.slice(1)] }),
        )
      ).code,
      'PROOF_HELD_EVENT',
      'an event at a leaf the lock already holds',
    )
    const padded = new Uint8Array(MAX_OFFLINE_PROOF_BYTES + 1)
    t.equal(
      (await side.ask(() => ({ proof: padded }))).code,
      'PROOF_OVERSIZE',
      'a proof over its limit, refused before decoding',
    )
    t.equal(
      (await side.ask(() => ({ proof: new Uint8Array(MAX_REQUEST_BYTES) }))).code,
      'DECODE_OVERSIZE',
      'a request line over its limit',
    )

    // The guest is revoked; its replica, following L0 in the grace L0 leaves a revoked session, records it. Its honest
    // proof now carries the revocation: the proof verifies, the decision is DENY.
    const follower = await followerOf(t, guest.home)
    follower.follower.start()
    await until(() => follower.files.replica.ledger.ledger.state.currentBinding(guest.cn) !== undefined, 10_000)
    const revoked = await kin([
      'revoke',
      '--home',
      fleet.l0.dir,
      guest.cn,
      '--broker',
      fleet.url,
      '--reason',
      'lost',
      '--json',
    ])
    expectExit(t, revoked, 0, 'L0 revokes the guest')
    t.ok(
      await until(
        () =>
          follower.files.replica.ledger.ledger.state.currentBinding(guest.cn)!.revocations.length > 0 &&
          follower.files.replica.head!.treeSize >= fleet.services.miner.miner.latestHead()!.treeSize,
        20_000,
      ),
      "the guest's replica holds its revocation",
    )
    await follower.close()
    t.same(
      await side.ask((_s, honest) => proofOf(honest)),
      { code: 'ACCESS_REVOKED', allow: false },
      'a revoked guest is denied even with a good proof',
    )
  },
)
