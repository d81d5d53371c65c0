/** @module A forking miner: forged heads published on the head topic as L0's services; every follower must alarm and keep its head. */
import { nodeCrypto } from '../../firmware-shims/node/crypto.ts'
import { encodeHead, headId, signHead, type BlockHead, type HeadFields } from '../../agent/ledger/head.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import type { LiveDevice } from '../live/fleet.ts'
import type { AttackContext } from './house.ts'
import { setPolicy } from './lifecycle.ts'
import type { AttackRunner } from './runner.ts'
import { ACCEPTED, type AttackOutcome } from './types.ts'

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
  if (adopted.length > 0) return { actual: ACCEPTED, detail: `${adopted.map(d => d.label).join(', ')} adopted the forged head` }
  if (silent.length > 0) return { actual: 'NO_ALARM', detail: `${silent.map(d => d.label).join(', ')} raised no alarm within ${ALARM_WAIT_MS} ms (others: ${codes.join(', ') || 'none'})` }
  const kept = moved.length === 0 ? 'each kept its head' : `${moved.map(d => d.label).join(', ')} moved on to a genuine head meanwhile`
  return { actual: codes.join('+'), detail: `${followers.length}/${followers.length} devices raised ${codes.join(', ')} and ${kept}` }
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
    return { height: head.height + 1, prevHeadId: id, time: fleet.clock.now(), treeSize: head.treeSize, root: head.root, ...over }
  }

  await run.run({ id: 'head-eve-signed', family: 'miner', kind: 'attack', attack: "a next head over the same tree, signed with Eve's key instead of the miner's", expected: ['HEAD_SIGNATURE'] },
    () => publishForged(ctx, signHead(nodeCrypto, fields({}), ctx.eve.ledgerSeed)))
  await run.run({ id: 'head-fork', family: 'miner', kind: 'attack', attack: 'a second head at the current height, signed with the real miner key over another root', expected: ['HEAD_FORK'] }, () => {
    const { head } = genuine()
    return publishForged(ctx, signHead(nodeCrypto, { height: head.height, prevHeadId: head.prevHeadId, time: head.time, treeSize: head.treeSize, root: otherRoot(head.root) }, minerSeed))
  })
  await run.run({ id: 'head-inconsistent', family: 'miner', kind: 'attack', attack: 'a next head naming the current one, real miner key, same size, another root', expected: ['HEAD_INCONSISTENT', 'HEAD_ROOT_MISMATCH'] }, () => {
    const { head } = genuine()
    return publishForged(ctx, signHead(nodeCrypto, fields({ root: otherRoot(head.root) }), minerSeed))
  })
  await run.run({ id: 'head-genuine-after-forks', family: 'miner', kind: 'control', attack: "after the forgeries, every device adopts the miner's next genuine head", expected: [ACCEPTED] }, async () => {
    // A genuine event to seal: the owner's phone restates the default view rule on the garden camera.
    await setPolicy(ctx, 'L2.1', 'L3.1', [{ action: 'view', roles: ['admin', 'member', 'device', 'guest'], from: 0, to: 0 }])
    const latest = toHex(genuine().id)
    const followers = fleet.standing().filter(d => d.follower !== undefined)
    const held = await waitFor(() => followers.every(d => d.replica!.replica.headId === latest), ALARM_WAIT_MS)
    const behind = followers.filter(d => d.replica!.replica.headId !== latest)
    if (!held) return { actual: 'HEAD_STUCK', detail: `${behind.map(d => d.label).join(', ')} did not adopt head ${genuine().head.height}` }
    return { actual: ACCEPTED, detail: `${followers.length}/${followers.length} devices hold head ${genuine().head.height} over ${genuine().head.treeSize} events` }
  })
}
