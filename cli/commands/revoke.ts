/** @module `kin revoke`: sign a revoke event with the home's ledger key, check it against the home's ledger, record it, hand it to the miner. */
import { KinError, VerificationError } from '../../agent/errors.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { signedRevoke } from '../../agent/ledger/revoke.ts'
import type { Ledger } from '../../agent/ledger/ledger.ts'
import { REVOKE_REASON, type EncodedEvent, type RevokeReasonName } from '../../agent/ledger/types.ts'
import { parseDuration, requireFleetCn, requireString, usageError, type CommandSpec } from '../args.ts'
import { Home, type HomeConfig } from '../../runtime/home.ts'
import { EXIT_PENDING, emit, isoTime, reportError } from '../output.ts'
import { deliverSignedEvent, type EventSigner } from '../../runtime/deliver-event.ts'

const REASONS = Object.keys(REVOKE_REASON) as RevokeReasonName[]

function effectiveOf(text: string, now: number): number {
  if (text === 'now') return now
  const ms = Date.parse(text)
  if (!/^\d{4}-\d{2}-\d{2}T/.test(text) || !Number.isFinite(ms) || ms < 0 || ms / 1000 > 0xffffffff) {
    throw usageError(`--effective expects "now" or an ISO-8601 time such as 2026-01-01T00:00:00Z, got "${text}"`)
  }
  return Math.floor(ms / 1000)
}

/** The signed revoke of `cn` by this home's identity, checked against `ledger` (VerificationError with the ledger's code). */
function homeRevoke(
  ledger: Ledger,
  home: Home,
  config: HomeConfig,
  cn: string,
  body: { reason: RevokeReasonName; effective: number; subtree: boolean },
  now: number,
): EncodedEvent {
  // Refused here with what the user can do about it; signedRevoke would refuse the same with a general message.
  const state = ledger.state
  if (state.currentBinding(config.cn) === undefined)
    throw new KinError('HOME_MISSING', `${home.path('ledger')} holds no binding for this device (${config.cn})`)
  if (state.currentBinding(cn) === undefined)
    throw new VerificationError(
      'SUBJECT_UNKNOWN',
      `this device's ledger does not know ${cn}, even after asking L0: check the name, or revoke from a device that knows it`,
    )
  const e = signedRevoke(nodeCrypto, state, { cn: config.cn, ledgerSeed: home.readLedgerKey() }, cn, body, now)
  ledger.check(e, { now })
  return e
}

/** `kin revoke`. */
export const revoke: CommandSpec = {
  name: 'revoke',
  usage:
    'kin revoke --home DIR CN [--reason compromised|lost|retired] [--subtree] [--effective ISO|now] [--broker mqtts://HOST:PORT] [--timeout 10s] [--json]',
  summary:
    "Revoke identity CN and tell L0's miner. Sign a revoke event with this home's ledger key (the home must be CN itself or one of its ancestors: " +
    "L0 may revoke anyone), check it against the home's ledger, record it and hand it to L0's miner, which seals it into a head that " +
    'gossips to every device; a device that receives it denies CN from its own ledger at once, offline too. compromised (the default) ' +
    "also voids what CN's key signed after --effective; --subtree revokes everything below CN as well. On L0's home while " +
    "'kin broker' runs, the event goes through the broker (give --broker). Exit 0 only once L0 holds it: on a device, when a " +
    "head signed by L0's miner covers it (a broker's acknowledgement is not enough); on L0's home, when its ledger file " +
    `holds it. Exit ${EXIT_PENDING} (EVENT_PENDING) when it is recorded here, in force on this device, but L0 has not sealed it ` +
    "within --timeout: it is pending and goes out with the next 'kin sync' or 'kin serve'. Exit 1 when the ledger refuses it, " +
    '2 on other errors.',
  options: {
    home: { type: 'string', help: 'the revoking home: CN itself, an ancestor, or L0' },
    reason: { type: 'string', help: `why: ${REASONS.join(', ')}`, default: 'compromised' },
    subtree: { type: 'boolean', help: 'revoke every identity below CN too' },
    effective: { type: 'string', help: 'when the revocation takes effect: now, or an ISO-8601 time', default: 'now' },
    broker: { type: 'string', help: "on L0's home: the running broker, mqtts://HOST:PORT" },
    timeout: { type: 'string', help: 'how long to wait for L0 to hold the event', default: '10s' },
  },
  async run(args) {
    const dir = requireString(args, 'home', 'the revoking home, e.g. --home ./phone')
    const cn = args.positionals[0]
    if (cn === undefined || args.positionals.length > 1)
      throw usageError("give the CN to revoke, e.g. 'kin revoke --home ./phone 3xk…home.arpa'")
    const reason = String(args.values.reason) as RevokeReasonName
    if (!REASONS.includes(reason)) throw usageError(`--reason must be one of ${REASONS.join(', ')}, got "${reason}"`)
    const timeoutMs = parseDuration(String(args.values.timeout), 'timeout') * 1000
    const now = Math.floor(Date.now() / 1000)
    const body = {
      reason,
      effective: effectiveOf(String(args.values.effective), now),
      subtree: args.values.subtree === true,
    }
    const home = new Home(dir)
    const config = home.readConfig()
    requireFleetCn(cn, config.fleet)
    try {
      const broker = typeof args.values.broker === 'string' ? args.values.broker : undefined
      const sign: EventSigner = (ledger, h, c) => homeRevoke(ledger, h, c, cn, body, now)
      const { e, delivery } = await deliverSignedEvent(dir, config, sign, {
        what: 'revocation',
        now,
        timeoutMs,
        ...(broker !== undefined ? { broker } : {}),
        names: [cn],
      })
      emit(
        args.json,
        {
          ok: true,
          cn,
          by: config.cn,
          id: e.idHex,
          reason,
          effective: body.effective,
          subtree: body.subtree,
          ...delivery,
        },
        () =>
          `revoked ${cn} (${reason}${body.subtree ? ', with its subtree' : ''}, effective ${isoTime(body.effective)}) by ${config.cn}: ${delivery.note}`,
      )
      return 0
    } catch (err) {
      reportError(err, args.json)
      if (err instanceof KinError && err.code === 'EVENT_PENDING') return EXIT_PENDING
      return err instanceof VerificationError ? 1 : 2
    }
  },
}
