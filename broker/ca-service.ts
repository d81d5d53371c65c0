/** @module The CA service on `kin/<fid>/pair/<inviteId>/csr` (docs/PAIRING.md steps 5–6): checks the invite, then FleetCa issues. */
import { KinError, VerificationError } from '../agent/errors.ts'
import { readEvent } from '../agent/ledger/event.ts'
import { parseCsr } from '../agent/pki/csr-parse.ts'
import { decodeCsrPayload, encodeCertReply, type CertReply } from '../agent/gossip/pair-wire.ts'
import type { EncodedEvent } from '../agent/ledger/types.ts'
import type { ServiceContext } from './context.ts'
import { lineageFor } from './lineage.ts'
import { nodeVerifier } from '../runtime/node/verifier.ts'

// One CSR per invite at a time: two racing CSRs under one invite must not both be issued.
const inFlight = new WeakMap<ServiceContext, Set<string>>()

function checkAgainstInvite(ctx: ServiceContext, inviteId: string, authorize: EncodedEvent): void {
  const invite = ctx.invites.get(inviteId)
  if (invite === undefined)
    throw new VerificationError(
      'INVITE_REFUSED',
      `invite ${inviteId} is not on record (never registered, or expired and purged)`,
    )
  if (invite.state === 'withdrawn')
    throw new VerificationError(
      'PAIR_WITHDRAWN',
      `invite ${inviteId} was withdrawn by ${invite.parentCn}; ask for a new code`,
    )
  if (invite.state === 'done')
    throw new VerificationError(
      'ENROLL_STATE',
      `a certificate was already issued under invite ${inviteId} (to ${invite.enrolledCn})`,
    )
  const state = ctx.ledger.ledger.state
  // A rekey invite (docs/PROTOCOL.md "Rekey by the parent") issues against the parent's rekey of that very child only;
  // any other invite against an authorize event only.
  const want = invite.rekeyCn === undefined ? 'authorize' : 'rekey'
  if (authorize.event.type !== want)
    throw new VerificationError(
      invite.rekeyCn === undefined ? 'ENROLL_STATE' : 'INVITE_MISMATCH',
      `invite ${inviteId} is answered by ${want === 'rekey' ? 'a rekey' : 'an authorize'} event, got ${authorize.event.type}`,
    )
  const issuerCn = state.cnOfLabel(authorize.event.issuer)
  if (issuerCn !== invite.parentCn)
    throw new VerificationError(
      'INVITE_MISMATCH',
      `the authorization was signed by ${issuerCn}, but invite ${inviteId} is ${invite.parentCn}'s`,
    )
  if (authorize.event.type === 'rekey') {
    const subjectCn = state.cnOfLabel(authorize.event.subject)
    if (subjectCn !== invite.rekeyCn)
      throw new VerificationError(
        'INVITE_MISMATCH',
        `the rekey gives new keys to ${subjectCn}, but invite ${inviteId} is for ${invite.rekeyCn}`,
      )
    return
  }
  if (authorize.event.body.role !== invite.role)
    throw new VerificationError(
      'INVITE_MISMATCH',
      `the authorization grants role ${authorize.event.body.role}, but invite ${inviteId} is for ${invite.role}`,
    )
}

/**
 * Handles one CSR. The authorize event must be signed by the invite's parent for the invite's role; FleetCa then
 * runs the CSR's checks that need no arithmetic (names, RSA parameters, key), the ledger's, the signatures, appends the authorize event durably and issues. The answer on
 * `…/cert` is `['ok', certPem, [lineage event bytes…]]` (see lineageFor) or `['error', code, message]`.
 */
export async function handleCsr(
  ctx: ServiceContext,
  inviteId: string,
  topic: string,
  payload: Uint8Array,
): Promise<void> {
  const certTopic = ctx.topics.pair(inviteId, 'cert')
  const reply = (r: CertReply) => ctx.publish(certTopic, encodeCertReply(r))
  let busy = inFlight.get(ctx)
  if (busy === undefined) inFlight.set(ctx, (busy = new Set()))
  if (busy.has(inviteId)) {
    ctx.log('warn', 'ca.refused', {
      inviteId,
      code: 'ENROLL_STATE',
      message: 'another CSR under this invite is being handled',
    })
    await reply({ ok: false, code: 'ENROLL_STATE', message: `another CSR under invite ${inviteId} is being handled` })
    return
  }
  busy.add(inviteId)
  try {
    let msg
    try {
      msg = decodeCsrPayload(payload)
    } catch (err) {
      if (!(err instanceof KinError)) throw err
      ctx.log('warn', 'payload.dropped', { topic, code: err.code, message: err.message, bytes: payload.length })
      await reply({ ok: false, code: err.code, message: err.message })
      return
    }
    try {
      // Cheapest refusal first (DESIGN.md "Bounded inputs"): sizes and shapes (the proof, the CSR: parsed, its
      // signature not checked), the invite's state, then in FleetCa the CSR's names, its key's parameters and key,
      // and only then any signature. Nothing here does RSA arithmetic.
      const authorize = readEvent(ctx.crypto, msg.authorizeBytes)
      const csr = parseCsr(msg.csrPem, { sha256: ctx.crypto.sha256, verifier: nodeVerifier })
      checkAgainstInvite(ctx, inviteId, authorize)
      const issued = await ctx.ca.issue({ authorizeBytes: msg.authorizeBytes, csrPem: csr, now: ctx.now() })
      const cn = issued.certificate.cn
      // Kept before it is handed over: a certificate whose serial L0 does not know could never be put on a CRL.
      // Both journals' lines under group commits, side by side: the enrollments at once share their fsyncs, off the
      // event loop. Marking the invite done while the record fails only refuses a certificate that was never sent.
      const done = ctx.invites.markDoneGrouped(inviteId, cn)
      const recorded = await Promise.allSettled([ctx.issued.recordGrouped(issued.certificate, ctx.now()), done])
      if (recorded[0].status === 'rejected') throw recorded[0].reason
      try {
        await done
      } catch (err) {
        // The certificate exists and its proof is spent in the ledger (a replay is NONCE_REUSED): still hand it over.
        ctx.log('error', 'ledger.error', {
          inviteId,
          code: err instanceof KinError ? err.code : 'INTERNAL',
          message: (err as Error).message,
        })
      }
      const lineage = lineageFor(ctx.ledger.ledger.state, issued.authorize)
      await reply({ ok: true, certPem: issued.certificate.pem, lineage: lineage.map(e => e.bytes) })
      ctx.log('info', 'ca.issued', {
        inviteId,
        cn,
        parentCn: ctx.invites.get(inviteId)?.parentCn,
        ...(issued.authorize.event.type === 'rekey' ? { rekeyId: issued.authorize.idHex } : {}),
        serial: issued.certificate.serialHex,
        lineage: lineage.length,
      })
      await ctx.ledgerChanged([issued.authorize])
    } catch (err) {
      if (!(err instanceof KinError)) throw err
      ctx.log('warn', 'ca.refused', { inviteId, code: err.code, message: err.message })
      await reply({ ok: false, code: err.code, message: err.message })
    }
  } finally {
    busy.delete(inviteId)
  }
}
