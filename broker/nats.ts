/**
 * @module `kin broker --export-nats`: an N-node NATS cluster (JetStream, MQTT over TLS with the certificate's CN as
 * the user) for the fleet, its users file with each device's allow list, and the refresh that reloads every node.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { KinError } from '../agent/errors.ts'
import { fleetTopics, MAX_PAYLOAD_BYTES } from '../agent/gossip/topics.ts'
import { writeFileDurable } from '../runtime/home.ts'
import { readL0Ledger, readL0Material } from './home.ts'
import { aclDeviceCns } from './mosquitto.ts'
import { servicesCn, servicesIdentity } from './services-identity.ts'
import type { LedgerState } from '../agent/ledger/state.ts'

/** File names the export writes in its directory (per node: `node-<i>.conf`, `node-<i>.pid`, `node-<i>/` for JetStream). */
export const NATS_FILES = {
  users: 'users.conf',
  cafile: 'root.pem',
  certfile: 'l0-cert.pem',
  keyfile: 'l0-key.pem',
  nodes: 'nodes.json',
} as const

/** First line of every file the export writes: how a later export recognises its own directory. */
export const NATS_MARK = '# NATS for kinship fleet '

/** Ports of one node: MQTT over TLS (devices and L0's services), NATS clients (TLS too), cluster routes. */
export interface NatsNodePorts {
  mqtt: number
  client: number
  route: number
}

/** Options of exportNats. */
export interface NatsExportOptions {
  /** L0's home. */
  home: string
  /** Directory to write into (created if missing; files in it are replaced). */
  dir: string
  /** Address every node binds (default 127.0.0.1). */
  host?: string
  /** One entry per node (at least 1; 3 for JetStream replicas 3). */
  nodes: NatsNodePorts[]
  /** Seconds since the epoch (default: now). */
  now?: number
}

/** What exportNats wrote. */
export interface NatsExport {
  dir: string
  fleet: string
  cn: string
  /** The user L0's services log in as (services-identity.ts). */
  servicesCn: string
  host: string
  /** Per node: its configuration, pid file and ports. */
  nodes: Array<NatsNodePorts & { name: string; conf: string; pidFile: string }>
  /** The shared users file, and the device CNs it grants. */
  users: string
  devices: string[]
  /** `mqtts://HOST:PORT` of every node, for --broker. */
  urls: string[]
}

/**
 * A kinship MQTT topic or filter as a NATS subject: levels joined by `.`, `+` → `*`, `#` → `>`. Kinship topics hold
 * no dot in any level (agent/gossip/topics.ts), so the mapping is one to one; a dotted level is refused.
 */
export function natsSubject(topic: string): string {
  const levels = topic.split('/')
  if (levels.some(l => l.includes('.') || l === ''))
    throw new KinError('TOPIC_OLD_SCHEME', `"${topic}" has an empty or dotted level: NATS cannot carry it`)
  return levels.map(l => (l === '+' ? '*' : l === '#' ? '>' : l)).join('.')
}

// NATS's MQTT layer delivers QoS 1 messages through `$MQTT.sub.<id>` subjects of the subscriber's own session:
// without it in the subscribe list a QoS 1 subscription is refused. It carries only what the session may read.
const MQTT_INTERNAL_SUB = '$MQTT.sub.>'

/** One user's allow lists, as MQTT topics. */
interface Rights {
  publish: string[]
  subscribe: string[]
}

/** A device's rights: the same table as the Mosquitto ACL (docs/BROKERS.md). */
function deviceRights(fleet: string, cn: string): Rights {
  const t = fleetTopics(fleet)
  return {
    publish: [t.submit(cn), t.syncReq(cn), t.delegatedReq(cn), t.inbox('+', cn)],
    subscribe: [t.head, t.events, t.syncResp(cn), t.delegatedHead(cn), t.inboxAll(cn)],
  }
}

/**
 * L0's services: the miner, sync answers, L0's inbox, and the CA's pairing topics as in the Mosquitto ACL (the
 * services subscribe to them wherever they run; no pairing session can log in to NATS, so nothing arrives there).
 */
function servicesRights(fleet: string, l0Cn: string): Rights {
  const t = fleetTopics(fleet)
  return {
    publish: [t.head, t.events, t.syncResp('+'), t.delegatedHead('+'), t.inbox('+', l0Cn), t.pairLeafAll('cert')],
    subscribe: [t.submitAll, t.syncReqAll, t.delegatedReqAll, t.inboxAll(l0Cn), t.pairLeafAll('csr')],
  }
}

function userEntry(user: string, rights: Rights): string {
  const list = (xs: string[]) => xs.map(x => JSON.stringify(x)).join(', ')
  return [
    `    { user: ${JSON.stringify(user)}, permissions: {`,
    `        publish: { allow: [${list(rights.publish.map(natsSubject))}] }`,
    `        subscribe: { allow: [${list([...rights.subscribe.map(natsSubject), MQTT_INTERNAL_SUB])}] }`,
    '    } }',
  ].join('\n')
}

/**
 * The users file every node includes. With `verify_and_map` the user is the client certificate's DNS name, which for
 * every fleet certificate is its CN (agent/pki/leaf-profile.ts); a CONNECT user name cannot change it. There is no
 * `%u`-style template outside JWT accounts, so every device the ledger stands behind is a user entry: one that is
 * missing (never enrolled, revoked, under a revoked ancestor) cannot log in, and removing an entry closes its session
 * at the next reload. L0's own CN is a device like the others; L0's services have their own user.
 */
export function natsUsers(fleet: string, l0Cn: string, servicesUser: string, deviceCns: readonly string[]): string {
  const devices = [...new Set([l0Cn, ...deviceCns])].sort()
  return [
    `${NATS_MARK}${fleet}: users, written by 'kin broker --export-nats' and refreshed on every enrollment and revocation.`,
    '# Every node includes this file; reload them all (SIGHUP) after it changes. Everything not listed is denied.',
    'accounts {',
    '  KIN {',
    '    jetstream: enabled',
    '    users = [',
    userEntry(servicesUser, servicesRights(fleet, l0Cn)),
    ...devices.map(cn => userEntry(cn, deviceRights(fleet, cn))),
    '    ]',
    '  }',
    '}',
    '',
  ].join('\n')
}

/** The fleet's TLS policy in Go's terms: TLS 1.2 with ECDHE (ECDSA or RSA certificates) and AEAD only (Go offers no DHE), TLS 1.3 as Go sets it. */
function tlsBlock(dir: string, indent: string): string[] {
  return [
    `${indent}tls {`,
    `${indent}  cert_file: ${JSON.stringify(join(dir, NATS_FILES.certfile))}`,
    `${indent}  key_file: ${JSON.stringify(join(dir, NATS_FILES.keyfile))}`,
    `${indent}  ca_file: ${JSON.stringify(join(dir, NATS_FILES.cafile))}`,
    `${indent}  verify_and_map: true`,
    `${indent}  cipher_suites: ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"]`,
    `${indent}  timeout: 5`,
    `${indent}}`,
  ]
}

/** One node's configuration: client port and MQTT listener both over mutual TLS, the cluster's routes, JetStream. */
export function natsNodeConf(dir: string, fleet: string, host: string, nodes: NatsNodePorts[], i: number): string {
  const me = nodes[i]!
  const name = `kin-${i + 1}`
  const routes = nodes.filter((_, j) => j !== i).map(n => JSON.stringify(`nats-route://${host}:${n.route}`))
  return [
    `${NATS_MARK}${fleet}: node ${i + 1} of ${nodes.length}, written by 'kin broker --export-nats' (docs/BROKERS.md).`,
    `# Start: nats-server -c ${join(dir, `node-${i + 1}.conf`)}   Reload (users file changed): kill -HUP $(cat ${join(dir, `node-${i + 1}.pid`)})`,
    `server_name: ${name}`,
    `host: ${JSON.stringify(host)}`,
    `port: ${me.client}`,
    `pid_file: ${JSON.stringify(join(dir, `node-${i + 1}.pid`))}`,
    // A sync answer or bundle is at most 64 KiB; NATS's default limit is 1 MiB.
    `max_payload: ${MAX_PAYLOAD_BYTES + 1024}`,
    ...tlsBlock(dir, ''),
    `include ${JSON.stringify(NATS_FILES.users)}`,
    '',
    'jetstream {',
    `  store_dir: ${JSON.stringify(join(dir, `node-${i + 1}`))}`,
    '}',
    '',
    // Routes carry every message in clear: bind them to a private network (here loopback) or give them TLS too.
    'cluster {',
    '  name: kinship',
    `  host: ${JSON.stringify(host)}`,
    `  port: ${me.route}`,
    `  routes: [${routes.join(', ')}]`,
    '}',
    '',
    'mqtt {',
    `  host: ${JSON.stringify(host)}`,
    `  port: ${me.mqtt}`,
    ...tlsBlock(dir, '  '),
    // Sessions, retained messages and QoS 1 queues live in JetStream streams replicated on every node (at most 3).
    `  stream_replicas: ${Math.min(3, nodes.length)}`,
    '}',
    '',
  ].join('\n')
}

/**
 * Writes an N-node NATS cluster for the fleet of L0's home into `dir`: per-node configurations, the shared users
 * file, the fleet root as CA, and L0's certificate as every node's identity (devices check that their broker is L0's
 * CN under the fleet root, whichever node they reach). Makes L0's services' identity on first use.
 */
export async function exportNats(opts: NatsExportOptions): Promise<NatsExport> {
  if (opts.nodes.length < 1) throw new KinError('BAD_ARGUMENT', '--export-nats needs at least one node')
  const m = readL0Material(opts.home)
  const now = opts.now ?? Math.floor(Date.now() / 1000)
  const host = opts.host ?? '127.0.0.1'
  const dir = resolve(opts.dir)
  mkdirSync(dir, { recursive: true })
  const services = await servicesIdentity(m, now)
  writeFileDurable(join(dir, NATS_FILES.cafile), m.rootPem)
  writeFileDurable(join(dir, NATS_FILES.certfile), m.certPem)
  writeFileDurable(join(dir, NATS_FILES.keyfile), m.tlsKeyPem, 0o600)
  const devices = aclDeviceCns(readL0Ledger(m).state, now)
  const users = join(dir, NATS_FILES.users)
  writeFileDurable(users, natsUsers(m.fleet, m.cn, services.cn, devices))
  const nodes = opts.nodes.map((ports, i) => {
    const conf = join(dir, `node-${i + 1}.conf`)
    writeFileDurable(conf, natsNodeConf(dir, m.fleet, host, opts.nodes, i))
    return { ...ports, name: `kin-${i + 1}`, conf, pidFile: join(dir, `node-${i + 1}.pid`) }
  })
  const urls = nodes.map(n => `mqtts://${host.includes(':') ? `[${host}]` : host}:${n.mqtt}`)
  writeFileDurable(join(dir, NATS_FILES.nodes), JSON.stringify({ fleet: m.fleet, host, nodes, urls }, null, 1) + '\n')
  return { dir, fleet: m.fleet, cn: m.cn, servicesCn: services.cn, host, nodes, users, devices, urls }
}

/** What refreshNats did. */
export interface NatsRefresh {
  /** Whether the users file changed. */
  changed: boolean
  devices: string[]
  /** Pids sent SIGHUP (nodes whose pid file names a live process). */
  reloaded: number[]
}

/** Options of refreshNats. */
export interface NatsRefreshOptions {
  /** Seconds since the epoch (default: now). */
  now?: number
  /** L0's ledger state when the caller holds it open (L0's running services); else read from L0's home. */
  state?: LedgerState
}

/**
 * Rewrites the users file of an export in `dir` from L0's ledger, and when it changed sends SIGHUP to every node
 * whose pid file names a live process, so an enrollment grants and a revocation withdraws on every node (NATS closes
 * the session of a user it no longer finds). A node that is down reads the file when it starts.
 */
export function refreshNats(home: string, dir: string, opts: NatsRefreshOptions = {}): NatsRefresh {
  const nodesPath = join(dir, NATS_FILES.nodes)
  if (!existsSync(nodesPath))
    throw new KinError('HOME_MISSING', `${dir} holds no export of 'kin broker --export-nats' (no ${NATS_FILES.nodes})`)
  const { nodes } = JSON.parse(readFileSync(nodesPath, 'utf8')) as { nodes: Array<{ pidFile: string }> }
  const now = opts.now ?? Math.floor(Date.now() / 1000)
  const m = readL0Material(home)
  const devices = aclDeviceCns(opts.state ?? readL0Ledger(m).state, now)
  const users = join(dir, NATS_FILES.users)
  const text = natsUsers(m.fleet, m.cn, servicesCn(m.cn), devices)
  const changed = !existsSync(users) || readFileSync(users, 'utf8') !== text
  const reloaded: number[] = []
  if (!changed) return { changed, devices, reloaded }
  writeFileDurable(users, text)
  for (const node of nodes) {
    const pid = existsSync(node.pidFile) ? Number(readFileSync(node.pidFile, 'utf8').trim()) : NaN
    if (!Number.isSafeInteger(pid) || pid <= 1) continue
    try {
      process.kill(pid, 'SIGHUP')
      reloaded.push(pid)
    } catch {
      // A stale pid file of a node that is down: it reads the new file when it starts.
    }
  }
  return { changed, devices, reloaded }
}
