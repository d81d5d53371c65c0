/** @module Attacks that ride on the fleet's life: a narrowing policy, a policy from outside the lineage (submitted over MQTT), a revoked ancestor (and the revoked device told of it), an expired guest, a stolen key back-dating. */
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { policyEvent } from '../../agent/ledger/builders.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import { submitEvents } from '../../agent/gossip/submit.ts'
import { describeRevocation } from '../../agent/gossip/revocation-notice.ts'
import type { EncodedEvent, PolicyRule } from '../../agent/ledger/types.ts'
import type { AttackContext } from './house.ts'
import { borrowFollowerClient } from './inbox-link.ts'
import { watchMiner } from './miner-watch.ts'
import { backDateAttacks } from './backdate.ts'
import { decided, type AttackRunner } from './runner.ts'
import { ACCEPTED, type AttackOutcome } from './types.ts'

const DAY = 86400

/** A `policy` event by `byLabel` on `onLabel` (that device only), signed with by's ledger key; not submitted. */
export function policyBy(ctx: AttackContext, byLabel: string, onLabel: string, rules: PolicyRule[]): EncodedEvent {
  const { fleet } = ctx
  const by = fleet.device(byLabel),
    on = fleet.device(onLabel)
  const state = (by.replica?.ledger ?? fleet.l0.ledger).ledger.state
  const body = { subtree: false, maxHops: 0, maxHeadAge: 0, anchors: [], rules }
  return signEvent(
    nodeCrypto,
    policyEvent(state.currentBinding(by.cn)!, state.currentBinding(on.cn)!, body, fleet.clock.now()),
    by.ledgerSeed,
  )
}

/** `byLabel` sets a policy on `onLabel`, hands it to the miner, and waits until every device holds it. */
export async function setPolicy(
  ctx: AttackContext,
  byLabel: string,
  onLabel: string,
  rules: PolicyRule[],
): Promise<EncodedEvent> {
  const event = policyBy(ctx, byLabel, onLabel, rules)
  await ctx.fleet.submitAs(ctx.fleet.device(byLabel), [event])
  await ctx.fleet.converge()
  return event
}

/**
 * These cases change the live fleet for good, so they run last, in an order where no earlier refusal can mask a
 * later one: the policy is withdrawn before the revocation, the revoked guest is not the one whose stay runs out.
 */
export async function lifecycleAttacks(ctx: AttackContext, run: AttackRunner): Promise<void> {
  const { fleet } = ctx
  const access = async (peer: string, target: string, action: string): Promise<AttackOutcome> =>
    decided(peer, target, action, await fleet.access(peer, target, action))

  await run.run(
    {
      id: 'policy-narrowed',
      family: 'lifecycle',
      kind: 'attack',
      attack: "the owner's phone narrows 'unlock' on the lock to admins and members; the guest tries it",
      expected: ['POLICY_ROLE', 'POLICY_ACTION'],
    },
    async () => {
      await setPolicy(ctx, 'L2.1', 'L3.3', [{ action: 'unlock', roles: ['admin', 'member'], from: 0, to: 0 }])
      return access('L3.4', 'L3.3', 'unlock')
    },
  )
  await run.run(
    {
      id: 'policy-owner',
      family: 'lifecycle',
      kind: 'control',
      attack: 'under that policy the owner still opens the door',
      expected: ['ALLOW'],
    },
    () => access('L2.1', 'L3.3', 'unlock'),
  )
  await run.run(
    {
      id: 'policy-outsider',
      family: 'lifecycle',
      kind: 'attack',
      attack: 'over MQTT: the guest submits a policy on the lock granting guests every action',
      expected: ['POLICY_NOT_ANCESTOR'],
    },
    async () => {
      // Its own ledger would not even take it; a device that skips that check meets the miner's, which is this one.
      const guest = fleet.device('L3.4')
      // A minute after the guest's last try: a guest regains one event per 20 s (agent/ledger/quota.ts), and its
      // certified event and two refused submissions used most of its four, so its budget is not what refuses it.
      fleet.clock.advance(60)
      const event = policyBy(ctx, 'L3.4', 'L3.3', [{ action: '*', roles: ['guest'], from: 0, to: 0 }])
      const verdict = watchMiner(fleet, event.idHex)
      try {
        // Published on the guest's own submit topic from its own broker session (the follower's: one session per CN).
        const client = await borrowFollowerClient(fleet, 'L3.4')
        try {
          await submitEvents(client, fleet.l0.fleet, guest.cn, [event])
        } finally {
          await client.close()
        }
        const seen = await verdict.result
        // A device is not told of a refusal (submit.ts: it shows in L0's log); what the wire shows is that no head
        // covers the event, so no device ever receives it.
        await fleet.l0.seal()
        await fleet.converge()
        const holders = [...fleet.devices.values()]
          .filter(d => (d.replica?.ledger ?? fleet.l0.ledger).ledger.state.has(event.idHex))
          .map(d => d.label)
        const wire =
          holders.length === 0
            ? `no head covers it: none of the ${fleet.devices.size} ledgers (L0's included) holds it`
            : `held by ${holders.join(', ')}`
        if (seen.refused !== undefined && holders.length === 0)
          return {
            actual: seen.refused.code,
            detail: `the broker acknowledged it; L0's miner refused it (${seen.refused.code}, as its ledger.refused log line says): ${seen.refused.message}; ${wire}`,
          }
        if (seen.refused !== undefined)
          return {
            actual: ACCEPTED,
            detail: `L0's miner refused it (${seen.refused.code}) yet the event spread: ${wire}`,
          }
        return {
          actual: ACCEPTED,
          detail: `L0's miner took it (${seen.result.accepted.length} accepted, ${seen.result.known.length} known, ${seen.result.pending.length} pending); ${wire}`,
        }
      } finally {
        verdict.stop()
      }
    },
  )
  await run.run(
    {
      id: 'policy-withdrawn',
      family: 'lifecycle',
      kind: 'control',
      attack: "the owner's phone restores 'unlock' for guests; the guest opens the door again",
      expected: ['ALLOW'],
    },
    async () => {
      // A later policy event on the same device outranks the earlier one (policy.ts: newest first).
      fleet.clock.advance(60)
      await setPolicy(ctx, 'L2.1', 'L3.3', [{ action: 'unlock', roles: ['admin', 'member', 'guest'], from: 0, to: 0 }])
      return access('L3.4', 'L3.3', 'unlock')
    },
  )
  await run.run(
    {
      id: 'dog-sitter-unlocks',
      family: 'lifecycle',
      kind: 'control',
      attack: "the dog-sitter's phone opens the door during its three-day stay",
      expected: ['ALLOW'],
    },
    () => access('L3.5', 'L3.3', 'unlock'),
  )

  await run.run(
    {
      id: 'revoked-ancestor',
      family: 'lifecycle',
      kind: 'attack',
      attack: 'the laptop revokes the compromised tablet and its subtree; the guest below it tries the door',
      expected: ['ACCESS_ANCESTOR_REVOKED'],
    },
    async () => {
      await fleet.revoke('L1', 'L2.2', { reason: 'compromised', subtree: true })
      await fleet.converge()
      return access('L3.4', 'L3.3', 'unlock')
    },
  )
  await run.run(
    {
      id: 'revoked-device',
      family: 'lifecycle',
      kind: 'attack',
      attack: 'the revoked tablet itself asks the lock to view',
      expected: ['ACCESS_REVOKED'],
    },
    () => access('L2.2', 'L3.3', 'view'),
  )
  await run.run(
    {
      id: 'revoked-device-told',
      family: 'lifecycle',
      kind: 'attack',
      attack:
        'the revoked tablet would serve on, deciding on a ledger without its own revocation; L0 lets the head reach it before closing its session',
      expected: ['IDENTITY_REVOKED'],
    },
    async () => {
      const tablet = fleet.device('L2.2')
      let notice = tablet.follower?.revocation()
      for (let i = 0; i < 500 && notice === undefined; i++) {
        await new Promise(r => setTimeout(r, 20))
        notice = tablet.follower?.revocation()
      }
      if (notice === undefined)
        return {
          actual: 'SERVING',
          detail: "the tablet's own ledger does not record its revocation: it would go on serving",
        }
      return { actual: 'IDENTITY_REVOKED', detail: describeRevocation(notice) }
    },
  )
  await run.run(
    {
      id: 'owner-after-revocation',
      family: 'lifecycle',
      kind: 'control',
      attack: "the owner's branch keeps its access after the revocation",
      expected: ['ALLOW'],
    },
    () => access('L2.1', 'L3.3', 'unlock'),
  )

  await run.run(
    {
      id: 'guest-expired',
      family: 'lifecycle',
      kind: 'attack',
      attack: "the dog-sitter's stay ends (sim clock +3 days); its phone tries the door",
      expected: ['CERT_EXPIRED', 'ACCESS_EXPIRED'],
    },
    async () => {
      fleet.clock.advance(3 * DAY + 3600)
      return access('L3.5', 'L3.3', 'unlock')
    },
  )
  await run.run(
    {
      id: 'owner-after-expiry',
      family: 'lifecycle',
      kind: 'control',
      attack: 'the owner still opens the door three days later',
      expected: ['ALLOW'],
    },
    () => access('L2.1', 'L3.3', 'unlock'),
  )
  // Last: the laptop's revocation takes the key that signed the cases above.
  await backDateAttacks(ctx, run)
}
