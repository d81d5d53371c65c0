/** @module `kin renew`: a fresh certificate for the key this device holds, from L0's CA, recorded in the ledger, put in place atomically. */
import { VerificationError } from '../../agent/errors.ts'
import { parseDurationMs, requireString, usageError, type CommandSpec } from '../args.ts'
import { Home } from '../../runtime/home.ts'
import { emit, isoTime, reportError } from '../output.ts'
import { openFollowingHome } from '../../runtime/following-home.ts'
import { renewHome, type Renewal } from '../../runtime/renew-home.ts'

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
        // Carried out inside a running agent, replaceIdentity hands the new certificate to its access endpoint,
        // inbox answers and next broker login.
        renewal = (await renewHome(opened, { now: Math.floor(Date.now() / 1000), timeoutMs })).renewal
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
