/** @module L0's rekey service: `['rekey', id, csr, rekey event]` on L0's inbox from a device's own session, answered on its inbox. */
import { KinError } from '../agent/errors.ts'
import { encodeRenewReply, rekeyRequestOf, type RenewReply } from '../agent/gossip/renew-wire.ts'
import { parseCsr } from '../agent/pki/csr-parse.ts'
import { isFleetCn } from './acl.ts'
import type { ServiceContext } from './context.ts'

/**
 * Handles one rekey request from `sender`, the CN the topic's sender level names, which the broker's ACL ties to the
 * session's certificate (docs/PROTOCOL.md "Rekey"). FleetCa.rekeySelf holds the rekey event to the sender and its
 * binding in L0's ledger, the CSR to the new key, and issues; the serial is recorded before the certificate is handed
 * over. The rekey itself enters the log when the device submits it with the certified event of the new certificate.
 * A malformed request is answered DECODE_* when it names an id, else dropped and logged.
 */
export async function handleRekey(
  ctx: ServiceContext,
  sender: string | undefined,
  topic: string,
  message: unknown[],
): Promise<void> {
  if (sender === undefined || !isFleetCn(sender, ctx.fleet)) return
  const reply = (r: RenewReply) => ctx.publish(ctx.topics.inbox(sender, ctx.cn), encodeRenewReply(r))
  const requestId = typeof message[1] === 'string' && /^[0-9a-f]{16}$/.test(message[1]) ? message[1] : undefined
  try {
    const request = rekeyRequestOf(message)
    const csr = parseCsr(request.csrPem, { sha256: ctx.crypto.sha256 })
    const now = ctx.now()
    const certificate = await ctx.ca.rekeySelf({ cn: sender, rekeyBytes: request.rekeyBytes, csrPem: csr, now })
    ctx.issued.record(certificate, now)
    await reply({ ok: true, requestId: request.requestId, certPem: certificate.pem })
    ctx.log('info', 'ca.rekeyed', { cn: sender, serial: certificate.serialHex, notAfter: certificate.notAfter })
  } catch (err) {
    if (!(err instanceof KinError)) throw err
    ctx.log('warn', 'ca.refused', { cn: sender, topic, code: err.code, message: err.message })
    if (requestId !== undefined) await reply({ ok: false, requestId, code: err.code, message: err.message })
  }
}
