/** @module The device's side of renewal (docs/PROTOCOL.md "Renewal"): a CSR for the key it holds, to L0's inbox, over its own session. */
import { KinError, VerificationError } from '../errors.ts'
import { bytesEqual, toHex } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import type { TransportSession } from '../ports/transport.ts'
import { DeviceCertificate } from '../pki/certificate.ts'
import { checkIssuedByRoot } from '../pki/chain.ts'
import { createCsr } from '../pki/csr.ts'
import type { PkiProvider, TlsKeyPair } from '../ports/pki.ts'
import { decodeRenewReply, encodeRekeyRequest, encodeRenewRequest, renewRefusal } from './renew-wire.ts'
import { fleetTopics } from './topics.ts'

/** Who renews: the device's names, its current certificate and TLS key, the fleet root. */
export interface Renewer {
  fleet: string
  cn: string
  l0Cn: string
  /** PEM of the certificate in force: the new one must carry the same name, parent and key. */
  certPem: string
  tlsKeyPem: string
  rootPem: string
}

/** What turns a renewal into a rekey (docs/PROTOCOL.md "Rekey"): the new key pair and the device's signed rekey event naming it. */
export interface RekeyAsk {
  keyPair: TlsKeyPair
  rekeyBytes: Uint8Array
}

/**
 * Asks L0's CA for a fresh certificate over `session` (logged in as `renewer.cn`: the broker's ACL makes that
 * session the request's authentication) and checks what comes back before anyone relies on it: issued by the fleet
 * root, for this CN and parent, for this very key — or, for a rekey (`opts.rekey`), the new one (RENEW_CERT_MISMATCH
 * otherwise). L0's refusal keeps its code
 * (RENEW_REVOKED, RENEW_EXPIRED, …); no answer within `timeoutMs` is BROKER_TIMEOUT.
 */
export async function requestRenewal(
  crypto: CryptoProvider,
  pki: PkiProvider,
  session: TransportSession,
  renewer: Renewer,
  opts: { timeoutMs: number; rekey?: RekeyAsk },
): Promise<DeviceCertificate> {
  const current = DeviceCertificate.from(renewer.certPem, { sha256: crypto.sha256 })
  const rekey = opts.rekey
  const what = rekey === undefined ? 'renewal' : 'rekey'
  const csrPem = await createCsr({
    cn: renewer.cn,
    parentCn: current.parentCn,
    keyPair:
      rekey === undefined
        ? { privateKeyPem: renewer.tlsKeyPem, publicKeyPem: current.publicKeyPem }
        : { privateKeyPem: rekey.keyPair.privateKeyPem, publicKeyPem: rekey.keyPair.publicKeyPem },
  })
  const expectedSpkiHash = rekey === undefined ? current.spkiHash : crypto.sha256(rekey.keyPair.spkiDer)
  const requestId = toHex(crypto.randomBytes(8))
  const topics = fleetTopics(renewer.fleet)
  const replyTopic = topics.inbox(renewer.cn, renewer.l0Cn)
  let stop: () => void = () => undefined
  let timer: ReturnType<typeof setTimeout> | undefined
  const reply = new Promise<{ ok: true; certPem: string } | { ok: false; code: string; message: string }>(
    (resolve, reject) => {
      stop = session.onMessage((topic, payload) => {
        if (topic !== replyTopic) return
        const r = decodeRenewReply(payload)
        if (r !== undefined && r.requestId === requestId) resolve(r)
      })
      timer = setTimeout(
        () =>
          reject(
            new KinError(
              'BROKER_TIMEOUT',
              `L0 did not answer the ${what} within ${Math.round(opts.timeoutMs / 1000)} s; is 'kin broker' running and up to date?`,
            ),
          ),
        opts.timeoutMs,
      )
    },
  )
  try {
    await session.subscribe([topics.inboxAll(renewer.cn)])
    await session.publish(
      topics.inbox(renewer.l0Cn, renewer.cn),
      rekey === undefined
        ? encodeRenewRequest({ requestId, csrPem })
        : encodeRekeyRequest({ requestId, csrPem, rekeyBytes: rekey.rekeyBytes }),
    )
    const r = await reply
    if (!r.ok) throw renewRefusal(r.code, r.message, what)
    let fresh: DeviceCertificate
    try {
      fresh = DeviceCertificate.from(r.certPem, { sha256: crypto.sha256 })
      checkIssuedByRoot(fresh, DeviceCertificate.from(renewer.rootPem, { sha256: crypto.sha256 }), pki)
    } catch (err) {
      throw new VerificationError(
        'RENEW_CERT_MISMATCH',
        `the certificate L0 sent does not verify under this fleet's root: ${(err as Error).message}`,
        { cause: err },
      )
    }
    if (
      fresh.cn !== current.cn ||
      fresh.parentCn !== current.parentCn ||
      !bytesEqual(fresh.spkiHash, expectedSpkiHash)
    ) {
      throw new VerificationError(
        'RENEW_CERT_MISMATCH',
        `the certificate L0 sent is for ${fresh.cn} (parent ${fresh.parentCn ?? 'none'}) or another key, not for this device's`,
      )
    }
    return fresh
  } finally {
    stop()
    if (timer !== undefined) clearTimeout(timer)
    reply.catch(() => undefined)
  }
}

/** Whether a certificate valid from `notBefore` to `notAfter` (seconds) should be renewed at `now`: less than `fraction` of its validity left. */
export function renewalDue(cert: { notBefore: number; notAfter: number }, now: number, fraction: number): boolean {
  const lifetime = cert.notAfter - cert.notBefore
  return lifetime <= 0 || cert.notAfter - now < fraction * lifetime
}
