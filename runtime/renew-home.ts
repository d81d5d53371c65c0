/** @module Renewing a following home's certificate (docs/PROTOCOL.md §8.2a): the one path `kin renew` and `kin serve`'s renewal before expiry take. */
import { KinError } from '../agent/errors.ts'
import type { LedgerFollower } from '../agent/gossip/follower.ts'
import { certifiedEvent } from '../agent/ledger/builders.ts'
import { signEvent } from '../agent/ledger/event.ts'
import { DeviceCertificate } from '../agent/pki/certificate.ts'
import type { TransportSession } from '../agent/ports/transport.ts'
import { recordAndSeal } from './deliver-event.ts'
import { brokerLoginOf, headSummary } from './following-home.ts'
import type { Home, HomeConfig } from './home.ts'
import { askL0ForCertificate, standingBinding } from './l0-certificate.ts'
import { nodeCrypto } from './node/crypto.ts'

/** What a renewal did. */
export interface Renewal {
  cn: string
  serial: string
  notBefore: number
  notAfter: number
  certHash: string
  previous: { serial: string; notAfter: number }
  certifiedId: string
  head: Record<string, unknown> | null
}

/** A device home and the follower of its ledger (started or not), as `kin renew` opens it or `kin serve` runs it. */
export interface RenewingHome {
  home: Home
  config: HomeConfig
  follower: LedgerFollower
  /** Presents the new certificate from now on (the follower's next login, the agent's endpoint), when the caller can. */
  replaceIdentity?(certPem: string, keyPem: string): void
}

/**
 * Renews the home's certificate: refused first when its own ledger says it may not (runtime/l0-certificate.ts), then
 * asks L0's CA (over `session` when given, else the agent's or a new one), records the new certificate in a
 * certified event signed with the ledger key, waits until a head of L0's covers it, and only then replaces cert.pem
 * (temp file, fsync, rename) — so the home never presents a certificate peers cannot find in the ledger. Interrupted
 * before that, cert.pem is the old one, still valid; renewing again is safe.
 */
export async function renewHome(
  h: RenewingHome,
  opts: {
    now: number
    timeoutMs: number
    session?: TransportSession
    /** What the person can do when the head does not come in time (default: run 'kin renew' again). */
    again?: string
  },
): Promise<{ certificate: DeviceCertificate; renewal: Renewal }> {
  const { home, config, follower } = h
  const binding = standingBinding(follower.replica.ledger.ledger.state, config.cn, opts.now, 'renew')
  const login = brokerLoginOf(home, config)
  const previous = DeviceCertificate.from(login.certPem, { sha256: nodeCrypto.sha256 })
  const fresh = await askL0ForCertificate(home.dir, config.fleet, config.cn, login, 'renew', {
    timeoutMs: opts.timeoutMs,
    ...(opts.session !== undefined ? { session: opts.session } : {}),
  })
  const certified = signEvent(nodeCrypto, certifiedEvent(binding, fresh.certHash, opts.now), home.readLedgerKey())
  await recordAndSeal(follower, certified, {
    what: 'certified event of the new certificate',
    timeoutMs: opts.timeoutMs,
    late: cause =>
      new KinError(
        cause.code,
        `L0 issued a new certificate but has not sealed its certified event within ${opts.timeoutMs} ms (${cause.message}); ${home.path('cert')} keeps the old one, still valid: ${opts.again ?? "run 'kin renew' again"}`,
        {
          cause,
          detail: { certifiedId: certified.idHex },
        },
      ),
  })
  home.writePublic('cert', fresh.pem)
  h.replaceIdentity?.(fresh.pem, login.keyPem)
  const r = follower.replica
  const renewal: Renewal = {
    cn: config.cn,
    serial: fresh.serialHex,
    notBefore: fresh.notBefore,
    notAfter: fresh.notAfter,
    certHash: fresh.certHashHex,
    previous: { serial: previous.serialHex, notAfter: previous.notAfter },
    certifiedId: certified.idHex,
    head: headSummary(r.head, r.headId),
  }
  return { certificate: fresh, renewal }
}
