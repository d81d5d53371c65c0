/** @module `kin broker --export-mosquitto`: the fleet's topics, ACLs, TLS identity and CRL as Mosquitto configuration files. */
import { join, resolve } from 'node:path'
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { FFDHE2048_PARAMS_PEM, mosquittoTlsLines } from '../runtime/node/tls-policy.ts'
import { fleetTopics, MAX_PAYLOAD_BYTES } from '../agent/gossip/topics.ts'
import { writeFileDurable } from '../runtime/home.ts'
import { DeviceCertificate } from '../agent/pki/certificate.ts'
import { buildCrl } from './crl.ts'
import { takeCrlNumber } from './crl-number.ts'
import { readL0Ledger, readL0Material } from './home.ts'
import { readIssued, type IssuedCertificate } from './issued.ts'
import { revokedCertificates, type RevokedCertificate } from './revoked.ts'
import { servicesCn, servicesIdentity } from './services-identity.ts'
import type { LedgerState } from '../agent/ledger/state.ts'
import { serverCertificates } from './server-certificates.ts'
import { signingKindOf } from '../agent/pki/key-type.ts'
import { serverNames, type ServerNames } from './server-names.ts'

/** File names the export writes in its directory. */
export const MOSQUITTO_FILES = {
  conf: 'mosquitto.conf',
  acl: 'kinship.acl',
  crl: 'crl.pem',
  cafile: 'root.pem',
  certfile: 'l0-cert.pem',
  keyfile: 'l0-key.pem',
  rsaCertfile: 'l0-rsa-cert.pem',
  rsaKeyfile: 'l0-rsa-key.pem',
  dhparam: 'dhparam.pem',
} as const

/**
 * How far an exported CRL's thisUpdate may lie before the export: tolerance for a broker clock behind L0's. It never
 * lies before a revocation the CRL lists (thisUpdate ≥ every revocationDate).
 */
export const CRL_BACKDATE_SECONDS = 300
/** Default life of an exported CRL: OpenSSL refuses every client once nextUpdate has passed, so re-export before then. */
export const DEFAULT_CRL_DAYS = 30
/**
 * Largest MQTT packet Mosquitto accepts (`max_packet_size`): the fleet's payload limit plus room for the fixed
 * header, topic and packet id. Unlike L0's aedes (which acknowledges and drops an oversized payload), Mosquitto
 * disconnects a client that sends a larger packet.
 */
export const MOSQUITTO_MAX_PACKET_BYTES = MAX_PAYLOAD_BYTES + 1024

/** Options of exportMosquitto. */
export interface MosquittoExportOptions {
  /** L0's home. */
  home: string
  /** Directory to write into (created if missing; files in it are replaced). */
  dir: string
  /** Address Mosquitto binds (default: every address). */
  host?: string
  /** Port of its TLS listener (default 8883). */
  port?: number
  /**
   * Port of a second listener presenting L0's RSA server certificate, for devices whose TLS has no ECDSA (Espruino's
   * mbedTLS). Mosquitto takes one certfile per listener, so the two certificates L0's own broker presents side by side
   * need two listeners here. None by default.
   */
  rsaPort?: number
  /** What the server certificates name beside L0's CN (default: serverNames for `host`, every address when none). */
  serverNames?: ServerNames
  /** Seconds since the epoch (default: now): when the CRL is made and revocations are judged. */
  now?: number
  /** Days until the CRL's nextUpdate (default DEFAULT_CRL_DAYS). */
  crlDays?: number
}

/** What exportMosquitto wrote. */
export interface MosquittoExport {
  dir: string
  /** Absolute paths by role. */
  files: { [K in keyof typeof MOSQUITTO_FILES]: string }
  host: string | undefined
  port: number
  rsaPort: number | undefined
  /** What the listeners' certificates name beside L0's CN. */
  serverNames: ServerNames
  fleet: string
  cn: string
  /** Certificates on the CRL, with the CN and the ledger's reason. */
  revoked: RevokedCertificate[]
  /** Issued certificates L0 knows the serials of (the CRL can name only those). */
  known: number
  crlNumber: number
  thisUpdate: number
  nextUpdate: number
}

/**
 * The ACL file (mosquitto.conf(5), `acl_file`). Topics name a device by its label, and Mosquitto can substitute only
 * the whole user name (`%u`, the certificate's CN with `use_identity_as_username`) or client id (`%c`, the CN too), so
 * no `pattern` line can grant a device its own label level. The file therefore grants by name: `pattern` lines only
 * for what every device reads (head, events), then a `user <CN>` block per device the ledger stands behind with its
 * own topics written out. A device enrolled after the export has no rights until the export runs again and Mosquitto
 * reloads (SIGHUP) — the same step that puts revocations on the CRL (docs/BROKERS.md). L0's services log in under
 * their own CN (services-identity.ts) and have a block of their own with the service rights; L0's CN is a device like
 * the others. Pairing topics are granted to nobody else: pairing cannot log in to Mosquitto.
 */
export function mosquittoAcl(
  fleet: string,
  l0Cn: string,
  deviceCns: readonly string[] = [],
  servicesUser = servicesCn(l0Cn),
): string {
  const t = fleetTopics(fleet)
  const own = (cn: string): string[] => [
    `topic write ${t.submit(cn)}`,
    `topic write ${t.syncReq(cn)}`,
    `topic read ${t.syncResp(cn)}`,
    `topic write ${t.delegatedReq(cn)}`,
    `topic read ${t.delegatedHead(cn)}`,
    `topic read ${t.inboxAll(cn)}`,
    `topic write ${t.inbox('+', cn)}`,
  ]
  const devices = [...new Set(deviceCns)].filter(cn => cn !== l0Cn).sort()
  return [
    `# kinship topic ACL for fleet ${fleet}, written by 'kin broker --export-mosquitto' (docs/BROKERS.md).`,
    '# Users are client certificate CNs (use_identity_as_username true). Everything not listed is denied.',
    '# Topics name devices by label, which %u cannot express: each device has its own block. Export again and',
    '# reload Mosquitto (SIGHUP) after every enrollment and revocation.',
    '',
    '# Every fleet device reads heads and events.',
    `pattern read ${t.head}`,
    `pattern read ${t.events}`,
    '',
    "# L0's services (miner, CA, invites), under their own certificate: they answer on L0's inbox.",
    `user ${servicesUser}`,
    `topic read ${t.inboxAll(l0Cn)}`,
    `topic write ${t.inbox('+', l0Cn)}`,
    `topic read ${t.submitAll}`,
    `topic read ${t.syncReqAll}`,
    `topic write ${t.syncResp('+')}`,
    `topic read ${t.delegatedReqAll}`,
    `topic write ${t.delegatedHead('+')}`,
    `topic write ${t.head}`,
    `topic write ${t.events}`,
    `topic read ${t.pairLeafAll('csr')}`,
    `topic write ${t.pairLeafAll('cert')}`,
    '',
    '# L0 itself (its CLI): a device like the others.',
    `user ${l0Cn}`,
    ...own(l0Cn),
    '',
    '# Each device: submit its own events, ask the miner, its own inbox (every sender), any inbox under its own label',
    '# as the sender level (an inbox message always names its true sender).',
    ...devices.flatMap(cn => [`user ${cn}`, ...own(cn), '']),
  ].join('\n')
}

/** The CNs the ACL grants device rights: every identity on the ledger whose current binding is not revoked. */
export function aclDeviceCns(state: LedgerState, now: number): string[] {
  const out: string[] = []
  for (const cn of state.bindingsByCn.keys()) {
    const binding = state.currentBinding(cn)
    const invalid = binding === undefined ? undefined : state.invalidAt(binding, now)
    if (binding !== undefined && invalid?.code !== 'REVOKED' && invalid?.code !== 'ANCESTOR_REVOKED') out.push(cn)
  }
  return out
}

/** One TLS listener's lines: the fleet's TLS policy, client certificates from the fleet root, CN as user name, CRL. */
function listenerLines(
  files: MosquittoExport['files'],
  port: number,
  host: string | undefined,
  cert: { certfile: string; keyfile: string },
): string[] {
  return [
    `listener ${port}${host === undefined ? '' : ` ${host}`}`,
    // The fleet's TLS policy (runtime/node/tls-policy.ts): forward-secret AEAD suites, DH for DHE-RSA.
    ...mosquittoTlsLines(files.dhparam),
    `cafile ${files.cafile}`,
    `certfile ${cert.certfile}`,
    `keyfile ${cert.keyfile}`,
    `crlfile ${files.crl}`,
    'require_certificate true',
    'use_identity_as_username true',
    // The client id is the CN too, whatever CONNECT says: a device can take over only its own session, never L0's
    // services' persistent one (and with it the submissions queued for them).
    'use_username_as_clientid true',
    '',
  ]
}

/**
 * mosquitto.conf: one TLS listener presenting L0's server certificate of the root's key type, and with `rsaPort` a
 * second one presenting the RSA certificate; client certificates from the fleet root, CN as user name, ACL and CRL.
 */
export function mosquittoConf(
  files: MosquittoExport['files'],
  fleet: string,
  port: number,
  host: string | undefined,
  rsaPort?: number,
): string {
  return [
    `# Mosquitto for kinship fleet ${fleet}, written by 'kin broker --export-mosquitto' (docs/BROKERS.md).`,
    '# Start: mosquitto -c ' + files.conf + '   Reload ACL and CRL after a new export: kill -HUP <pid>.',
    "# L0's services then run as a client: kin broker --no-broker --broker mqtts://HOST:PORT --home L0HOME",
    'per_listener_settings false',
    'allow_anonymous false',
    `acl_file ${files.acl}`,
    `max_packet_size ${MOSQUITTO_MAX_PACKET_BYTES}`,
    // Submissions queue for L0's persistent session while it restarts.
    'max_queued_messages 10000',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
    'log_type information',
    '',
    ...listenerLines(files, port, host, files),
    ...(rsaPort === undefined
      ? []
      : [
          "# For devices whose TLS has no ECDSA (Espruino's mbedTLS): the same listener with L0's RSA certificate.",
          ...listenerLines(files, rsaPort, host, { certfile: files.rsaCertfile, keyfile: files.rsaKeyfile }),
        ]),
  ].join('\n')
}

/**
 * Writes a Mosquitto configuration for the fleet of L0's home into `dir`: the root as cafile, L0's server certificate
 * of the root's key type as the listener's identity (devices check that the broker is L0's CN under the fleet root;
 * standard clients check the host they dialled against its SAN), the RSA one for a second listener on `rsaPort`, the ACL, and a CRL
 * of the certificates the ledger revokes (by the serials in ca/issued.json, L0's own certificate included), signed by
 * the root. Reads L0's ledger without writing it, so it runs beside a running `kin broker`.
 */
export async function exportMosquitto(opts: MosquittoExportOptions): Promise<MosquittoExport> {
  const m = readL0Material(opts.home)
  const state = readL0Ledger(m).state
  const now = opts.now ?? Math.floor(Date.now() / 1000)
  const port = opts.port ?? 8883
  const dir = resolve(opts.dir)
  const files = Object.fromEntries(
    Object.entries(MOSQUITTO_FILES).map(([k, v]) => [k, join(dir, v)]),
  ) as MosquittoExport['files']

  // Made on first use (and recorded in ca/issued.json before it is read below): the services' own certificate, which the ACL names.
  const services = await servicesIdentity(m, now)
  // The same server certificates L0's own broker presents (made anew when the names differ from theirs).
  const names = opts.serverNames ?? serverNames({ listen: [opts.host ?? '0.0.0.0'] })
  const server = await serverCertificates(m, names, now)
  // Read only: a running L0 may be appending to the registry meanwhile, and this process must not compact under it.
  const issued: IssuedCertificate[] = readIssued(m.home.dir)
  const own = DeviceCertificate.from(m.certPem, { sha256: nodeCrypto.sha256 })
  if (!issued.some(r => r.certHash === own.certHashHex)) {
    issued.push({
      serial: own.serialHex.toLowerCase(),
      cn: own.cn,
      certHash: own.certHashHex,
      spkiHash: Buffer.from(own.spkiHash).toString('hex'),
      notAfter: own.notAfter,
      issuedAt: now,
    })
  }
  // A rekey signed by a clock ahead of L0's may carry a later time: the CRL states nothing after its own making.
  const revoked = revokedCertificates(state, issued, now).map(r => (r.revokedAt > now ? { ...r, revokedAt: now } : r))
  // thisUpdate a little in the past, so a broker whose clock runs behind L0's does not refuse every client ("CRL is
  // not yet valid"), but never before a revocation the CRL lists (RFC 5280 §5.1.2.4, §5.1.2.6).
  const thisUpdate = Math.max(now - CRL_BACKDATE_SECONDS, ...revoked.map(r => r.revokedAt))
  const nextUpdate = now + (opts.crlDays ?? DEFAULT_CRL_DAYS) * 86400
  // RFC 5280 §5.2.3: strictly increasing, kept in L0's home and taken before the CRL is written.
  const crlNumber = takeCrlNumber(m.home.dir, now)
  const crl = buildCrl({ rootCertPem: m.rootPem, rootKeyPem: m.rootKeyPem, revoked, thisUpdate, nextUpdate, crlNumber })

  // The main listener presents the certificate of the root's key type: an RSA fleet's devices keep the RSA one there.
  const mainType = signingKindOf(m.root.layout.spki, 'the fleet root') === 'rsa' ? 'rsa2048' : 'p256'
  const main = server.certificates.find(c => c.keyType === mainType)!
  const rsa = server.certificates.find(c => c.keyType === 'rsa2048')!
  writeFileDurable(files.cafile, m.rootPem)
  writeFileDurable(files.certfile, main.certPem)
  writeFileDurable(files.keyfile, main.keyPem, 0o600)
  writeFileDurable(files.rsaCertfile, rsa.certPem)
  writeFileDurable(files.rsaKeyfile, rsa.keyPem, 0o600)
  writeFileDurable(files.crl, crl.pem)
  writeFileDurable(files.dhparam, FFDHE2048_PARAMS_PEM)
  writeFileDurable(files.acl, mosquittoAcl(m.fleet, m.cn, aclDeviceCns(state, now), services.cn))
  writeFileDurable(files.conf, mosquittoConf(files, m.fleet, port, opts.host, opts.rsaPort))
  return {
    dir,
    files,
    host: opts.host,
    port,
    rsaPort: opts.rsaPort,
    serverNames: names,
    fleet: m.fleet,
    cn: m.cn,
    revoked,
    known: issued.length,
    crlNumber,
    thisUpdate,
    nextUpdate,
  }
}
