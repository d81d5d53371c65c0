/** @module Attacks on the miner: forged heads every follower must alarm on, and spam a guest sends it over MQTT (quotas, admission, no forced seals). */
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { encodeHead, headId, signHead, type BlockHead, type HeadFields } from '../../agent/ledger/head.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import { certifiedEvent, rekeyEvent } from '../../agent/ledger/builders.ts'
import { decodeBundle } from '../../agent/ledger/bundle.ts'
import { submitEvents } from '../../agent/gossip/submit.ts'
import { decodeLedgerResponse, encodeBundleRequest } from '../../agent/gossip/ledger-wire.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import type { IntakeResult } from '../../broker/miner-service.ts'
import { borrowFollowerClient } from './inbox-link.ts'
import type { LiveDevice } from '../live/fleet.ts'
import type { AttackContext } from './house.ts'
import { policyBy, setPolicy } from './lifecycle.ts'
import { watchMiner } from './miner-watch.ts'
import type { AttackRunner } from './runner.ts'
import { ACCEPTED, type AttackOutcome } from './types.ts'
import { SEAL_INTERVAL_MS } from '../../broker/miner-service.ts'

const ALARM_WAIT_MS = 5000

/** A different 32-byte root: the real one with every bit of its first byte flipped. */
function otherRoot(root: Uint8Array): Uint8Array {
  const r = Uint8Array.from(root)
  r[0]! ^= 0xff
  return r
}

async function waitFor(check: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) return false
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  return true
}

/**
 * Publishes `head` on the head topic as L0's services would and waits until every following device has raised an
 * alarm for it. The outcome's code is the alarm code the devices agree on; any device that adopted the head, or
 * stayed silent, makes it a failure.
 */
async function publishForged(ctx: AttackContext, head: BlockHead): Promise<AttackOutcome> {
  const { fleet } = ctx
  const followers = fleet.standing().filter(d => d.follower !== undefined)
  const bytes = encodeHead(head)
  const forgedId = toHex(headId(nodeCrypto, head))
  const before = new Map(followers.map(d => [d.label, d.replica!.replica.headId]))
  const seen = ctx.alarms.length
  // Not retained: the retained head stays the miner's genuine one, so devices that connect later never see this.
  await fleet.l0.publish(fleet.l0.topics.head, bytes)
  const alarmed = (d: LiveDevice): string | undefined => ctx.alarms.slice(seen).find(a => a.label === d.label)?.code
  await waitFor(() => followers.every(d => alarmed(d) !== undefined), ALARM_WAIT_MS)
  const adopted = followers.filter(d => d.replica!.replica.headId === forgedId)
  const silent = followers.filter(d => alarmed(d) === undefined)
  const moved = followers.filter(d => d.replica!.replica.headId !== before.get(d.label))
  const codes = [...new Set(followers.map(alarmed).filter(c => c !== undefined))]
  if (adopted.length > 0)
    return { actual: ACCEPTED, detail: `${adopted.map(d => d.label).join(', ')} adopted the forged head` }
  if (silent.length > 0)
    return {
      actual: 'NO_ALARM',
      detail: `${silent.map(d => d.label).join(', ')} raised no alarm within ${ALARM_WAIT_MS} ms (others: ${codes.join(', ') || 'none'})`,
    }
  const kept =
    moved.length === 0
      ? 'each kept its head'
      : `${moved.map(d => d.label).join(', ')} moved on to a genuine head meanwhile`
  return {
    actual: codes.join('+'),
    detail: `${followers.length}/${followers.length} devices raised ${codes.join(', ')} and ${kept}`,
  }
}

/** Forged heads against every device following the ledger, then a genuine head they must still adopt. */
export async function minerAttacks(ctx: AttackContext, run: AttackRunner): Promise<void> {
  const { fleet } = ctx
  await fleet.converge()
  const minerSeed = fleet.device('L0').ledgerSeed
  const genuine = (): { head: BlockHead; id: Uint8Array } => {
    const head = fleet.l0.miner.miner.latestHead()!
    return { head, id: headId(nodeCrypto, head) }
  }
  const fields = (over: Partial<HeadFields>): HeadFields => {
    const { head, id } = genuine()
    return {
      height: head.height + 1,
      prevHeadId: id,
      time: fleet.clock.now(),
      treeSize: head.treeSize,
      root: head.root,
      ...over,
    }
  }

  await run.run(
    {
      id: 'head-eve-signed',
      family: 'miner',
      kind: 'attack',
      attack: "a next head over the same tree, signed with Eve's key instead of the miner's",
      expected: ['HEAD_SIGNATURE'],
    },
    () => publishForged(ctx, signHead(nodeCrypto, fields({}), ctx.eve.ledgerSeed)),
  )
  await run.run(
    {
      id: 'head-fork',
      family: 'miner',
      kind: 'attack',
      attack: 'a second head at the current height, signed with the real miner key over another root',
      expected: ['HEAD_FORK'],
    },
    () => {
      const { head } = genuine()
      return publishForged(
        ctx,
        signHead(
          nodeCrypto,
          {
            height: head.height,
            prevHeadId: head.prevHeadId,
            time: head.time,
            treeSize: head.treeSize,
            root: otherRoot(head.root),
          },
          minerSeed,
        ),
      )
    },
  )
  await run.run(
    {
      id: 'head-inconsistent',
      family: 'miner',
      kind: 'attack',
      attack: 'a next head naming the current one, real miner key, same size, another root',
      expected: ['HEAD_INCONSISTENT', 'HEAD_ROOT_MISMATCH'],
    },
    () => {
      const { head } = genuine()
      return publishForged(ctx, signHead(nodeCrypto, fields({ root: otherRoot(head.root) }), minerSeed))
    },
  )
  await run.run(
    {
      id: 'head-genuine-after-forks',
      family: 'miner',
      kind: 'control',
      attack: "after the forgeries, every device adopts the miner's next genuine head",
      expected: [ACCEPTED],
    },
    async () => {
      // A genuine event to seal: the owner's phone restates the default view rule on the garden camera.
      await setPolicy(ctx, 'L2.1', 'L3.1', [
        { action: 'view', roles: ['admin', 'member', 'device', 'guest'], from: 0, to: 0 },
      ])
      const latest = toHex(genuine().id)
      const followers = fleet.standing().filter(d => d.follower !== undefined)
      const held = await waitFor(() => followers.every(d => d.replica!.replica.headId === latest), ALARM_WAIT_MS)
      const behind = followers.filter(d => d.replica!.replica.headId !== latest)
      if (!held)
        return {
          actual: 'HEAD_STUCK',
          detail: `${behind.map(d => d.label).join(', ')} did not adopt head ${genuine().head.height}`,
        }
      return {
        actual: ACCEPTED,
        detail: `${followers.length}/${followers.length} devices hold head ${genuine().head.height} over ${genuine().head.treeSize} events`,
      }
    },
  )
  await spamAttacks(ctx, run)
}

const SPAM_WAIT_MS = 10_000
/** Submissions and events of the flood: the 1,280 events of the attack that found the defect. */
const FLOOD_SUBMISSIONS = 5
const FLOOD_PER_SUBMISSION = 256
/** Bundle requests of the bundle spam, each right after an event of the requester's lineage entered the log. */
const BUNDLE_ROUNDS = 12

/** `label` submits `event` over MQTT on its own submit topic (its follower's session); L0's miner's verdict on it. */
async function submitOver(ctx: AttackContext, label: string, event: EncodedEvent): Promise<AttackOutcome> {
  const { fleet } = ctx
  const verdict = watchMiner(fleet, event.idHex)
  try {
    const client = await borrowFollowerClient(fleet, label)
    try {
      await submitEvents(client, fleet.l0.fleet, fleet.device(label).cn, [event])
    } finally {
      await client.close()
    }
    const seen = await verdict.result
    const held = fleet.l0.ledger.ledger.state.has(event.idHex)
    if (seen.refused === undefined || held)
      return { actual: ACCEPTED, detail: `L0's miner took it (${seen.result.accepted.length} accepted)` }
    return {
      actual: seen.refused.code,
      detail: `the broker acknowledged it; L0's miner refused it (${seen.refused.code}), so no head covers it: ${seen.refused.message}`,
    }
  } finally {
    verdict.stop()
  }
}

/** Spam a guest sends the miner from its own session: what the permanent ledger must not hold, and requests that must not force heads. */
async function spamAttacks(ctx: AttackContext, run: AttackRunner): Promise<void> {
  const { fleet } = ctx
  const state = () => fleet.l0.ledger.ledger.state

  await run.run(
    {
      id: 'certified-not-issued',
      family: 'miner',
      kind: 'attack',
      attack: 'over MQTT: the guest submits a certified event for a certificate hash the fleet CA never issued',
      expected: ['CERTIFIED_NOT_ISSUED'],
    },
    () => {
      const guest = fleet.device('L3.4')
      const binding = state().currentBinding(guest.cn)!
      return submitOver(
        ctx,
        'L3.4',
        signEvent(nodeCrypto, certifiedEvent(binding, nodeCrypto.randomBytes(32), fleet.clock.now()), guest.ledgerSeed),
      )
    },
  )
  await run.run(
    {
      id: 'policy-not-delegator',
      family: 'miner',
      kind: 'attack',
      attack: 'over MQTT: the guest sets a policy on itself (it may not delegate)',
      expected: ['POLICY_NOT_DELEGATOR'],
    },
    () => submitOver(ctx, 'L3.4', policyBy(ctx, 'L3.4', 'L3.4', [{ action: '*', roles: ['guest'], from: 0, to: 0 }])),
  )
  await run.run(
    {
      id: 'rekey-not-parent',
      family: 'miner',
      kind: 'attack',
      attack:
        "over MQTT: the guest signs new keys of its own for the front-door lock (a rekey, which only the lock's parent may sign)",
      expected: ['REKEY_NOT_PARENT'],
    },
    () => {
      const sibling = fleet.device('L3.1')
      const issuer = state().currentBinding(sibling.cn)!
      const keys = nodeCrypto.ed25519KeyPair(nodeCrypto.randomBytes(32))
      const rekey = rekeyEvent(
        nodeCrypto,
        issuer,
        state().currentBinding(fleet.device('L3.3').cn)!,
        { spkiHash: nodeCrypto.randomBytes(32), ledgerKey: keys.publicKey, notAfter: issuer.notAfter },
        fleet.clock.now(),
      )
      return submitOver(ctx, 'L3.1', signEvent(nodeCrypto, rekey, sibling.ledgerSeed))
    },
  )

  await run.run(
    {
      id: 'spam-flood',
      family: 'miner',
      kind: 'attack',
      attack: `over MQTT: the dog-sitter's phone submits ${FLOOD_SUBMISSIONS * FLOOD_PER_SUBMISSION} certified events in ${FLOOD_SUBMISSIONS} submissions at once`,
      expected: ['QUOTA_RATE', 'QUOTA_BYTES'],
    },
    async () => {
      const guest = fleet.device('L3.5')
      const binding = state().currentBinding(guest.cn)!
      const batches = Array.from({ length: FLOOD_SUBMISSIONS }, () =>
        Array.from({ length: FLOOD_PER_SUBMISSION }, () =>
          signEvent(
            nodeCrypto,
            certifiedEvent(binding, nodeCrypto.randomBytes(32), fleet.clock.now()),
            guest.ledgerSeed,
          ),
        ),
      )
      const bytes = batches.flat().reduce((n, e) => n + e.bytes.length, 0)
      const size = fleet.l0.ledger.ledger.size
      // Observes what L0's miner service makes of each of the guest's submissions (it is never told otherwise).
      const miner = fleet.l0.miner
      const submit = miner.submit.bind(miner)
      const results: IntakeResult[] = []
      miner.submit = async (eventBytes, now, from) => {
        const out = await submit(eventBytes, now, from)
        if (from === guest.cn) results.push(out)
        return out
      }
      try {
        const client = await borrowFollowerClient(fleet, 'L3.5')
        try {
          for (const batch of batches) await submitEvents(client, fleet.l0.fleet, guest.cn, batch)
        } finally {
          await client.close()
        }
        const end = Date.now() + SPAM_WAIT_MS
        while (results.length < FLOOD_SUBMISSIONS && Date.now() < end) await new Promise(r => setTimeout(r, 20))
      } finally {
        Reflect.deleteProperty(miner, 'submit')
      }
      const grew = fleet.l0.ledger.ledger.size - size
      const codes = [...new Set(results.map(r => r.overQuota?.code ?? r.refused[0]?.code ?? ACCEPTED))]
      const detail = `${results.length}/${FLOOD_SUBMISSIONS} submissions (${bytes} B) seen by L0's miner, refused whole (${codes.join(', ')}); L0's ledger grew by ${grew} events`
      if (results.length < FLOOD_SUBMISSIONS) return { actual: 'BROKER_TIMEOUT', detail }
      if (grew > 0 || results.some(r => r.accepted.length > 0)) return { actual: ACCEPTED, detail }
      return { actual: codes.length === 1 ? codes[0]! : codes.join('+'), detail }
    },
  )

  await run.run(
    {
      id: 'spam-bundles',
      family: 'miner',
      kind: 'attack',
      attack: `over MQTT: the dog-sitter's phone asks for its bundle ${BUNDLE_ROUNDS} times, each right after an event of its lineage entered the log`,
      expected: ['SEAL_ON_SCHEDULE'],
    },
    async () => {
      const guest = fleet.device('L3.5')
      const topics = fleet.l0.topics
      const client = await borrowFollowerClient(fleet, 'L3.5')
      const height0 = fleet.l0.miner.miner.latestHead()!.height
      const started = Date.now()
      const answered: number[] = []
      const refusals: string[] = []
      try {
        for (let i = 0; i < BUNDLE_ROUNDS; i++) {
          // L0 restates the default view rule on the phone: an event of its lineage that no head covers yet.
          const event = policyBy(ctx, 'L0', 'L3.5', [
            { action: 'view', roles: ['admin', 'member', 'device', 'guest'], from: i, to: 0 },
          ])
          await fleet.l0.miner.submit([event.bytes], fleet.clock.now())
          await client.publish(topics.syncReq(guest.cn), encodeBundleRequest(guest.cn))
        }
        for (let i = 0; i < BUNDLE_ROUNDS; i++) {
          answered.push(
            await client.waitFor(
              topics.syncResp(guest.cn),
              p => {
                const reply = decodeLedgerResponse(p)
                if (reply.kind === 'bundle' && reply.cn === guest.cn) return decodeBundle(reply.bundleBytes).head.height
                if (reply.kind === 'error' && reply.request === 'bundle') {
                  refusals.push(`${reply.code}: ${reply.message}`)
                  return -1
                }
                return undefined
              },
              { timeoutMs: SPAM_WAIT_MS, code: 'BROKER_TIMEOUT', message: 'no bundle answer from L0' },
            ),
          )
        }
      } finally {
        await client.close()
      }
      const ms = Date.now() - started
      const heads = fleet.l0.miner.miner.latestHead()!.height - height0
      // On schedule: at most one head per seal interval that passed, and the one that covers the last event.
      const allowed = Math.floor(ms / SEAL_INTERVAL_MS) + 1
      const detail = `${heads} heads sealed in ${ms} ms for ${BUNDLE_ROUNDS} requests (the schedule allows ${allowed}); answers against heads ${[...new Set(answered)].join(', ')}`
      if (answered.includes(-1))
        return { actual: 'BUNDLE_REFUSED', detail: `${detail}; refused: ${refusals.join('; ')}` }
      return { actual: heads <= allowed ? 'SEAL_ON_SCHEDULE' : 'SEAL_FORCED', detail }
    },
  )
}
