/**
 * @module L0's renewal and rekey service: `['renew', id, csr]` and `['rekey', id, csr, rekey event]` on L0's inbox
 * from a device's own session, answered on its inbox.
 */
import { KinError } from '../agent/errors.ts'
import { encodeRenewReply, rekeyRequestOf, renewRequestOf, type RenewReply } from '../agent/gossip/renew-wire.ts'
import type { DeviceCertificate } from '../agent/pki/certificate.ts'
import { parseCsr } from '../agent/pki/csr-parse.ts'
import { isFleetCn } from './acl.ts'
import type { ServiceContext } from './context.ts'

/** What differs between a renewal and a rekey: how the request decodes, which CA check issues, what L0 logs. */
interface CertificateAsk {
  event: 'ca.renewed' | 'ca.rekeyed'
  /** Decodes the request, has the CA check it and issue; the request's own id with the certificate. */
  issue(
    ctx: ServiceContext,
    sender: string,
    message: unknown[],
    now: number,
  ): Promise<{ requestId: string; certificate: DeviceCertificate }>
}

/**
 * A renewal: the request needs no signature of its own, and the CSR proves the key. FleetCa.renew checks the
 * sender's binding in L0's ledger (not revoked, lineage whole, not expired) and the CSR against it.
 */
const RENEW: CertificateAsk = {
  event: 'ca.renewed',
  issue: async (ctx, sender, message, now) => {
    const request = renewRequestOf(message)
    const csrPem = parseCsr(request.csrPem, { sha256: ctx.crypto.sha256 })
    return { requestId: request.requestId, certificate: await ctx.ca.renew({ cn: sender, csrPem, now }) }
  },
}

/**
 * A rekey (docs/PROTOCOL.md "Rekey"): FleetCa.rekeySelf holds the rekey event to the sender and its binding in L0's
 * ledger, the CSR to the new key, and issues. The rekey itself enters the log when the device submits it with the
 * certified event of the new certificate.
 */
const REKEY: CertificateAsk = {
  event: 'ca.rekeyed',
  issue: async (ctx, sender, message, now) => {
    const request = rekeyRequestOf(message)
    const csrPem = parseCsr(request.csrPem, { sha256: ctx.crypto.sha256 })
    const certificate = await ctx.ca.rekeySelf({ cn: sender, rekeyBytes: request.rekeyBytes, csrPem, now })
    return { requestId: request.requestId, certificate }
  },
}

/**
 * Handles one request from `sender`, the CN the topic's sender level names, which the broker's ACL ties to the
 * session's certificate. The new certificate's serial is recorded before it is handed over, so it can be put on a
 * CRL. A malformed request is answered DECODE_* when it names an id, else dropped and logged.
 */
async function handle(
  ask: CertificateAsk,
  ctx: ServiceContext,
  sender: string | undefined,
  topic: string,
  message: unknown[],
): Promise<void> {
  if (sender === undefined || !isFleetCn(sender, ctx.fleet)) return
  const reply = (r: RenewReply) => ctx.publish(ctx.topics.inbox(sender, ctx.cn), encodeRenewReply(r))
  const requestId = typeof message[1] === 'string' && /^[0-9a-f]{16}$/.test(message[1]) ? message[1] : undefined
  try {
    const now = ctx.now()
    const { requestId: id, certificate } = await ask.issue(ctx, sender, message, now)
    ctx.issued.record(certificate, now)
    await reply({ ok: true, requestId: id, certPem: certificate.pem })
    ctx.log('info', ask.event, { cn: sender, serial: certificate.serialHex, notAfter: certificate.notAfter })
  } catch (err) {
    if (!(err instanceof KinError)) throw err
    ctx.log('warn', 'ca.refused', { cn: sender, topic, code: err.code, message: err.message })
    if (requestId !== undefined) await reply({ ok: false, requestId, code: err.code, message: err.message })
  }
}

/** One renewal request on L0's inbox. */
export const handleRenew = (ctx: ServiceContext, sender: string | undefined, topic: string, message: unknown[]) =>
  handle(RENEW, ctx, sender, topic, message)

/** One rekey request on L0's inbox. */
export const handleRekey = (ctx: ServiceContext, sender: string | undefined, topic: string, message: unknown[]) =>
  handle(REKEY, ctx, sender, topic, message)
