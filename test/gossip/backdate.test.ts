import t from 'tap'
import { nodePki } from '../../runtime/node/pki.ts'
import { createCsr } from '../../agent/pki/csr.ts'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LiveFleet } from '../../sim/live/fleet.ts'
import {
  backDatedEvent,
  holdersOf,
  presentToCa,
  relayToMiner,
  type BackDateCast,
  type BackDatedKind,
} from '../../sim/attacks/backdate.ts'
import { watchMiner } from '../../sim/attacks/miner-watch.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { policyEvent } from '../../agent/ledger/builders.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import { codeOf } from '../helpers/ledger-fleet.ts'

// DESIGN.md "Whose clock counts: the log's": a stolen key whose revocation is in the log produces no new valid event,
// whatever time it writes. Real broker (aedes, mutual TLS), pairing codes, followers; the thief holds the laptop's
// ledger-key file and relays through the guest's own MQTT session.
t.test(
  'a stolen laptop, revoked, back-dates an authorize, a policy and a revocation: each refused at the miner, held by no ledger',
  async t => {
    const dir = mkdtempSync(join(tmpdir(), 'kin-backdate-'))
    const fleet = await LiveFleet.start({ dir, domain: 'smith.home.arpa' })
    t.teardown(async () => {
      await fleet.close()
      rmSync(dir, { recursive: true, force: true })
    })
    const house = [
      { label: 'L1', parent: 'L0', role: 'admin', kind: 'laptop', name: 'laptop' },
      { label: 'L2.1', parent: 'L1', role: 'member', kind: 'phone', name: "owner's phone" },
      { label: 'L3.3', parent: 'L2.1', role: 'device', kind: 'lock', name: 'front-door lock' },
      { label: 'L3.4', parent: 'L2.1', role: 'guest', kind: 'phone', name: "guest's phone" },
    ] as const
    for (const d of house) await fleet.enroll(d.label, d.parent, { role: d.role, kind: d.kind, name: d.name })
    await fleet.converge()
    // The theft comes two hours after the house was set up: every back-dated time below is after the laptop was bound.
    fleet.clock.advance(7200)
    const guestConfigures = await fleet.access('L3.4', 'L3.3', 'configure')
    t.notOk(guestConfigures.allow, `before: the guest may not configure the lock (${guestConfigures.code})`)

    const revocation = await fleet.revoke('L0', 'L1', { reason: 'compromised', subtree: false })
    await fleet.converge()
    const at = revocation.event.time
    const cast: BackDateCast = { thief: 'L1', lock: 'L3.3', owner: 'L2.1', relay: 'L3.4' }
    const replicas = [...fleet.devices.values()].filter(d => d.replica !== undefined)
    t.equal(replicas.length, house.length, 'every enrolled device follows the ledger')

    // An hour back lies outside the miner's clock skew; a minute back inside it, where log position alone decides.
    // The miner's quota gives a guest 4 events at once (PROTOCOL.md §11.4), so the six attempts go through two relays:
    // the guest's session for those an hour back, the lock's for those a minute back.
    for (const kind of ['authorize', 'policy', 'revoke'] as BackDatedKind[]) {
      for (const [back, code] of [
        [3600, 'TIME_TOO_OLD'],
        [60, 'ISSUER_REVOKED_IN_LOG'],
      ] as const) {
        const event = backDatedEvent(fleet, cast, kind, at, back)
        const outcome = await relayToMiner(fleet, back === 3600 ? cast.relay : 'L3.3', event)
        t.equal(outcome.actual, code, `${kind} dated ${back} s before the revocation: ${outcome.detail}`)
        t.same(holdersOf(fleet, event.idHex), [], `${kind} dated ${back} s back: no ledger holds it, L0's included`)
        for (const d of replicas) {
          t.equal(
            codeOf(() => d.replica!.ledger.ledger.check(event)),
            'ISSUER_REVOKED_IN_LOG',
            `${kind} dated ${back} s back: ${d.label}'s own validation (log order, no clock) refuses it`,
          )
        }
      }
    }

    // The new admin's authorization cannot reach a certificate either: the CA judges it against L0's log.
    // The CSR is a real one for the key the thief authorized, so every cheaper check of the CA passes first.
    const childTls = await nodePki.generateTlsKeyPair()
    const authorize = backDatedEvent(fleet, cast, 'authorize', at, 60, childTls)
    const childCn = fleet.l0.ledger.ledger.state.cnOfLabel(authorize.event.subject)
    const ca = await presentToCa(
      fleet,
      authorize,
      await createCsr({ cn: childCn, parentCn: fleet.cnOf(cast.thief), keyPair: childTls }),
    )
    t.equal(ca.code, 'ISSUER_REVOKED_IN_LOG', `the fleet CA refuses it: ${ca.message}`)
    t.same(holdersOf(fleet, authorize.idHex), [], 'and did not record it')

    // What the laptop signed before its revocation still counts; what the thief tried changed nothing.
    const owner = await fleet.access('L2.1', 'L3.3', 'unlock')
    t.ok(owner.allow, `the owner's phone, authorized by the laptop before, still opens the door (${owner.code})`)
    const guestAfter = await fleet.access('L3.4', 'L3.3', 'configure')
    t.notOk(guestAfter.allow, `the guest still may not configure the lock (${guestAfter.code})`)
    t.equal(
      fleet.l0.ledger.ledger.state.currentBinding(fleet.cnOf('L2.1'))!.revocations.length,
      0,
      "the owner's phone carries no revocation",
    )
  },
)

// DESIGN.md: a device that signed an event while it could not reach the miner signs it again, with a fresh time.
t.test(
  'an event signed offline too long ago: the miner refuses it TIME_TOO_OLD, the device is told, a fresh signature goes through',
  async t => {
    const dir = mkdtempSync(join(tmpdir(), 'kin-offline-stale-'))
    const fleet = await LiveFleet.start({ dir, domain: 'smith.home.arpa' })
    t.teardown(async () => {
      await fleet.close()
      rmSync(dir, { recursive: true, force: true })
    })
    await fleet.enroll('L1', 'L0', { role: 'admin', kind: 'laptop', name: 'laptop' })
    await fleet.enroll('L3.3', 'L1', { role: 'device', kind: 'lock', name: 'front-door lock' })
    await fleet.converge()
    fleet.clock.advance(7200)
    const laptop = fleet.device('L1')
    const state = laptop.replica!.ledger.ledger.state
    const policyAt = (time: number) =>
      signEvent(
        nodeCrypto,
        policyEvent(
          state.currentBinding(laptop.cn)!,
          state.currentBinding(fleet.cnOf('L3.3'))!,
          {
            subtree: false,
            maxHops: 0,
            maxHeadAge: 0,
            anchors: [],
            rules: [{ action: 'unlock', roles: ['admin'], from: 0, to: 0 }],
          },
          time,
        ),
        laptop.ledgerSeed,
      )
    // Signed an hour ago while the laptop was away: it sits in its own ledger, beyond what any head covers.
    const offline = policyAt(fleet.clock.now() - 3600)
    const kept = await laptop.replica!.replica.appendLocal([offline])
    t.equal(kept.accepted.length, 1, "the laptop's own ledger takes its event (no intake clock on a device)")
    const verdict = watchMiner(fleet, offline.idHex)
    try {
      const report = await laptop.follower!.syncOnce(30_000)
      t.equal(
        report.stale?.code,
        'TIME_TOO_OLD',
        `the sync report says why it will not be sealed: ${report.stale?.message}`,
      )
      t.same(report.stale?.detail?.['ids'], [offline.idHex], 'naming the event')
      const seen = await verdict.result
      t.equal(
        seen.refused?.code,
        'TIME_TOO_OLD',
        'and the miner, which it was still handed to, refused it on its own clock',
      )
    } finally {
      verdict.stop()
    }
    t.notOk(fleet.l0.ledger.ledger.state.has(offline.idHex), "L0's ledger does not hold it")
    const fresh = policyAt(fleet.clock.now())
    await fleet.submitAs(laptop, [fresh])
    await fleet.converge()
    t.ok(
      fleet.device('L3.3').replica!.ledger.ledger.state.has(fresh.idHex),
      'signed again with a fresh time, it is sealed and reaches the lock',
    )
  },
)
