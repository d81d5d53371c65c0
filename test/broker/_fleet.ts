/** @module Test fleet for the broker: L0's home as `kin init` writes it, devices enrolled directly through the pure steps, MQTT clients. */
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import type { NewFleet } from '../../agent/enroll/fleet.ts'
import { FleetCa } from '../../agent/enroll/ca.ts'
import {
  derivePairingSecrets,
  formatPairingCode,
  loginVerifier,
  CODE_BYTES,
  type PairingSecrets,
} from '../../agent/enroll/pairing.ts'
import { signInvite, type Invite } from '../../agent/enroll/invite.ts'
import { signedRevoke } from '../../agent/ledger/revoke.ts'
import type { PersistentLedger } from '../../agent/ledger/persistent.ts'
import type { EncodedEvent, RevokeReasonName, RoleName } from '../../agent/ledger/types.ts'
import { decodeCbor, encodeCbor } from '../../agent/codec/cbor.ts'
import { Home } from '../../runtime/home.ts'
import { openHomeLedger } from '../../runtime/device.ts'
import type { L0Services } from '../../broker/l0.ts'
import { initL0Home, LoopbackL0 } from '../../sim/live/l0.ts'
import { enrollThroughSteps } from '../../sim/pure-enroll.ts'
import { IssuedRegistry } from '../../broker/issued.ts'
import type { TlsKeyType } from '../../agent/pki/key-type.ts'
import { createEnrollRequest, type EnrollRequest } from '../../agent/enroll/request.ts'
import { authorizeChild } from '../../agent/enroll/parent.ts'
import { acceptAuthorization, createEnrollCsr } from '../../agent/enroll/child.ts'

/** Seconds since the epoch. */
export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000)
}

/** A temporary directory. */
export function tempDir(prefix = 'kin-broker-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

/** L0's home as `kin init` leaves it, plus what the tests need to know about it. */
export interface L0Home {
  dir: string
  domain: string
  cn: string
  fleet: NewFleet
  rootPem: string
  /** L0 as a device (its own CLI connects like any device). */
  self: TestDevice
}

/** A device with its secrets and its files (root.pem, cert.pem, tls-key.pem) for mosquitto clients. */
export interface TestDevice {
  cn: string
  parentCn: string | undefined
  role: RoleName
  certPem: string
  keyPem: string
  ledgerSeed: Uint8Array
  /** Id of its binding (authorize or genesis event). */
  bindingId: string
  /** Directory holding root.pem, cert.pem, tls-key.pem. */
  dir: string
}

function writeDeviceFiles(dir: string, rootPem: string, certPem: string, keyPem: string): void {
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'root.pem'), rootPem)
  writeFileSync(join(dir, 'cert.pem'), certPem)
  writeFileSync(join(dir, 'tls-key.pem'), keyPem, { mode: 0o600 })
}

/** Creates L0's home the way `kin init` does (createFleet, the same files, genesis + certified in ledger.cbor). */
export async function makeL0Home(opts: { domain?: string; now?: number; keyType?: TlsKeyType } = {}): Promise<L0Home> {
  const dir = tempDir()
  const domain = opts.domain ?? 'smith.home.arpa'
  const now = opts.now ?? nowSeconds()
  const home = new Home(join(dir, 'l0'))
  const fleet = await initL0Home(home.dir, { domain, now, keyType: opts.keyType })
  const selfDir = join(dir, 'dev-l0')
  writeDeviceFiles(selfDir, fleet.root.pem, fleet.certificate.pem, fleet.tls.privateKeyPem)
  const self: TestDevice = {
    cn: fleet.cn,
    parentCn: undefined,
    role: 'admin',
    certPem: fleet.certificate.pem,
    keyPem: fleet.tls.privateKeyPem,
    ledgerSeed: fleet.ledgerSeed,
    bindingId: fleet.events[0]!.idHex,
    dir: selfDir,
  }
  return { dir: home.dir, domain, cn: fleet.cn, fleet, rootPem: fleet.root.pem, self }
}

/** Runs `fn` on L0's ledger file when no broker holds it. */
export async function withHomeLedger<T>(l0: L0Home, fn: (ledger: PersistentLedger) => Promise<T>): Promise<T> {
  const ledger = await openHomeLedger(new Home(l0.dir))
  try {
    return await fn(ledger)
  } finally {
    await ledger.close()
  }
}

/**
 * Enrolls a device directly through the pure steps (request, parent's authorize, FleetCa over L0's ledger,
 * certified), appending to `ledger` (L0's, open in a running broker or on its own), so no device-side CLI is involved.
 */
export async function enrollDirect(
  l0: L0Home,
  ledger: PersistentLedger,
  parent: TestDevice,
  opts: { role: RoleName; now?: number; name?: string; kind?: string },
): Promise<TestDevice> {
  const now = opts.now ?? nowSeconds()
  const ca = new FleetCa({
    crypto: nodeCrypto,
    rootCertPem: l0.rootPem,
    rootKeyPem: l0.fleet.rootKey.privateKeyPem,
    ledger: { ledger: ledger.ledger, append: (e, o) => ledger.append(e, o) },
  })
  const { cn, ledgerSeed } = parent
  const parties = { crypto: nodeCrypto, pki: nodePki, parent: { cn, ledgerSeed, ledger: ledger.ledger } }
  const { keys, authorize, accepted, issued, certified } = await enrollThroughSteps(
    { ...parties, ca, domain: l0.domain, rootPem: l0.rootPem },
    { kind: opts.kind ?? 'phone', name: opts.name ?? 'device' },
    { choices: { role: opts.role, notAfter: now + 365 * 86400 }, now, childLedger: () => ledger.ledger },
  )
  const { secrets } = keys
  await ledger.append(certified)
  // As L0's CA service does, so a CRL can name this certificate (L0 must not be running: it keeps the file in memory).
  IssuedRegistry.open(l0.dir).record(issued.certificate, now)
  const dir = join(l0.dir, '..', `dev-${accepted.cn.slice(0, 8)}`)
  writeDeviceFiles(dir, l0.rootPem, issued.certificate.pem, secrets.tls.privateKeyPem)
  return {
    cn: accepted.cn,
    parentCn: parent.cn,
    role: opts.role,
    certPem: issued.certificate.pem,
    keyPem: secrets.tls.privateKeyPem,
    ledgerSeed: secrets.ledgerSeed,
    bindingId: authorize.idHex,
    dir,
  }
}

/** A revoke event of `target` signed by `issuer` (itself or an ancestor), effective now. */
export function revocation(
  ledger: PersistentLedger,
  issuer: TestDevice,
  target: TestDevice,
  opts: { subtree?: boolean; now?: number; reason?: RevokeReasonName } = {},
): EncodedEvent {
  const now = opts.now ?? nowSeconds()
  const body = { reason: opts.reason ?? 'compromised', effective: now, subtree: opts.subtree === true }
  return signedRevoke(nodeCrypto, ledger.ledger.state, issuer, target.cn, body, now)
}

/** A fresh pairing code and its invite registration, signed by `parent`. */
export function makeInvite(
  parent: TestDevice,
  opts: { role: RoleName; now?: number; ttl?: number; name?: string },
): { code: string; secrets: PairingSecrets; invite: Invite; registration: Uint8Array } {
  const now = opts.now ?? nowSeconds()
  const code = formatPairingCode(nodeCrypto.randomBytes(CODE_BYTES))
  const secrets = derivePairingSecrets(code)
  const invite: Invite = {
    inviteId: secrets.inviteId,
    loginVerifier: loginVerifier(secrets.loginProof),
    parentCn: parent.cn,
    role: opts.role,
    name: opts.name ?? 'new device',
    expires: now + (opts.ttl ?? 600),
    time: now,
  }
  return { code, secrets, invite, registration: signInvite(nodeCrypto, invite, parent.ledgerSeed) }
}

/**
 * Registers an invite as `kin invite` does: the parent (already subscribed or not) publishes the registration on
 * L0's inbox and waits for L0's answer on its own inbox. Returns the decoded answer.
 */
export async function registerInvite(
  services: BrokerAddress & { topics: L0Services['topics'] },
  parentClient: MqttClient,
  parent: TestDevice,
  registration: Uint8Array,
): Promise<unknown> {
  const granted = await subscribeGranted(parentClient, [services.topics.inboxAll(parent.cn)])
  if (granted[0] !== 1) throw new Error(`${parent.cn} may not subscribe to its own inbox`)
  const reply = nextMessage(parentClient, services.topics.inbox(parent.cn, services.cn))
  await parentClient.publishAsync(services.topics.inbox(services.cn, parent.cn), Buffer.from(registration), { qos: 1 })
  return decodeCbor(await reply)
}

/** The CBOR submission payload of some events. */
export function submission(events: EncodedEvent[]): Uint8Array {
  return encodeCbor(events.map(e => e.bytes))
}

/** Starts L0 on the home with a log collected in memory. */
export async function startTestL0(
  l0: L0Home,
  opts: { now?: () => number } = {},
): Promise<{ services: L0Services; logs: Array<Record<string, unknown>> }> {
  const started = await LoopbackL0.start({ home: l0.dir, ...(opts.now ? { now: opts.now } : {}) })
  return { services: started.services, logs: started.logs }
}

/** Waits until `pick` finds a log record, polling the in-memory log (the test's own timeout bounds the wait). */
export async function logRecord(
  logs: Array<Record<string, unknown>>,
  pick: (r: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>> {
  for (;;) {
    const found = logs.find(pick)
    if (found !== undefined) return found
    await new Promise(r => setTimeout(r, 10))
  }
}

/** How a connection attempt ended: connected, or refused with a CONNACK code, or failed otherwise. */
export interface ConnectOutcome {
  client: MqttClient | undefined
  returnCode: number | undefined
  error: Error | undefined
}

/** Where a broker listens and who it is: a running L0Services, or what `kin broker --json` printed plus the root. */
export type BrokerAddress = Pick<L0Services, 'host' | 'port' | 'cn' | 'rootPem'>

/** Tries to connect with mqtt.js (MQTT 3.1.1, no reconnect) over TLS; the broker's certificate is checked against the fleet root and L0's CN. */
export function tryConnect(services: BrokerAddress, options: IClientOptions): Promise<ConnectOutcome> {
  return new Promise(resolve => {
    const client = mqtt.connect({
      protocol: 'mqtts',
      host: services.host,
      port: services.port,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      ca: services.rootPem,
      servername: services.cn,
      rejectUnauthorized: true,
      clean: true,
      ...options,
    })
    let settled = false
    const settle = (o: ConnectOutcome) => {
      if (settled) return
      settled = true
      if (o.client === undefined) client.end(true)
      resolve(o)
    }
    client.once('connect', () => settle({ client, returnCode: 0, error: undefined }))
    client.once('error', (err: Error & { code?: unknown }) =>
      settle({ client: undefined, returnCode: typeof err.code === 'number' ? err.code : undefined, error: err }),
    )
    client.once('close', () =>
      settle({ client: undefined, returnCode: undefined, error: new Error('closed before CONNACK') }),
    )
  })
}

/** Connects as an enrolled device (client id = its CN unless overridden); throws when refused. */
export async function connectDevice(services: BrokerAddress, dev: TestDevice, clientId = dev.cn): Promise<MqttClient> {
  const o = await tryConnect(services, { clientId, cert: dev.certPem, key: dev.keyPem })
  if (o.client === undefined) throw new Error(`login of ${dev.cn} refused: ${o.returnCode} ${o.error?.message}`)
  return o.client
}

/**
 * `dev` logs in and publishes `payload` on `topic` (QoS 1), which its ACL refuses: resolves once L0 has closed the
 * connection, with the acl.refused record L0 logged for that topic.
 */
export async function publishRefused(
  services: BrokerAddress,
  logs: Array<Record<string, unknown>>,
  dev: TestDevice,
  topic: string,
  payload: Buffer,
): Promise<Record<string, unknown>> {
  const c = await connectDevice(services, dev)
  const gone = closed(c)
  c.publish(topic, payload, { qos: 1 })
  await gone
  return logRecord(logs, r => r.event === 'acl.refused' && r.op === 'publish' && r.topic === topic)
}

/** `parent`'s authorize event for `request` as `role`, valid on L0's ledger at `now` (not yet in it), a day to live. */
export function authorizeOnL0(
  services: L0Services,
  parent: TestDevice,
  request: EnrollRequest,
  role: RoleName,
  now: number,
): EncodedEvent {
  return authorizeChild(
    nodeCrypto,
    services.ledger.ledger,
    { cn: parent.cn, ledgerSeed: parent.ledgerSeed },
    request,
    { role, notAfter: now + 86400 },
    now,
  )
}

/**
 * A lock on a pairing session: its enroll request, `parent`'s authorize event for `role` on L0's ledger at `now` (a day
 * to live) and its CSR; with `spkiDer`, the request carries that key instead of its own, as a parent that did not look
 * would sign it (the CSR still holds the child's own key).
 */
export async function childRequest(
  services: L0Services,
  parent: TestDevice,
  role: RoleName,
  now: number,
  spkiDer?: Uint8Array,
) {
  const created = await createEnrollRequest(nodeCrypto, nodePki, { kind: 'lock', name: 'back door' })
  const request = spkiDer === undefined ? created.request : { ...created.request, spkiDer }
  const authorize = authorizeOnL0(services, parent, request, role, now)
  const accepted = acceptAuthorization(nodeCrypto, authorize.bytes, request, services.fleet)
  return {
    request,
    secrets: created.secrets,
    authorize,
    accepted,
    csrPem: await createEnrollCsr(accepted, created.secrets),
  }
}

/** Sends a CSR message on the pairing topic and returns L0's decoded answer on `…/cert`. */
export async function sendCsr(
  services: L0Services,
  client: MqttClient,
  inviteId: string,
  payload: Uint8Array,
): Promise<unknown[]> {
  const topics = services.topics
  if ((await subscribeGranted(client, [topics.pair(inviteId, 'cert')]))[0] !== 1)
    throw new Error('cannot follow the cert topic')
  const answer = nextMessage(client, topics.pair(inviteId, 'cert'))
  await client.publishAsync(topics.pair(inviteId, 'csr'), Buffer.from(payload), { qos: 1 })
  return decodeCbor(await answer) as unknown[]
}

/** Tries a pairing login (no certificate): user name pair:<inviteId>, password the login proof. */
export function tryPairing(
  services: BrokerAddress,
  inviteId: string,
  password: string,
  clientId = `pair-${inviteId}`,
): Promise<ConnectOutcome> {
  return tryConnect(services, { clientId, username: `pair:${inviteId}`, password })
}

/** Subscribes and returns the granted QoS per filter (128 = refused). */
export async function subscribeGranted(client: MqttClient, filters: string[]): Promise<number[]> {
  try {
    const granted = await client.subscribeAsync(filters, { qos: 1 })
    return granted.map(g => g.qos)
  } catch (err) {
    // mqtt.js rejects a SUBACK holding 0x80; the packet still says which filters were refused.
    const granted = (err as { packet?: { granted?: Array<number | { qos: number }> } }).packet?.granted
    if (granted === undefined) throw err
    return granted.map(g => (typeof g === 'number' ? g : g.qos))
  }
}

/** Resolves with the next message on `topic`. */
export function nextMessage(client: MqttClient, topic: string): Promise<Buffer> {
  return new Promise(resolve => {
    const on = (t: string, payload: Buffer) => {
      if (t !== topic) return
      client.off('message', on)
      resolve(payload)
    }
    client.on('message', on)
  })
}

/** Resolves when the client's connection closes. */
export function closed(client: MqttClient): Promise<void> {
  return new Promise(resolve => {
    if (client.disconnected) return resolve()
    client.once('close', () => resolve())
  })
}

/** Ends a client without waiting on the broker. */
export async function end(client: MqttClient | undefined): Promise<void> {
  if (client === undefined) return
  await client.endAsync(true)
}
