/** @module L0's inbox service: invite registrations from parents (docs/PAIRING.md step 1), answered on the parent's inbox. */
import { KinError } from '../agent/errors.ts'
import { decodeCbor } from '../agent/codec/cbor.ts'
import { decodeInvite, verifyInvite, type Invite } from '../agent/enroll/invite.ts'
import { MAX_PAYLOAD_BYTES, inboxSender } from '../agent/gossip/topics.ts'
import { encodeInviteReply, encodeInviteWithdrawn, type InviteReply } from '../agent/gossip/pair-wire.ts'
import { isFleetCn } from './acl.ts'
import { handleRenew } from './renew-service.ts'
import { handleRekey } from './renew-service.ts'
import type { ServiceContext } from './context.ts'

async function answer(ctx: ServiceContext, parentCn: string, reply: InviteReply): Promise<void> {
  // The parent CN of a refused registration is unauthenticated: answer only on a well-formed fleet inbox.
  if (!isFleetCn(parentCn, ctx.fleet)) return
  await ctx.publish(ctx.topics.inbox(parentCn, ctx.cn), encodeInviteReply(reply))
}

/**
 * Handles one message on L0's inbox. `['invite', …]` is checked (verifyInvite against L0's ledger), stored
 * durably, and answered `['invite-ok', id]` or `['invite-error', id, code, message]` on the parent's inbox; one
 * that a session other than its parent's sent (the topic's sender level) is refused INBOX_SENDER_MISMATCH and
 * answered nowhere, so nobody can make L0 write into another device's inbox. Other CBOR messages are
 * for L0's own CLI session on the same inbox and are left alone; a payload that is not CBOR is dropped and logged.
 */
export async function handleL0Inbox(ctx: ServiceContext, topic: string, payload: Uint8Array): Promise<void> {
  let message
  try {
    message = decodeCbor(payload, MAX_PAYLOAD_BYTES)
  } catch (err) {
    if (!(err instanceof KinError)) throw err
    ctx.log('warn', 'payload.dropped', { topic, code: err.code, message: err.message, bytes: payload.length })
    return
  }
  if (Array.isArray(message) && message[0] === 'invite-withdraw') return handleWithdraw(ctx, topic, message)
  if (Array.isArray(message) && message[0] === 'renew')
    return handleRenew(ctx, inboxSender(ctx.fleet, ctx.cn, topic), topic, message)
  if (Array.isArray(message) && message[0] === 'rekey')
    return handleRekey(ctx, inboxSender(ctx.fleet, ctx.cn, topic), topic, message)
  if (!Array.isArray(message) || message[0] !== 'invite') return
  let claimed: Invite
  try {
    claimed = decodeInvite(payload).invite
  } catch (err) {
    if (!(err instanceof KinError)) throw err
    ctx.log('warn', 'payload.dropped', { topic, code: err.code, message: err.message, bytes: payload.length })
    return
  }
  const sender = inboxSender(ctx.fleet, ctx.cn, topic)
  if (sender !== claimed.parentCn) {
    ctx.log('warn', 'invite.refused', {
      inviteId: claimed.inviteId,
      parentCn: claimed.parentCn,
      sender,
      code: 'INBOX_SENDER_MISMATCH',
      message: `${sender} sent an invite in the name of ${claimed.parentCn}`,
    })
    return
  }
  const now = ctx.now()
  try {
    const invite = verifyInvite(ctx.crypto, ctx.ledger.ledger.state, payload, now)
    const outcome = await ctx.invites.registerGrouped(invite, now)
    ctx.log('info', 'invite.registered', {
      inviteId: invite.inviteId,
      parentCn: invite.parentCn,
      role: invite.role,
      ...(invite.rekeyCn === undefined ? {} : { rekeyCn: invite.rekeyCn }),
      expires: invite.expires,
      again: outcome === 'unchanged',
    })
    await answer(ctx, invite.parentCn, { ok: true, inviteId: invite.inviteId })
  } catch (err) {
    if (!(err instanceof KinError)) throw err
    ctx.log('warn', 'invite.refused', {
      inviteId: claimed.inviteId,
      parentCn: claimed.parentCn,
      code: err.code,
      message: err.message,
    })
    await answer(ctx, claimed.parentCn, { ok: false, inviteId: claimed.inviteId, code: err.code, message: err.message })
  }
}

/**
 * `['invite-withdraw', inviteId]`: the parent's `kin invite` was stopped. Its sender is the topic's sender level,
 * which the ACL ties to the session's CN, so no signature is needed: only the invite's own parent may withdraw it.
 * Answered `['invite-withdrawn', id]`, or `['invite-error', id, code, message]` (not its invite: INVITE_REFUSED;
 * already issued: ENROLL_STATE). The pairing session of a withdrawn invite is closed at the next sweep.
 */
async function handleWithdraw(ctx: ServiceContext, topic: string, message: unknown[]): Promise<void> {
  const sender = inboxSender(ctx.fleet, ctx.cn, topic)
  const inviteId = message[1]
  if (
    message.length !== 2 ||
    typeof inviteId !== 'string' ||
    !/^[0-9a-f]{16}$/.test(inviteId) ||
    sender === undefined
  ) {
    ctx.log('warn', 'payload.dropped', {
      topic,
      code: 'DECODE_SHAPE',
      message: "an invite withdrawal is ['invite-withdraw', 16 hex characters]",
    })
    return
  }
  try {
    if (!ctx.invites.ownedBy(sender, inviteId))
      throw new KinError('INVITE_REFUSED', `${sender} registered no invite ${inviteId} that is still on record`)
    ctx.invites.withdraw(inviteId, ctx.now())
    ctx.log('info', 'invite.withdrawn', { inviteId, parentCn: sender })
    await ctx.publish(ctx.topics.inbox(sender, ctx.cn), encodeInviteWithdrawn(inviteId))
  } catch (err) {
    if (!(err instanceof KinError)) throw err
    ctx.log('warn', 'invite.refused', { inviteId, parentCn: sender, code: err.code, message: err.message })
    await answer(ctx, sender, { ok: false, inviteId, code: err.code, message: err.message })
  }
}
