/** @module `kin broker`: run L0's services — MQTT broker over mutual TLS, fleet CA, invites, the miner — or run them against another broker, or export a Mosquitto configuration. */
import { startL0 } from '../../../broker/l0.ts'
import { startL0Client } from '../../../broker/l0-client.ts'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { KinError } from '../../errors.ts'
import { DEFAULT_CRL_DAYS, MOSQUITTO_FILES, exportMosquitto } from '../../../broker/mosquitto.ts'
import { parseMaxPending, requireString, usageError, type CommandSpec, type ParsedArgs } from '../args.ts'
import { Home } from '../home.ts'
import { DEFAULT_MAX_PENDING_CONNECTIONS } from '../../../firmware-shims/node/pending-connections.ts'

function parsePort(text: string): number {
  const port = Number(text)
  if (!/^\d+$/.test(text) || !Number.isInteger(port) || port < 0 || port > 65535) throw usageError(`--port expects a port number 0..65535 (0: any free port), got "${text}"`)
  return port
}

function untilSignal(): Promise<void> {
  return new Promise<void>(resolve => {
    process.once('SIGINT', () => resolve())
    process.once('SIGTERM', () => resolve())
  })
}

/**
 * The export replaces only what an earlier export wrote: never a kinship home (a device's root.pem is its trust
 * anchor), and files of the same names from elsewhere only with --force. An earlier export is recognised by the
 * first line of its mosquitto.conf.
 */
function refuseForeignFiles(dir: string, force: boolean): void {
  if (['config.json', 'ledger.cbor', 'ledger-key', 'tls-key.pem', 'cert.pem'].some(name => existsSync(join(dir, name)))) {
    throw new KinError('STORAGE_EXISTS', `${dir} is a kinship home: the export would replace its root.pem and keys. Give --export-mosquitto a directory of its own`)
  }
  const present = Object.values(MOSQUITTO_FILES).filter(name => existsSync(join(dir, name)))
  if (present.length === 0 || force) return
  const conf = join(dir, MOSQUITTO_FILES.conf)
  const ours = existsSync(conf) && readFileSync(conf, 'utf8').startsWith('# Mosquitto for kinship fleet ')
  if (!ours) {
    throw new KinError('STORAGE_EXISTS', `${dir} already holds ${present.join(', ')}, not written by an earlier export: choose another directory, or give --force to replace them`)
  }
}

function exportConfig(args: ParsedArgs, home: string, dir: string): number {
  if (args.values['no-broker'] === true || typeof args.values.broker === 'string') throw usageError('--export-mosquitto writes files and exits: leave out --no-broker and --broker')
  const port = parsePort(String(args.values.port))
  if (port === 0) throw usageError('--export-mosquitto needs a fixed --port for the Mosquitto listener')
  const daysText = String(args.values['crl-days'])
  const crlDays = Number(daysText)
  if (!/^\d+$/.test(daysText) || crlDays < 1 || crlDays > 3650) throw usageError(`--crl-days expects a number of days 1..3650, got "${daysText}"`)
  const host = args.values.host === undefined ? undefined : String(args.values.host)
  refuseForeignFiles(dir, args.values.force === true)
  const out = exportMosquitto({ home, dir, host, port, crlDays })
  const summary = {
    ok: true, dir: out.dir, files: out.files, fleet: out.fleet, cn: out.cn, host: out.host, port: out.port,
    revoked: out.revoked.map(r => ({ cn: r.cn, serial: r.serial, reason: r.reason, why: r.why, revokedAt: r.revokedAt })),
    knownCertificates: out.known, crlNumber: out.crlNumber, crlNextUpdate: new Date(out.nextUpdate * 1000).toISOString(),
  }
  if (args.json) {
    process.stdout.write(JSON.stringify(summary) + '\n')
  } else {
    process.stdout.write([
      `wrote a Mosquitto configuration for fleet ${out.fleet} to ${out.dir}:`,
      ...Object.values(out.files).map(f => `  ${f}`),
      `the CRL names ${out.revoked.length} revoked certificate(s) of the ${out.known} L0 knows; it expires ${summary.crlNextUpdate}: export again before then`,
      `start:  mosquitto -c ${out.files.conf}        (after a new export: kill -HUP <mosquitto pid>)`,
      `then:   kin broker --no-broker --broker mqtts://${out.host ?? 'HOST'}:${out.port} --home ${home}`,
      '',
    ].join('\n'))
  }
  return 0
}

/** The URL a command on this machine reaches L0's broker by: a wildcard listener is reached on loopback. */
function localUrl(host: string, port: number): string {
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host
  return `mqtts://${reachable}:${port}`
}

/**
 * Writes the broker's URL into L0's config.json ('broker'), so that `kin invite` and `kin revoke` on L0's home reach
 * the running services without --broker. Only this entry changes, and only when it differs.
 */
function rememberBroker(dir: string, url: string): void {
  const home = new Home(dir)
  const config = home.readConfig()
  if (config.broker !== url) home.writeConfig({ ...config, broker: url })
}

/** `kin broker`. */
export const broker: CommandSpec = {
  name: 'broker',
  usage: 'kin broker --home DIR [--host 127.0.0.1] [--port 8883] [--max-pending N] [--json]\n' +
    '       kin broker --home DIR --no-broker --broker mqtts://HOST:PORT [--json]\n' +
    '       kin broker --home DIR --export-mosquitto OUTDIR [--host ADDR] [--port 8883] [--crl-days 30] [--json]',
  summary: "Run L0's services on the home made by 'kin init': the MQTT broker (devices log in with their fleet certificate, pairing sessions with a one-time code), the fleet CA, invites and the miner (signed heads, sync, proof bundles). " +
    'With --no-broker the same services (without pairing logins) run as a client of an existing broker. --export-mosquitto writes mosquitto.conf, the ACL and the CRL for that broker and exits. ' +
    'Logs JSON lines on stderr; stops cleanly on SIGINT or SIGTERM. See docs/BROKERS.md.',
  options: {
    home: { type: 'string', help: "L0's home directory (made by 'kin init')" },
    host: { type: 'string', help: 'address to listen on (default 127.0.0.1; with --export-mosquitto: the address Mosquitto binds, default all)' },
    port: { type: 'string', help: 'TCP port for MQTT over TLS (0: any free port)', default: '8883' },
    'no-broker': { type: 'boolean', help: 'run no MQTT broker: connect the services to --broker instead' },
    broker: { type: 'string', help: 'with --no-broker: the existing broker, mqtts://HOST:PORT' },
    'export-mosquitto': { type: 'string', help: 'write a Mosquitto configuration (conf, ACL, CRL, certificates) into this directory and exit' },
    force: { type: 'boolean', help: 'with --export-mosquitto: replace files of the same names that an earlier export did not write' },
    'crl-days': { type: 'string', help: 'with --export-mosquitto: days until the CRL expires', default: String(DEFAULT_CRL_DAYS) },
    'max-pending': { type: 'string', help: `connections not yet logged in that the broker keeps; the next one closes the oldest (default ${DEFAULT_MAX_PENDING_CONNECTIONS})` },
  },
  async run(args) {
    const home = requireString(args, 'home', "L0's home, e.g. --home ./l0")
    const exportDir = args.values['export-mosquitto']
    const maxPending = args.values['max-pending'] === undefined ? undefined : parseMaxPending(String(args.values['max-pending']))
    if (maxPending !== undefined && (typeof exportDir === 'string' || args.values['no-broker'] === true)) throw usageError('--max-pending applies to the broker L0 runs itself, not with --export-mosquitto or --no-broker')
    if (typeof exportDir === 'string') return exportConfig(args, home, exportDir)

    if (args.values['no-broker'] === true) {
      const url = requireString(args, 'broker', 'the broker L0 connects to, e.g. --broker mqtts://127.0.0.1:8883')
      const stop = untilSignal()
      const services = await startL0Client({ home, broker: url })
      rememberBroker(home, url)
      const where = { ok: true, mode: 'client', broker: url, cn: services.cn, fleet: services.fleet, clientId: services.clientId }
      if (args.json) process.stdout.write(JSON.stringify(where) + '\n')
      else process.stdout.write(`L0 of fleet ${services.fleet} serving through ${url} as ${services.clientId} (cn ${services.cn}); stop with Ctrl-C\n`)
      await stop
      await services.close()
      return 0
    }
    if (typeof args.values.broker === 'string') throw usageError('--broker goes with --no-broker (L0 then runs no broker of its own)')

    const host = args.values.host === undefined ? '127.0.0.1' : String(args.values.host)
    const port = parsePort(String(args.values.port))
    const stop = untilSignal()
    const services = await startL0({ home, host, port, ...(maxPending === undefined ? {} : { maxPendingConnections: maxPending }) })
    const where = { ok: true, host: services.host, port: services.port, cn: services.cn, fleet: services.fleet, url: `mqtts://${services.host}:${services.port}` }
    rememberBroker(home, localUrl(services.host, services.port))
    if (args.json) process.stdout.write(JSON.stringify(where) + '\n')
    else process.stdout.write(`L0 of fleet ${services.fleet} listening on ${where.url} (cn ${services.cn}); stop with Ctrl-C\n`)
    await stop
    await services.close()
    return 0
  },
}
