/** @module `kin revoke`: sign a revoke event with the home's ledger key, check it against the home's ledger, record it, hand it to the miner. */
import { KinError, VerificationError } from '../../errors.ts'
import { nodeCrypto } from '../../../firmware-shims/node/crypto.ts'
import { nodeTransport } from '../../../firmware-shims/node/transport.ts'
import { connectDevice } from '../../gossip/login.ts'
import { submitEvents } from '../../gossip/submit.ts'
import { revokeEvent } from '../../ledger/builders.ts'
import { signEvent } from '../../ledger/event.ts'
import type { Ledger } from '../../ledger/ledger.ts'
import { replayRecords } from '../../ledger/persistent.ts'
import { scanRecords } from '../../ledger/store.ts'
import { REVOKE_REASON, type EncodedEvent, type RevokeReasonName } from '../../ledger/types.ts'
import { parseDuration, requireFleetCn, requireString, usageError, type CommandSpec } from '../args.ts'
import { openHomeLedger } from '../device.ts'
import { Home, type HomeConfig } from '../home.ts'
import { emit, isoTime, reportError } from '../output.ts'
import { BROKER_LOCK_FILE, brokerLoginOf, headSummary, lockHolder, openFollowingHome } from './sync.ts'
import { readHomeFile } from '../../../firmware-shims/node/home-file.ts'

const REASONS = Object.keys(REVOKE_REASON) as RevokeReasonName[]

/** What the command did with the event. */
interface Delivery {
  /** Where the event was recorded: the home's ledger, or nowhere yet (L0's broker owns its file and records it). */
  recorded: 'ledger' | 'broker'
  /** Whether L0's ledger holds it (the miner accepted it). */
  delivered: boolean
  head: Record<string, unknown> | null
  note: string
}

function effectiveOf(text: string, now: number): number {
  if (text === 'now') return now
  const ms = Date.parse(text)
  if (!/^\d{4}-\d{2}-\d{2}T/.test(text) || !Number.isFinite(ms) || ms < 0 || ms / 1000 > 0xffffffff) {
    throw usageError(`--effective expects "now" or an ISO-8601 time such as 2026-01-01T00:00:00Z, got "${text}"`)
  }
  return Math.floor(ms / 1000)
}

/** The signed revoke of `cn` by this home's identity, checked against `ledger` (VerificationError with the ledger's code). */
function signedRevoke(ledger: Ledger, home: Home, config: HomeConfig, cn: string, body: { reason: RevokeReasonName; effective: number; subtree: boolean }, now: number): EncodedEvent {
  const state = ledger.state
  const issuer = state.currentBinding(config.cn)
  if (issuer === undefined) throw new KinError('HOME_MISSING', `${home.path('ledger')} holds no binding for this device (${config.cn})`)
  const target = state.currentBinding(cn)
  if (target === undefined) throw new VerificationError('SUBJECT_UNKNOWN', `this device's ledger does not know ${cn}, even after asking L0: check the name, or revoke from a device that knows it`)
  const e = signEvent(nodeCrypto, revokeEvent(issuer, target, body, now), home.readLedgerKey())
  ledger.check(e, { now })
  return e
}

function snapshot(home: Home): Ledger {
  return replayRecords(nodeCrypto, scanRecords(readHomeFile(home.path('ledger'))).records)
}

/** Polls L0's ledger file (written by the running broker) until it holds `idHex`. */
async function untilRecorded(home: Home, idHex: string, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (snapshot(home).state.has(idHex)) return true
    if (Date.now() > end) return false
    await new Promise(r => setTimeout(r, 100))
  }
}

/**
 * On L0's home. While `kin broker` runs, its miner owns ledger.cbor: the event goes to it over MQTT like any
 * device's (L0 logs in with its own certificate). Without a broker, it is appended to the file, and the miner
 * seals it when the broker next starts.
 */
async function revokeOnL0(home: Home, config: HomeConfig, cn: string, body: Parameters<typeof signedRevoke>[4], now: number, broker: string | undefined, timeoutMs: number): Promise<{ e: EncodedEvent; delivery: Delivery }> {
  const pid = lockHolder(home, BROKER_LOCK_FILE)
  if (pid === undefined) {
    const ledger = await openHomeLedger(home)
    try {
      const e = signedRevoke(ledger.ledger, home, config, cn, body, now)
      await ledger.append(e, { now })
      return { e, delivery: { recorded: 'ledger', delivered: true, head: null, note: "appended to L0's ledger; the miner seals it when 'kin broker' starts" } }
    } finally {
      await ledger.close()
    }
  }
  const e = signedRevoke(snapshot(home), home, config, cn, body, now)
  if (broker === undefined && typeof config.broker !== 'string') {
    throw usageError(`'kin broker' (pid ${pid}) owns L0's ledger: give --broker mqtts://HOST:PORT to hand it the revocation (its ledger file is not written behind its back)`)
  }
  const client = await connectDevice(nodeTransport, brokerLoginOf(home, config, broker), { timeoutMs })
  try {
    await submitEvents(client, config.fleet, config.cn, [e])
  } finally {
    await client.close().catch(() => undefined)
  }
  const delivered = await untilRecorded(home, e.idHex, timeoutMs)
  if (!delivered) throw new KinError('BROKER_TIMEOUT', `handed the revocation to 'kin broker' (pid ${pid}) but its ledger does not hold it after ${timeoutMs} ms: see its log`, { detail: { id: e.idHex } })
  return { e, delivery: { recorded: 'broker', delivered: true, head: null, note: `submitted to the miner of 'kin broker' (pid ${pid}); it seals it within a moment` } }
}

/**
 * On a device's home: recorded in its own ledger at once (so its own decisions enforce it offline), then handed to
 * the miner through a follower, which waits until a signed head covers it.
 */
async function revokeOnDevice(dir: string, cn: string, body: Parameters<typeof signedRevoke>[4], now: number, timeoutMs: number): Promise<{ e: EncodedEvent; delivery: Delivery }> {
  const opened = await openFollowingHome(dir)
  try {
    const { follower, home, config } = opened
    // A CN enrolled after this device's last sync: catch up first, then sign against its current binding.
    if (opened.files.ledger.ledger.state.currentBinding(cn) === undefined) await follower.syncOnce(timeoutMs).catch(() => undefined)
    const e = signedRevoke(opened.files.ledger.ledger, home, config, cn, body, now)
    const out = await follower.submit([e])
    if (out.accepted.length !== 1) {
      const r = out.refused[0]
      throw new VerificationError((r?.code ?? 'MISSING_LINK') as KinError['code'], `this device's ledger refused the revocation: ${r?.message ?? 'a link is missing'}`)
    }
    try {
      // Starting the follower catches up, then resubmits every uncovered event: the revocation among them.
      follower.start()
      await follower.waitCovered([e.idHex], timeoutMs)
    } catch (err) {
      const cause = follower.lastError ?? (err as KinError)
      throw new KinError(cause.code, `revoked ${cn} in this device's ledger (enforced here from now on), but L0 has not sealed it within ${timeoutMs} ms (${cause.message}); it goes out with the next 'kin sync' or 'kin serve'`, {
        cause, detail: { id: e.idHex, recorded: true, delivered: false },
      })
    }
    const r = follower.replica
    return { e, delivery: { recorded: 'ledger', delivered: true, head: headSummary(r.head, r.headId), note: `sealed by L0 in head ${r.head?.height}` } }
  } finally {
    await opened.close()
  }
}

/** `kin revoke`. */
export const revoke: CommandSpec = {
  name: 'revoke',
  usage: 'kin revoke --home DIR CN [--reason compromised|lost|retired] [--subtree] [--effective ISO|now] [--broker mqtts://HOST:PORT] [--timeout 10s] [--json]',
  summary: "Revoke identity CN and tell L0's miner. Sign a revoke event with this home's ledger key (the home must be CN itself or one of its ancestors: "
    + 'L0 may revoke anyone), check it against the home\'s ledger, record it and hand it to L0\'s miner, which seals it into a head that '
    + 'gossips to every device; a device that receives it denies CN from its own ledger at once, offline too. compromised (the default) '
    + 'also voids what CN\'s key signed after --effective; --subtree revokes everything below CN as well. On L0\'s home while '
    + "'kin broker' runs, the event goes through the broker (give --broker). Exit 0 once L0 holds it, 1 when the ledger refuses "
    + 'it, 2 on other errors (the event may then be recorded here and still on its way: see the message).',
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
    if (cn === undefined || args.positionals.length > 1) throw usageError("give the CN to revoke, e.g. 'kin revoke --home ./phone 3xk…home.arpa'")
    const reason = String(args.values.reason) as RevokeReasonName
    if (!REASONS.includes(reason)) throw usageError(`--reason must be one of ${REASONS.join(', ')}, got "${reason}"`)
    const timeoutMs = parseDuration(String(args.values.timeout), 'timeout') * 1000
    const now = Math.floor(Date.now() / 1000)
    const body = { reason, effective: effectiveOf(String(args.values.effective), now), subtree: args.values.subtree === true }
    const home = new Home(dir)
    const config = home.readConfig()
    requireFleetCn(cn, config.fleet)
    try {
      const broker = typeof args.values.broker === 'string' ? args.values.broker : undefined
      const { e, delivery } = config.l0 === true ? await revokeOnL0(home, config, cn, body, now, broker, timeoutMs) : await revokeOnDevice(dir, cn, body, now, timeoutMs)
      emit(args.json, {
        ok: true, cn, by: config.cn, id: e.idHex, reason, effective: body.effective, subtree: body.subtree, ...delivery,
      }, () => `revoked ${cn} (${reason}${body.subtree ? ', with its subtree' : ''}, effective ${isoTime(body.effective)}) by ${config.cn}: ${delivery.note}`)
      return 0
    } catch (err) {
      reportError(err, args.json)
      return err instanceof VerificationError ? 1 : 2
    }
  },
}
