/** @module `kin renew`: a fresh certificate for the key this device holds, from L0's CA, recorded in the ledger, put in place atomically. */
import { KinError, VerificationError } from '../../agent/errors.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { certifiedEvent } from '../../agent/ledger/builders.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import type { LedgerState } from '../../agent/ledger/state.ts'
import type { Binding } from '../../agent/ledger/types.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { parseDurationMs, requireString, usageError, type CommandSpec } from '../args.ts'
import { askL0ForCertificate, standingBinding } from '../../runtime/l0-certificate.ts'
import { Home } from '../../runtime/home.ts'
import { emit, isoTime, reportError } from '../output.ts'
import { brokerLoginOf, headSummary, openFollowingHome, type FollowingHome } from '../../runtime/following-home.ts'

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

/** This device's binding, refused when its own ledger already says it may not renew (runtime/l0-certificate.ts). */
export const renewableBinding = (state: LedgerState, cn: string, now: number): Binding =>
  standingBinding(state, cn, now, 'renew')

/**
 * Renews the certificate of an opened device home whose follower is not started: asks L0's CA over a session of its
 * own, records the new certificate in a certified event signed with the ledger key, waits until a head of L0's covers
 * it, and only then replaces cert.pem (temp file, fsync, rename) — so the home never presents a certificate peers
 * cannot find in the ledger. Interrupted before that, cert.pem is the old one, still valid; renewing again is safe.
 */
export async function renewOpenedHome(
  opened: FollowingHome,
  opts: { now: number; timeoutMs: number },
): Promise<Renewal> {
  const { home, config, follower } = opened
  const binding = renewableBinding(opened.files.ledger.ledger.state, config.cn, opts.now)
  const login = brokerLoginOf(home, config)
  const previous = DeviceCertificate.from(login.certPem, { sha256: nodeCrypto.sha256 })
  const fresh = await askL0ForCertificate(home.dir, config.fleet, config.cn, login, 'renew', {
    timeoutMs: opts.timeoutMs,
  })
  const certified = signEvent(nodeCrypto, certifiedEvent(binding, fresh.certHash, opts.now), home.readLedgerKey())
  const out = await follower.submit([certified])
  if (out.accepted.length !== 1) {
    const r = out.refused[0]
    throw new VerificationError(
      (r?.code ?? 'MISSING_LINK') as KinError['code'],
      `this device's ledger refused the certified event of the new certificate: ${r?.message ?? 'a link is missing'}`,
    )
  }
  try {
    follower.start()
    await follower.waitCovered([certified.idHex], opts.timeoutMs)
  } catch (err) {
    const cause = follower.lastError ?? (err as KinError)
    throw new KinError(
      cause.code,
      `L0 issued a new certificate but has not sealed its certified event within ${opts.timeoutMs} ms (${cause.message}); ${home.path('cert')} keeps the old one, still valid: run 'kin renew' again`,
      {
        cause,
        detail: { certifiedId: certified.idHex },
      },
    )
  }
  home.writePublic('cert', fresh.pem)
  // Carried out inside a running agent: its access endpoint, inbox answers and next broker login present the new one.
  opened.replaceIdentity(fresh.pem, login.keyPem)
  const r = follower.replica
  return {
    cn: config.cn,
    serial: fresh.serialHex,
    notBefore: fresh.notBefore,
    notAfter: fresh.notAfter,
    certHash: fresh.certHashHex,
    previous: { serial: previous.serialHex, notAfter: previous.notAfter },
    certifiedId: certified.idHex,
    head: headSummary(r.head, r.headId),
  }
}

/** `kin renew`. */
export const renew: CommandSpec = {
  name: 'renew',
  usage: 'kin renew --home DIR [--timeout 30s] [--json]',
  summary:
    "Get a fresh certificate for this device's key from L0's CA before the current one expires. The request goes over " +
    "this device's own session (its current certificate authenticates it); L0 re-issues after checking the device's binding in " +
    "its ledger (not revoked, no ancestor revoked over it, not past its authorization's end), with no new authorization. The " +
    'new certificate ends no later than the authorization does. This device records it in a certified event; once a head of ' +
    "L0's covers that event, DIR/cert.pem is replaced atomically. 'kin serve' renews by itself when less than a fraction of the " +
    'validity is left (--renew-at). Exit 0 renewed, 1 refused (RENEW_REVOKED, RENEW_EXPIRED, RENEW_CERT_MISMATCH), 2 other errors ' +
    '(cert.pem then keeps the old certificate).',
  options: {
    home: { type: 'string', help: 'the device home whose certificate to renew' },
    timeout: { type: 'string', help: 'how long to wait for L0 at each step', default: '30s' },
  },
  async run(args) {
    const dir = requireString(args, 'home', 'the device home to renew, e.g. --home ./phone')
    if (args.positionals.length > 0)
      throw usageError(`kin renew takes no positional arguments, got "${args.positionals.join(' ')}"`)
    const timeoutMs = parseDurationMs(String(args.values.timeout), 'timeout')
    const config = new Home(dir).readConfig()
    if (config.l0 === true)
      throw usageError(
        `${dir} is L0's home: L0's certificate comes from its own CA when 'kin broker' starts, not from 'kin renew'`,
      )
    try {
      const opened = await openFollowingHome(dir)
      let renewal: Renewal
      try {
        renewal = await renewOpenedHome(opened, { now: Math.floor(Date.now() / 1000), timeoutMs })
      } finally {
        await opened.close()
      }
      emit(
        args.json,
        { ok: true, ...renewal },
        () =>
          `renewed ${renewal.cn}: certificate ${renewal.serial} valid until ${isoTime(renewal.notAfter)} (was ${isoTime(renewal.previous.notAfter)}), recorded in head ${String(renewal.head?.['height'] ?? '?')}`,
      )
      return 0
    } catch (err) {
      reportError(err, args.json)
      return err instanceof VerificationError ? 1 : 2
    }
  },
}
