/** @module `kin sync`: catch up with L0's ledger once or keep following it (the home itself is opened by following-home.ts); and how an agent listens and stops. */
import { KinError } from '../../agent/errors.ts'
import { startControlSocket, stopSignals, type ControlSocket } from '../control-socket.ts'
import { runStartedCommand } from '../dispatch.ts'
import type { HeadAlarm } from '../../agent/gossip/alarm.ts'
import type { AdoptedHead, SyncReport } from '../../agent/gossip/follower.ts'
import { headSummary, openFollowingHome, type FollowingHome } from '../../runtime/following-home.ts'
import { describeRevocation, type RevocationNotice } from '../../agent/gossip/revocation-notice.ts'
import { parseDuration, requireString, usageError, type CommandSpec } from '../args.ts'
import { EXIT_REVOKED, isoTime, jsonReplacer } from '../output.ts'

/**
 * Makes this process the agent of a home it opened with `lend`: listens on the home's control socket and carries
 * out there the commands other `kin` processes ask of it (docs/PROTOCOL.md "The control socket").
 */
export async function listenForCommands(opened: FollowingHome): Promise<ControlSocket> {
  return startControlSocket(opened.home.dir, runStartedCommand)
}

function line(value: unknown): void {
  process.stdout.write(JSON.stringify(value, jsonReplacer) + '\n')
}

function describeAlarm(a: HeadAlarm): string {
  return `ALARM ${a.code} (${a.source}): ${a.message}; the old head was kept`
}

/** Resolves with the signal's name on the first SIGINT or SIGTERM. */
export function nextStopSignal(): Promise<string> {
  // Inside the agent, the signals of the client this command runs for (control-socket.ts).
  const signals = stopSignals()
  return new Promise(resolve => {
    const stop = (name: string): void => {
      signals.off('SIGINT', onInt)
      signals.off('SIGTERM', onTerm)
      resolve(name)
    }
    const onInt = (): void => stop('SIGINT')
    const onTerm = (): void => stop('SIGTERM')
    signals.on('SIGINT', onInt)
    signals.on('SIGTERM', onTerm)
  })
}

function reportOf(cn: string, r: SyncReport): Record<string, unknown> {
  return {
    ok: r.alarms.length === 0,
    cn,
    head: headSummary(r.head, r.headId),
    covered: r.covered,
    pending: r.pending,
    added: r.added,
    rewritten: r.rewritten,
    dropped: r.dropped,
    submitted: r.submitted,
    alarms: r.alarms,
    ...(r.stale === undefined
      ? {}
      : { stale: { code: r.stale.code, message: r.stale.message, ids: r.stale.detail?.['ids'] } }),
  }
}

async function follow(dir: string, json: boolean): Promise<number> {
  const alarms: HeadAlarm[] = []
  const say = (value: Record<string, unknown>, text: string): void => {
    if (json) line(value)
    else process.stdout.write(text + '\n')
  }
  let revokedNow: (notice: RevocationNotice) => void = () => undefined
  const revoked = new Promise<RevocationNotice>(resolve => {
    revokedNow = resolve
  })
  const opened = await openFollowingHome(
    dir,
    {
      onRevoked: notice => revokedNow(notice),
      onHead: (a: AdoptedHead) =>
        say(
          {
            head: headSummary(a.head, a.headId),
            via: a.via,
            added: a.added,
            rewritten: a.rewritten,
            dropped: a.dropped.length,
          },
          `${isoTime(a.head.time)} head ${a.head.height} over ${a.head.treeSize} events (${a.added} new, via ${a.via}${a.rewritten ? ', ledger rewritten into miner order' : ''})`,
        ),
      onAlarm: a => {
        alarms.push(a)
        say({ alarm: a }, describeAlarm(a))
      },
      onStatus: (status, error) =>
        say(
          { status, ...(error === undefined ? {} : { code: error.code, message: error.message }) },
          status === 'online'
            ? 'connected to L0'
            : status === 'offline'
              ? `lost L0${error ? ` (${error.code}: ${error.message})` : ''}; reconnecting…`
              : status === 'connecting'
                ? 'connecting to L0…'
                : status,
        ),
    },
    undefined,
    { lend: true },
  )
  const { follower, config } = opened
  // The follower owns the home while it runs: other commands on it are carried out here (one writer, one session).
  let control: ControlSocket | undefined
  if (opened.lentBy === undefined) {
    try {
      control = await listenForCommands(opened)
    } catch (err) {
      await opened.close()
      throw err
    }
  }
  const agent = opened.lentBy === undefined ? {} : { agent: opened.lentBy }
  say(
    {
      following: true,
      cn: config.cn,
      broker: config.broker,
      head: headSummary(follower.replica.head, follower.replica.headId),
      ...agent,
    },
    opened.lentBy === undefined
      ? `${config.cn} following L0's ledger at ${config.broker}; stop with Ctrl-C`
      : `${config.cn}: the agent of this home (pid ${opened.lentBy}) already follows L0's ledger at ${config.broker}; showing its progress; stop with Ctrl-C`,
  )
  const stopped = Promise.race([nextStopSignal(), revoked])
  follower.start()
  const signal = await stopped
  await control?.close()
  await opened.close()
  if (typeof signal !== 'string') {
    say(
      { revoked: true, code: 'IDENTITY_REVOKED', message: describeRevocation(signal), notice: signal },
      `IDENTITY_REVOKED: ${describeRevocation(signal)}`,
    )
    return EXIT_REVOKED
  }
  say(
    { stopped: true, signal, head: headSummary(follower.replica.head, follower.replica.headId), alarms: alarms.length },
    `stopped (${signal})`,
  )
  return alarms.length > 0 ? 1 : 0
}

/** Says that this device is revoked (IDENTITY_REVOKED), as one line or one JSON object; returns EXIT_REVOKED. */
function reportRevoked(notice: RevocationNotice, json: boolean): number {
  const message = describeRevocation(notice)
  process.stdout.write(
    (json
      ? JSON.stringify({ ok: false, code: 'IDENTITY_REVOKED', message, notice }, jsonReplacer, 2)
      : `IDENTITY_REVOKED: ${message}`) + '\n',
  )
  return EXIT_REVOKED
}

/** `kin sync`. */
export const sync: CommandSpec = {
  name: 'sync',
  usage: 'kin sync --home DIR [--follow] [--timeout 30s] [--json]',
  summary:
    "Catch up with L0's ledger over MQTT, once or following it. Verify the miner's signed head (signature by the genesis' miner key, consistency with " +
    "the head this device holds), fetch the events it lacks into DIR/ledger.cbor in the miner's order, keep the head in DIR/sync.cbor, " +
    "and hand the miner this device's own events it has not sealed yet. Uses the broker and L0 CN of DIR/config.json. With --follow, " +
    'keep following (one line per new head; with --json one JSON line each) until SIGINT or SIGTERM, owning DIR as kin serve does (its control socket ' +
    "DIR/agent.sock carries out other commands on DIR); while kin serve or another follower owns DIR, it shows that agent's progress instead. A head that is forged, forks " +
    'or goes back is refused, the old one kept, and reported. A device whose own identity its ledger records as revoked says so ' +
    `(IDENTITY_REVOKED: by whom, why, from when) and exits ${EXIT_REVOKED}, also when L0 refuses its login. Exit 0 synced, 1 a head was refused, ` +
    `${EXIT_REVOKED} this device is revoked, 2 on errors.`,
  options: {
    home: { type: 'string', help: 'the device home directory' },
    follow: { type: 'boolean', help: 'keep following until stopped' },
    timeout: { type: 'string', help: 'limit for catching up once', default: '30s' },
  },
  async run(args) {
    const dir = requireString(args, 'home', 'the device home to sync, e.g. --home ./lock')
    if (args.values.follow === true) return follow(dir, args.json)
    const seconds = parseDuration(String(args.values.timeout), 'timeout')
    if (seconds < 1) throw usageError('--timeout must be at least 1s')
    const errors: KinError[] = []
    const opened = await openFollowingHome(dir, {
      onError: e => {
        if (e.code !== 'BROKER_CLOSED') errors.push(e)
      },
    })
    let report: SyncReport
    let revoked: RevocationNotice | undefined
    try {
      report = await opened.follower.syncOnce(seconds * 1000)
      revoked = opened.follower.revocation()
    } catch (err) {
      // L0 refuses a revoked device's login: when this device's ledger already records why, that is the answer.
      revoked = opened.follower.revocation()
      if (revoked === undefined) throw err
      return reportRevoked(revoked, args.json)
    } finally {
      await opened.close()
    }
    const out = {
      ...reportOf(opened.config.cn, report),
      ...(revoked === undefined
        ? {}
        : { revoked: { code: 'IDENTITY_REVOKED', message: describeRevocation(revoked), notice: revoked } }),
    }
    if (args.json) process.stdout.write(JSON.stringify(out, jsonReplacer, 2) + '\n')
    else {
      const h = report.head
      const lines = [
        h === undefined
          ? 'no head from the miner yet'
          : `synced to head ${h.height} over ${h.treeSize} events (${isoTime(h.time)}): ${report.added} new, ${report.pending} of this device's own not sealed yet${report.submitted > 0 ? `, ${report.submitted} handed to the miner` : ''}`,
      ]
      if (report.rewritten) lines.push("  the ledger file was rewritten into the miner's order")
      for (const d of report.dropped)
        lines.push(`  dropped local event ${d.idHex?.slice(0, 16)}…: ${d.code}: ${d.message}`)
      if (report.stale !== undefined) lines.push(`  ${report.stale.code}: ${report.stale.message}`)
      for (const a of report.alarms) lines.push(describeAlarm(a))
      if (revoked !== undefined) lines.push(`IDENTITY_REVOKED: ${describeRevocation(revoked)}`)
      process.stdout.write(lines.join('\n') + '\n')
    }
    return revoked !== undefined ? EXIT_REVOKED : report.alarms.length > 0 ? 1 : 0
  },
}
