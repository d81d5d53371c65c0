/** @module `kin invite`: register a one-time pairing code with L0, print it, and authorize the device that uses it. */
import { KinError, type KinErrorCode } from '../../agent/errors.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { nodeTransport, parseBrokerUrl } from '../../runtime/node/transport.ts'
import {
  checkMayInvite,
  checkMayRekey,
  completeInvite,
  openInvite,
  withdrawInvite,
  type Inviter,
  type OpenedInvite,
} from '../../agent/gossip/invite-session.ts'
import { GossipClient } from '../../agent/gossip/client.ts'
import { connectDevice } from '../../agent/gossip/login.ts'
import { replayRecords } from '../../agent/ledger/persistent.ts'
import type { PersistentLedger } from '../../agent/ledger/persistent.ts'
import { scanRecords } from '../../agent/ledger/store.ts'
import type { Ledger } from '../../agent/ledger/ledger.ts'
import { ROLE, type RoleName } from '../../agent/ledger/types.ts'
import { parseDuration, requireString, usageError, type CommandSpec } from '../args.ts'
import { Home, type HomeConfig } from '../../runtime/home.ts'
import { isoTime, jsonReplacer } from '../output.ts'
import { exitStatusOf, stepTimeoutMs } from './enroll.ts'
import { readHomeFile } from '../../runtime/node/home-file.ts'
import { requirePrintableName } from '../../agent/ledger/names.ts'
import { stopSignals } from '../control-socket.ts'
import { openFollowingHome, ridingSession } from '../../runtime/following-home.ts'
import { findIdentity } from '../home-view.ts'

const ROLES = Object.keys(ROLE) as RoleName[]

/** One JSON document on one line: `kin invite --json` prints two of them, the code first. */
function jsonLine(value: unknown): void {
  process.stdout.write(JSON.stringify(value, jsonReplacer) + '\n')
}

function brokerUrlOf(config: HomeConfig, flag: unknown): string {
  const url =
    typeof flag === 'string' && flag.length > 0 ? flag : typeof config.broker === 'string' ? config.broker : undefined
  if (url === undefined)
    throw usageError(
      "which broker? give --broker mqtts://HOST:PORT, or start 'kin broker' on L0's home first: it writes its address into config.json ('broker')",
    )
  try {
    parseBrokerUrl(url)
  } catch (err) {
    throw usageError((err as Error).message)
  }
  return url
}

/**
 * The inviting device's ledger. On L0 the broker owns ledger.cbor (it appends while running) and its CA records
 * the authorization when it issues, so L0's invite reads a snapshot and never writes. Any other device appends
 * the authorization proof it signs to its own ledger before sending it, as the home's one ledger writer: its agent
 * when one runs (the invite is carried out inside it), else this process holding the home's lock; and the invite
 * rides on that writer's broker session (`session`), since the broker keeps one session per CN.
 */
async function openInviterLedger(
  home: Home,
  config: HomeConfig,
  timeoutMs: number,
): Promise<{
  ledger: Ledger
  keep: (e: Parameters<PersistentLedger['append']>[0]) => Promise<void>
  session?: () => Promise<GossipClient>
  close: () => Promise<void>
}> {
  if (config.l0 === true) {
    let bytes: Uint8Array
    try {
      bytes = readHomeFile(home.path('ledger'))
    } catch (err) {
      if (err instanceof KinError) throw err
      throw new KinError('HOME_MISSING', `cannot read ${home.path('ledger')}: ${(err as Error).message}`, {
        cause: err,
      })
    }
    const ledger = replayRecords(nodeCrypto, scanRecords(bytes).records)
    return { ledger, keep: async () => undefined, close: async () => undefined }
  }
  const opened = await openFollowingHome(home.dir)
  return {
    ledger: opened.files.ledger.ledger,
    keep: async e => {
      const out = await opened.files.replica.appendLocal([e])
      const refusal = out.refused[0]
      if (refusal !== undefined)
        throw new KinError(
          refusal.code as KinErrorCode,
          `this device's ledger refused the authorization it signed: ${refusal.message}`,
        )
    },
    session: async () => {
      opened.follower.start()
      await opened.follower.waitOnline(timeoutMs)
      const session = opened.session()
      if (session === undefined)
        throw opened.follower.lastError ?? new KinError('BROKER_CLOSED', 'the session with the broker closed')
      return new GossipClient(ridingSession(session))
    },
    close: () => opened.close(),
  }
}

type StopSignal = 'SIGINT' | 'SIGTERM'

/** The first SIGINT or SIGTERM from now on, and the function that stops listening (default handling again). */
function stopSignal(): { signal: Promise<StopSignal>; dispose(): void } {
  let dispose = (): void => undefined
  const signal = new Promise<StopSignal>(resolve => {
    const onInt = (): void => resolve('SIGINT')
    const onTerm = (): void => resolve('SIGTERM')
    // Inside the agent: the signals of the client this invite runs for (control-socket.ts).
    const signals = stopSignals()
    signals.on('SIGINT', onInt)
    signals.on('SIGTERM', onTerm)
    dispose = () => {
      signals.off('SIGINT', onInt)
      signals.off('SIGTERM', onTerm)
    }
  })
  return { signal, dispose }
}

/**
 * `kin invite` stopped while its code is out: the invite is withdrawn (the waiting device is told PAIR_WITHDRAWN at
 * once, L0 refuses the code from now on) and the person is told which. Exit 130 or 143 like any stopped command.
 */
async function withdrawOnStop(
  client: GossipClient,
  inviter: Inviter,
  opened: OpenedInvite,
  signal: StopSignal,
  timeoutMs: number,
  json: boolean,
): Promise<number> {
  const outcome = await withdrawInvite(client, inviter, opened, `its kin invite was stopped by ${signal}`, {
    timeoutMs: Math.min(timeoutMs, 10_000),
  })
  const message = outcome.confirmed
    ? `stopped by ${signal}: invite ${opened.inviteId} withdrawn; code ${opened.code} no longer works, and a device waiting with it was told so`
    : `stopped by ${signal}: L0 did not confirm withdrawing invite ${opened.inviteId} (${outcome.error.message} [${outcome.error.code}]); ` +
      `code ${opened.code} may stay registered until ${isoTime(opened.expires)} — a device waiting with it was told to stop`
  const detail = { signal, inviteId: opened.inviteId, withdrawn: outcome.confirmed, expires: opened.expires }
  if (json) jsonLine({ ok: false, code: 'PAIR_WITHDRAWN', message, detail })
  else process.stderr.write(`kin: ${message} [PAIR_WITHDRAWN]\n`)
  return signal === 'SIGINT' ? 130 : 143
}

/** `kin invite`. */
export const invite: CommandSpec = {
  name: 'invite',
  usage:
    'kin invite --home DIR [--name LABEL] [--role ROLE] [--ttl 10m] [--valid 1d] [--broker mqtts://HOST:PORT] [--timeout 60s] [--json]',
  summary:
    'Print a one-time pairing code for a new device, then wait until that device enrolled with it: check its request, ' +
    "sign its authorization (kept in this device's ledger) and see L0 issue its certificate. Runs on any device with role admin " +
    "or member. The broker is --broker, else the 'broker' entry of DIR/config.json (written by 'kin enroll' on a device, by 'kin broker' on L0). " +
    'With --json: one line {"code","inviteId","expires"} as soon as the code is valid, one line with the result at the end. ' +
    'Exit 0 once the device is certified, 1 when the code expired unused or a check failed, 2 on other errors. ' +
    'Ctrl-C (SIGINT) or SIGTERM while waiting withdraws the invite: the waiting device is told PAIR_WITHDRAWN, L0 refuses the code; exit 130/143.',
  options: {
    home: { type: 'string', help: "the inviting device's home (L0 or an enrolled admin/member device)" },
    name: { type: 'string', help: 'friendly name for the new device (default: the name it asks for)' },
    role: { type: 'string', help: `role of the new device: ${ROLES.join(', ')}`, default: 'device' },
    ttl: { type: 'string', help: 'how long the code works', default: '10m' },
    valid: { type: 'string', help: 'for --role guest: how long the guest pass holds', default: '1d' },
    broker: { type: 'string', help: "L0's broker, mqtts://HOST:PORT (default: config.json 'broker')" },
    timeout: { type: 'string', help: 'limit for each step with L0 and the new device', default: '60s' },
  },
  async run(args) {
    const dir = requireString(args, 'home', "the inviting device's home, e.g. --home ./l0")
    const role = String(args.values.role) as RoleName
    if (!ROLES.includes(role)) throw usageError(`--role must be one of ${ROLES.join(', ')}, got "${role}"`)
    const ttlSeconds = parseDuration(String(args.values.ttl), 'ttl')
    if (ttlSeconds < 1 || ttlSeconds > 86400) throw usageError('--ttl must be between 1s and 1d')
    const guestValidSeconds = parseDuration(String(args.values.valid), 'valid')
    if (guestValidSeconds < 60) throw usageError('--valid must be at least 1m')
    const name = typeof args.values.name === 'string' ? args.values.name : ''
    if (name.length > 64) throw usageError('--name must be at most 64 characters')
    requirePrintableName(name, '--name')
    const timeoutMs = stepTimeoutMs(args.values.timeout)
    return runInvite({
      dir,
      json: args.json,
      broker: args.values.broker,
      role,
      name,
      ttlSeconds,
      guestValidSeconds,
      timeoutMs,
    })
  },
}

/** What `kin invite` (or `kin rekey CN`, the parent's rekey of a child) was asked, its flags checked. */
export interface InviteRun {
  dir: string
  json: boolean
  /** The --broker flag as given. */
  broker: unknown
  role: RoleName
  name: string
  ttlSeconds: number
  guestValidSeconds: number
  timeoutMs: number
  /**
   * `kin rekey CN|NAME`: the child (a CN, label or name of this home's ledger) the code gives new keys to, instead of
   * inviting a new device (docs/PROTOCOL.md "Rekey by the parent"); `role` and `name` are then the child's.
   */
  rekey?: string
}

/**
 * The invite itself, as `kin invite` and `kin rekey CN` run it: register the code with L0, print it, authorize (or
 * rekey) the device that pairs with it, and withdraw the code on SIGINT/SIGTERM. Returns the exit status.
 */
export async function runInvite(run: InviteRun): Promise<number> {
  const { dir, timeoutMs, ttlSeconds, guestValidSeconds } = run
  let { role, name } = run
  const args = { json: run.json }
  const home = new Home(dir)
  const config = home.readConfig()
  const url = brokerUrlOf(config, run.broker)
  const progress = !args.json && process.stderr.isTTY === true
  const say = (line: string) => {
    if (progress) process.stderr.write(`kin: ${line}\n`)
  }
  const now = () => Math.floor(Date.now() / 1000)

  const inviterLedger = await openInviterLedger(home, config, timeoutMs)
  let client
  try {
    const genesis = inviterLedger.ledger.state.genesis
    if (genesis === undefined) throw new KinError('HOME_MISSING', `${home.path('ledger')} has no genesis event`)
    const inviter: Inviter = {
      cn: config.cn,
      fleet: config.fleet,
      l0Cn: genesis.cn,
      ledgerSeed: home.readLedgerKey(),
      ledger: inviterLedger.ledger,
      rootPem: home.readText('root'),
    }
    // Refuse a device that may not invite (or rekey this child) before touching the network.
    let rekeyCn: string | undefined
    if (run.rekey !== undefined) {
      rekeyCn = findIdentity(inviter.ledger.state, run.rekey)
      const child = checkMayRekey(inviter.ledger, inviter.cn, rekeyCn, now())
      role = child.role
      name = child.name
    } else checkMayInvite(inviter.ledger, inviter.cn, role, now())
    // A stop before the code is out ends the command as the signal would (130/143: nobody holds the code yet); once it
    // is out, a stop withdraws it. Inside an agent the signal is the client's, and the invite must not linger there.
    const stop = stopSignal()
    let result
    let opened: OpenedInvite
    try {
      const connecting =
        inviterLedger.session !== undefined && url === config.broker
          ? inviterLedger.session()
          : connectDevice(
              nodeTransport,
              {
                url,
                cn: config.cn,
                certPem: home.readText('cert'),
                keyPem: home.readText('tlsKey'),
                rootPem: inviter.rootPem,
                l0Cn: inviter.l0Cn,
              },
              { timeoutMs, reconnect: true },
            )
      const connected = await Promise.race([connecting, stop.signal])
      if (typeof connected === 'string') {
        void connecting.then(
          c => c.close(),
          () => undefined,
        )
        return connected === 'SIGINT' ? 130 : 143
      }
      client = connected
      client.onStatus((status, error) => {
        if (status === 'offline') say(`lost the connection to L0 (${error?.message ?? 'closed'}); reconnecting…`)
        else if (status === 'online') say('connected to L0 again')
      })
      const opening = openInvite(
        nodeCrypto,
        client,
        inviter,
        { role, name, ttlSeconds, guestValidSeconds, ...(rekeyCn === undefined ? {} : { rekeyCn }) },
        { now: now(), timeoutMs },
      )
      opening.catch(() => undefined)
      const openedOrStopped = await Promise.race([opening, stop.signal])
      if (typeof openedOrStopped === 'string') return openedOrStopped === 'SIGINT' ? 130 : 143
      opened = openedOrStopped
      if (args.json) {
        jsonLine({ code: opened.code, inviteId: opened.inviteId, expires: opened.expires })
      } else {
        process.stdout.write(
          [
            `pairing code: ${opened.code}`,
            rekeyCn !== undefined
              ? `  for new keys of ${role} "${name}" (${rekeyCn}), valid until ${isoTime(opened.expires)}, once`
              : `  for a new ${role}${name ? ` "${name}"` : ''}, valid until ${isoTime(opened.expires)}, once`,
            `  on the new device: kin enroll --home DIR --code ${opened.code} --broker ${url}`,
          ].join('\n') + '\n',
        )
      }
      say(`waiting for the new device (the code expires at ${isoTime(opened.expires)}; Ctrl-C withdraws it)…`)
      // From here on the code is out: a stop withdraws it rather than leaving it registered and the device waiting.
      const completing = completeInvite(nodeCrypto, nodePki, client, inviter, opened, {
        keep: inviterLedger.keep,
        now,
        stepTimeoutMs: timeoutMs,
        onAuthorized: (childCn, request) =>
          say(`authorized ${request.kind} "${request.name}" as ${childCn}; waiting for L0 to issue its certificate…`),
      })
      completing.catch(() => undefined)
      const first = await Promise.race([completing.then(r => ({ done: r })), stop.signal.then(signal => ({ signal }))])
      if ('signal' in first) return await withdrawOnStop(client, inviter, opened, first.signal, timeoutMs, args.json)
      result = first.done
    } finally {
      stop.dispose()
    }
    const summary = {
      ok: true,
      cn: result.childCn,
      name: result.name,
      role: result.role,
      kind: result.kind,
      parentCn: inviter.cn,
      inviteId: opened.inviteId,
      ...(rekeyCn === undefined ? { authorizeId: result.authorize.idHex } : { rekeyId: result.authorize.idHex }),
      certHash: result.certificate.certHashHex,
      notAfter: result.certificate.notAfter,
    }
    if (args.json) jsonLine(summary)
    else if (rekeyCn !== undefined)
      process.stdout.write(
        `rekeyed ${result.kind} "${result.name}" (${result.childCn}): new keys on the device that enrolled with the code, certificate valid until ${isoTime(result.certificate.notAfter)}; its old keys are refused from now on\n`,
      )
    else
      process.stdout.write(
        `enrolled ${result.kind} "${result.name}" as ${result.childCn} (role ${result.role}, certificate valid until ${isoTime(result.certificate.notAfter)})\n`,
      )
    return 0
  } catch (err) {
    const code = err instanceof KinError ? err.code : 'INTERNAL'
    const message = err instanceof Error ? err.message : String(err)
    if (args.json) jsonLine({ ok: false, code, message, detail: err instanceof KinError ? err.detail : undefined })
    else process.stderr.write(`kin: ${message} [${code}]\n`)
    return exitStatusOf(err)
  } finally {
    await client?.close().catch(() => undefined)
    await inviterLedger.close()
  }
}
