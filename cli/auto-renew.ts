/** @module `kin serve`'s renewal before expiry (docs/PROTOCOL.md §8.2b): a timer that renews over the follower's own session. */
import { KinError } from '../agent/errors.ts'
import { nodeCrypto } from '../runtime/node/crypto.ts'
import type { TransportSession } from '../agent/ports/transport.ts'
import type { LedgerFollower } from '../agent/gossip/follower.ts'
import { renewalDue } from '../agent/gossip/renew-session.ts'
import { DeviceCertificate } from '../agent/pki/certificate.ts'
import type { Home, HomeConfig } from '../runtime/home.ts'
import { renewHome } from '../runtime/renew-home.ts'

/** Default fraction of the validity left at which `kin serve` renews: the last fifth (about 73 days of a year). */
export const DEFAULT_RENEW_AT = 0.2
/** How often the running agent looks at its certificate. */
export const RENEW_CHECK_MS = 3600_000

/** What the timer needs: the home, the running follower, the broker session it rides on (the broker keeps one per CN). */
export interface AutoRenewOptions {
  home: Home
  config: HomeConfig
  follower: LedgerFollower
  session: () => TransportSession | undefined
  /** Renew when less than this fraction of the validity is left (0 < fraction < 1). */
  fraction: number
  /** The clock that says whether renewal is due, seconds since the epoch (injected in tests); events carry the wall clock's time. */
  now: () => number
  checkEveryMs?: number
  timeoutMs?: number
  /** Told of the new certificate once cert.pem holds it (the endpoint serves it from then on). */
  onRenewed: (cert: DeviceCertificate) => void
  onError: (err: KinError) => void
}

/**
 * Renews once if due: the same steps as `kin renew` (runtime/renew-home.ts, docs/PROTOCOL.md §8.2a) over the
 * follower's session, the certified event through the running follower, cert.pem replaced once a head covers it.
 * Resolves with the new certificate, or undefined when not due or no session is up (tried again at the next look).
 */
export async function renewIfDue(o: AutoRenewOptions): Promise<DeviceCertificate | undefined> {
  const current = DeviceCertificate.from(o.home.readText('cert'), { sha256: nodeCrypto.sha256 })
  if (!renewalDue(current, o.now(), o.fraction)) return undefined
  const session = o.session()
  if (session === undefined || !session.connected) return undefined
  const { certificate } = await renewHome(o, {
    // The clock `now` says when renewal is due; the certified event carries the wall clock's time.
    now: Math.floor(Date.now() / 1000),
    timeoutMs: o.timeoutMs ?? 30_000,
    session,
    again: 'kin serve tries again at its next look',
  })
  o.onRenewed(certificate)
  return certificate
}

/** Starts the timer (a first look at once); returns the function that stops it. One renewal runs at a time. */
export function startAutoRenew(o: AutoRenewOptions): () => void {
  let running = false
  let stopped = false
  let revoked = false
  const look = (): void => {
    if (running || stopped || revoked) return
    running = true
    renewIfDue(o)
      .catch((err: unknown) => {
        const e = err instanceof KinError ? err : new KinError('INTERNAL', (err as Error)?.message ?? String(err))
        // A revoked device stops serving when its revocation arrives; asking again changes nothing.
        if (e.code === 'RENEW_REVOKED' || e.code === 'RENEW_EXPIRED') revoked = true
        o.onError(e)
      })
      .finally(() => {
        running = false
      })
  }
  const timer = setInterval(look, o.checkEveryMs ?? RENEW_CHECK_MS)
  timer.unref?.()
  look()
  return () => {
    stopped = true
    clearInterval(timer)
  }
}
