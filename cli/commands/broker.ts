/** @module `kin broker`: run L0's services — MQTT broker over mutual TLS, fleet CA, invites, the miner — or run them against another broker or cluster, or export a Mosquitto or NATS configuration. */
import { startL0 } from '../../broker/l0.ts'
import { parseBrokerUrls, startL0Client } from '../../broker/l0-client.ts'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { KinError } from '../../agent/errors.ts'
import { DEFAULT_CRL_DAYS, MOSQUITTO_FILES, exportMosquitto } from '../../broker/mosquitto.ts'
import { NATS_FILES, NATS_MARK, exportNats } from '../../broker/nats.ts'
import { parseMaxPending, requireString, usageError, type CommandSpec, type ParsedArgs } from '../args.ts'
import { Home } from '../../runtime/home.ts'
import { DEFAULT_MAX_PENDING_CONNECTIONS } from '../../runtime/node/pending-connections.ts'
import { serverNames, type ServerNames } from '../../broker/server-names.ts'

/** The names L0's server certificates carry: the defaults for the listen address plus every --name and --address. */
function namesOf(args: ParsedArgs, listen: string): ServerNames {
  return serverNames({
    listen: [listen],
    names: (args.values.name ?? []) as string[],
    addresses: (args.values.address ?? []) as string[],
  })
}

function parsePort(text: string): number {
  const port = Number(text)
  if (!/^\d+$/.test(text) || !Number.isInteger(port) || port < 0 || port > 65535)
    throw usageError(`--port expects a port number 0..65535 (0: any free port), got "${text}"`)
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
  if (
    ['config.json', 'ledger.cbor', 'ledger-key', 'tls-key.pem', 'cert.pem'].some(name => existsSync(join(dir, name)))
  ) {
    throw new KinError(
      'STORAGE_EXISTS',
      `${dir} is a kinship home: the export would replace its root.pem and keys. Give --export-mosquitto a directory of its own`,
    )
  }
  const present = Object.values(MOSQUITTO_FILES).filter(name => existsSync(join(dir, name)))
  if (present.length === 0 || force) return
  const conf = join(dir, MOSQUITTO_FILES.conf)
  const ours = existsSync(conf) && readFileSync(conf, 'utf8').startsWith('# Mosquitto for kinship fleet ')
  if (!ours) {
    throw new KinError(
      'STORAGE_EXISTS',
      `${dir} already holds ${present.join(', ')}, not written by an earlier export: choose another directory, or give --force to replace them`,
    )
  }
}

async function exportConfig(args: ParsedArgs, home: string, dir: string): Promise<number> {
  if (args.values['no-broker'] === true || args.values.broker !== undefined)
    throw usageError('--export-mosquitto writes files and exits: leave out --no-broker and --broker')
  const port = parsePort(String(args.values.port))
  if (port === 0) throw usageError('--export-mosquitto needs a fixed --port for the Mosquitto listener')
  const daysText = String(args.values['crl-days'])
  const crlDays = Number(daysText)
  if (!/^\d+$/.test(daysText) || crlDays < 1 || crlDays > 3650)
    throw usageError(`--crl-days expects a number of days 1..3650, got "${daysText}"`)
  const host = args.values.host === undefined ? undefined : String(args.values.host)
  const rsaPort = args.values['rsa-port'] === undefined ? undefined : parsePort(String(args.values['rsa-port']))
  if (rsaPort === 0 || rsaPort === port)
    throw usageError('--rsa-port needs a fixed port of its own for the RSA listener, other than --port')
  const names = namesOf(args, host ?? '0.0.0.0')
  refuseForeignFiles(dir, args.values.force === true)
  const out = await exportMosquitto({
    home,
    dir,
    host,
    port,
    crlDays,
    serverNames: names,
    ...(rsaPort === undefined ? {} : { rsaPort }),
  })
  const summary = {
    ok: true,
    dir: out.dir,
    files: out.files,
    fleet: out.fleet,
    cn: out.cn,
    host: out.host,
    port: out.port,
    rsaPort: out.rsaPort,
    serverNames: { dns: [...names.dns], ips: [...names.ips] },
    revoked: out.revoked.map(r => ({
      cn: r.cn,
      serial: r.serial,
      reason: r.reason,
      why: r.why,
      revokedAt: r.revokedAt,
    })),
    knownCertificates: out.known,
    crlNumber: out.crlNumber,
    crlNextUpdate: new Date(out.nextUpdate * 1000).toISOString(),
  }
  if (args.json) {
    process.stdout.write(JSON.stringify(summary) + '\n')
  } else {
    process.stdout.write(
      [
        `wrote a Mosquitto configuration for fleet ${out.fleet} to ${out.dir}:`,
        ...Object.values(out.files).map(f => `  ${f}`),
        `the CRL names ${out.revoked.length} revoked certificate(s) of the ${out.known} L0 knows; it expires ${summary.crlNextUpdate}: export again before then`,
        `its certificate names ${[...names.dns, ...names.ips].join(', ')} beside L0's CN${out.rsaPort === undefined ? '' : `; port ${out.rsaPort} presents the RSA certificate`}`,
        `start:  mosquitto -c ${out.files.conf}        (after a new export: kill -HUP <mosquitto pid>)`,
        `then:   kin broker --no-broker --broker mqtts://${out.host ?? 'HOST'}:${out.port} --home ${home}`,
        '',
      ].join('\n'),
    )
  }
  return 0
}

/** The export replaces only its own files (recognised by their first line), never a kinship home's. */
function refuseForeignNatsFiles(dir: string, force: boolean): void {
  if (
    ['config.json', 'ledger.cbor', 'ledger-key', 'tls-key.pem', 'cert.pem'].some(name => existsSync(join(dir, name)))
  ) {
    throw new KinError(
      'STORAGE_EXISTS',
      `${dir} is a kinship home: the export would replace its root.pem and keys. Give --export-nats a directory of its own`,
    )
  }
  const present = [...Object.values(NATS_FILES), 'node-1.conf'].filter(name => existsSync(join(dir, name)))
  if (present.length === 0 || force) return
  const users = join(dir, NATS_FILES.users)
  if (!existsSync(users) || !readFileSync(users, 'utf8').startsWith(NATS_MARK)) {
    throw new KinError(
      'STORAGE_EXISTS',
      `${dir} already holds ${present.join(', ')}, not written by an earlier export: choose another directory, or give --force to replace them`,
    )
  }
}

async function exportNatsConfig(args: ParsedArgs, home: string, dir: string): Promise<number> {
  if (args.values['no-broker'] === true || args.values.broker !== undefined)
    throw usageError('--export-nats writes files and exits: leave out --no-broker and --broker')
  if (args.values.name !== undefined || args.values.address !== undefined || args.values['rsa-port'] !== undefined)
    throw usageError(
      '--name, --address and --rsa-port go with the broker L0 runs or --export-mosquitto, not --export-nats',
    )
  const nodesText = String(args.values.nodes)
  const count = Number(nodesText)
  if (!/^\d+$/.test(nodesText) || count < 1 || count > 9)
    throw usageError(`--nodes expects a number of nodes 1..9, got "${nodesText}"`)
  const bases = {
    mqtt: parsePort(String(args.values.port)),
    client: parsePort(String(args.values['client-port'])),
    route: parsePort(String(args.values['route-port'])),
  }
  if (Object.values(bases).some(p => p === 0 || p + count - 1 > 65535))
    throw usageError(
      '--export-nats needs fixed ports: --port, --client-port and --route-port, each the first of --nodes consecutive ports',
    )
  const host = args.values.host === undefined ? '127.0.0.1' : String(args.values.host)
  refuseForeignNatsFiles(dir, args.values.force === true)
  const nodes = Array.from({ length: count }, (_, i) => ({
    mqtt: bases.mqtt + i,
    client: bases.client + i,
    route: bases.route + i,
  }))
  const ports = [...nodes.flatMap(n => [n.mqtt, n.client, n.route])]
  if (new Set(ports).size !== ports.length) throw usageError('--port, --client-port and --route-port ranges overlap')
  const out = await exportNats({ home, dir, host, nodes })
  const summary = {
    ok: true,
    dir: out.dir,
    fleet: out.fleet,
    cn: out.cn,
    servicesCn: out.servicesCn,
    users: out.users,
    devices: out.devices.length,
    nodes: out.nodes,
    urls: out.urls,
  }
  if (args.json) {
    process.stdout.write(JSON.stringify(summary) + '\n')
  } else {
    process.stdout.write(
      [
        `wrote a ${count}-node NATS cluster for fleet ${out.fleet} to ${out.dir} (users file grants ${out.devices.length} device(s) and L0's services as ${out.servicesCn}):`,
        ...out.nodes.map(n => `  nats-server -c ${n.conf}      (MQTT ${out.host}:${n.mqtt}, routes ${n.route})`),
        `then:   kin broker --no-broker --broker ${out.urls.join(',')} --nats-dir ${out.dir} --home ${home}`,
        '        (refreshes the users file and reloads every node after each enrollment and revocation)',
        '',
      ].join('\n'),
    )
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
  usage:
    'kin broker --home DIR [--host 127.0.0.1] [--port 8883] [--name HOST]… [--address IP]… [--max-pending N] [--json]\n' +
    '       kin broker --home DIR --no-broker --broker mqtts://HOST:PORT[,mqtts://HOST:PORT…] [--nats-dir DIR] [--json]\n' +
    '       kin broker --home DIR --export-mosquitto OUTDIR [--host ADDR] [--port 8883] [--rsa-port PORT] [--name HOST]… [--address IP]… [--crl-days 30] [--json]\n' +
    '       kin broker --home DIR --export-nats OUTDIR [--nodes 3] [--host 127.0.0.1] [--port 8883] [--client-port 4222] [--route-port 6222] [--json]',
  summary:
    "Run L0's services on the home made by 'kin init': the MQTT broker (devices log in with their fleet certificate, pairing sessions with a one-time code), the fleet CA, invites and the miner (signed heads, sync, proof bundles). " +
    'With --no-broker the same services (without pairing logins) run as a client of an existing broker, or of the nodes of a cluster (failing over between them). --export-mosquitto writes mosquitto.conf, the ACL and the CRL for that broker and exits; --export-nats writes an N-node NATS cluster (configurations and users file) and exits. ' +
    'Logs JSON lines on stderr; stops cleanly on SIGINT or SIGTERM. See docs/BROKERS.md.',
  options: {
    home: { type: 'string', help: "L0's home directory (made by 'kin init')" },
    host: {
      type: 'string',
      help: 'address to listen on (default 127.0.0.1; with --export-mosquitto: the address Mosquitto binds, default all)',
    },
    port: { type: 'string', help: 'TCP port for MQTT over TLS (0: any free port)', default: '8883' },
    name: {
      type: 'string',
      multiple: true,
      help: "a host name clients reach L0 by, put in its server certificates (repeatable; always there: this machine's host name, localhost, and --host)",
    },
    address: {
      type: 'string',
      multiple: true,
      help: 'an IP address clients reach L0 by, put in its server certificates (repeatable; always there: 127.0.0.1, ::1, and --host, or every address of the machine for 0.0.0.0 or ::)',
    },
    'rsa-port': {
      type: 'string',
      help: "with --export-mosquitto: a second listener presenting L0's RSA certificate, for devices whose TLS has no ECDSA (Espruino)",
    },
    'no-broker': { type: 'boolean', help: 'run no MQTT broker: connect the services to --broker instead' },
    broker: {
      type: 'string',
      multiple: true,
      help: 'with --no-broker: the existing broker, mqtts://HOST:PORT; repeat it or give a comma list for the nodes of a cluster',
    },
    'nats-dir': {
      type: 'string',
      help: 'with --no-broker: the --export-nats directory whose users file L0 refreshes (and whose nodes it reloads) after each enrollment and revocation',
    },
    'export-nats': {
      type: 'string',
      help: 'write an N-node NATS cluster (per-node configurations, users file, certificates) into this directory and exit',
    },
    nodes: { type: 'string', help: 'with --export-nats: how many nodes', default: '3' },
    'client-port': {
      type: 'string',
      help: 'with --export-nats: first NATS client port (TLS), one per node',
      default: '4222',
    },
    'route-port': {
      type: 'string',
      help: 'with --export-nats: first cluster route port, one per node',
      default: '6222',
    },
    'export-mosquitto': {
      type: 'string',
      help: 'write a Mosquitto configuration (conf, ACL, CRL, certificates) into this directory and exit',
    },
    force: {
      type: 'boolean',
      help: 'with --export-mosquitto or --export-nats: replace files of the same names that an earlier export did not write',
    },
    'crl-days': {
      type: 'string',
      help: 'with --export-mosquitto: days until the CRL expires',
      default: String(DEFAULT_CRL_DAYS),
    },
    'max-pending': {
      type: 'string',
      help: `connections not yet logged in that the broker keeps; the next one closes the oldest (default ${DEFAULT_MAX_PENDING_CONNECTIONS})`,
    },
  },
  async run(args) {
    const home = requireString(args, 'home', "L0's home, e.g. --home ./l0")
    const exportDir = args.values['export-mosquitto']
    const maxPending =
      args.values['max-pending'] === undefined ? undefined : parseMaxPending(String(args.values['max-pending']))
    if (maxPending !== undefined && (typeof exportDir === 'string' || args.values['no-broker'] === true))
      throw usageError('--max-pending applies to the broker L0 runs itself, not with --export-mosquitto or --no-broker')
    const natsExport = args.values['export-nats']
    if (typeof exportDir === 'string' && typeof natsExport === 'string')
      throw usageError('give --export-mosquitto or --export-nats, not both')
    if (typeof exportDir === 'string') return exportConfig(args, home, exportDir)
    if (typeof natsExport === 'string') return exportNatsConfig(args, home, natsExport)
    const natsDir = args.values['nats-dir'] === undefined ? undefined : String(args.values['nats-dir'])

    if (args.values['no-broker'] === true) {
      if (args.values.name !== undefined || args.values.address !== undefined || args.values['rsa-port'] !== undefined)
        throw usageError(
          '--name, --address and --rsa-port shape the certificates of a broker L0 runs or exports, not with --no-broker',
        )
      const given = (args.values.broker ?? []) as string[]
      if (given.length === 0)
        throw usageError(
          'the broker L0 connects to, e.g. --broker mqtts://127.0.0.1:8883 (repeat it, or a comma list, for a cluster)',
        )
      const urls = parseBrokerUrls(given).map(b => b.url)
      const stop = untilSignal()
      const services = await startL0Client({ home, broker: urls, ...(natsDir === undefined ? {} : { natsDir }) })
      rememberBroker(home, services.broker())
      const where = {
        ok: true,
        mode: 'client',
        broker: services.broker(),
        brokers: urls,
        cn: services.cn,
        fleet: services.fleet,
        clientId: services.clientId,
      }
      if (args.json) process.stdout.write(JSON.stringify(where) + '\n')
      else
        process.stdout.write(
          `L0 of fleet ${services.fleet} serving through ${services.broker()} (of ${urls.length}) as ${services.clientId} (cn ${services.cn}); stop with Ctrl-C\n`,
        )
      await stop
      await services.close()
      return 0
    }
    if (args.values.broker !== undefined)
      throw usageError('--broker goes with --no-broker (L0 then runs no broker of its own)')
    if (natsDir !== undefined) throw usageError('--nats-dir goes with --no-broker')

    if (args.values['rsa-port'] !== undefined) throw usageError('--rsa-port goes with --export-mosquitto')
    const host = args.values.host === undefined ? '127.0.0.1' : String(args.values.host)
    const port = parsePort(String(args.values.port))
    const names = namesOf(args, host)
    const stop = untilSignal()
    const services = await startL0({
      home,
      host,
      port,
      serverNames: names,
      ...(maxPending === undefined ? {} : { maxPendingConnections: maxPending }),
    })
    const where = {
      ok: true,
      host: services.host,
      port: services.port,
      cn: services.cn,
      fleet: services.fleet,
      url: `mqtts://${services.host}:${services.port}`,
      serverNames: { dns: [...names.dns], ips: [...names.ips] },
    }
    rememberBroker(home, localUrl(services.host, services.port))
    if (args.json) process.stdout.write(JSON.stringify(where) + '\n')
    else
      process.stdout.write(
        `L0 of fleet ${services.fleet} listening on ${where.url} (cn ${services.cn}); its certificates name ${[...names.dns, ...names.ips].join(', ')}; stop with Ctrl-C\n`,
      )
    await stop
    await services.close()
    return 0
  },
}
