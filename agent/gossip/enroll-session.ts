/**
 * @module `kin enroll` without the files: pair with a one-time code through the broker, get authorized and certified,
 * and build the new device's ledger — checking everything the parent and L0 send.
 */
import { KinError, VerificationError } from '../errors.ts'
import { bytesEqual } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import type { Transport } from '../ports/transport.ts'
import {
  acceptAuthorization,
  acceptRekey,
  createEnrollCsr,
  recordCertificate,
  type AcceptedAuthorization,
} from '../enroll/child.ts'
import { readEvent } from '../ledger/event.ts'
import { derivePairingSecrets, openPairMessage, sealPairMessage, type PairingSecrets } from '../enroll/pairing.ts'
import { createEnrollRequest, encodeEnrollRequest, type DeviceSecrets, type EnrollRequest } from '../enroll/request.ts'
import { Ledger } from '../ledger/ledger.ts'
import type { VerifiedSignatures } from '../ledger/validate.ts'
import type { EncodedEvent, RoleName } from '../ledger/types.ts'
import { DeviceCertificate } from '../pki/certificate.ts'
import { checkIssuedByRoot, checkValidity } from '../pki/chain.ts'
import type { PkiProvider } from '../ports/pki.ts'
import { fleetDomainOfRootCn } from '../pki/root-name.ts'
import type { GossipClient } from './client.ts'
import { connectDevice, connectPairing } from './login.ts'
import { decodeAuthorizePayload, decodeCertReply, encodeCsrPayload, remoteRefusal, withdrawalOf } from './pair-wire.ts'
import { submitEvents } from './submit.ts'
import { fleetTopics } from './topics.ts'
import type { TlsKeyType } from '../pki/key-type.ts'

/** What the enrolling device is told and chooses. */
export interface EnrollOptions {
  /** The pairing code as typed. */
  code: string
  /** L0's broker, `mqtts://HOST:PORT`. */
  url: string
  kind: string
  name: string
  /** The TLS key type to make (default DEFAULT_TLS_KEY_TYPE, P-256); rsa2048 for a TLS stack without ECDSA. */
  keyType?: TlsKeyType
  /** Limit for each step (login, authorization, certificate), in milliseconds. */
  stepTimeoutMs: number
  /** Seconds since the epoch. */
  now(): number
  /** How often the request is repeated until the parent answers (default 2 s). */
  repeatMs?: number
  /**
   * Keys made beforehand with createEnrollRequest (a device provisioned at the factory, or a benchmark); their
   * request's kind and name are used. By default the keys are generated here, after the code is checked.
   */
  keys?: { request: EnrollRequest; secrets: DeviceSecrets }
  /**
   * Signatures this process verified before (the simulator's devices, sharing one process: SharedEvents.verified);
   * a lineage event matching one by exact id and key is not verified again, every other one is.
   */
  verified?: VerifiedSignatures
  /** Told about each step, for progress messages. */
  onStep?(step: 'keys' | 'login' | 'request' | 'authorized' | 'csr' | 'certified', detail?: string): void
}

/** A newly enrolled device: everything its home must hold. `secrets` never leave the device. */
export interface EnrolledDevice {
  cn: string
  fleet: string
  role: RoleName
  parentCn: string
  /** L0's CN, from genesis: the name every later broker session checks. */
  l0Cn: string
  rootPem: string
  certPem: string
  secrets: DeviceSecrets
  /** The device's verified ledger: the lineage from L0, then its authorize and certified events. */
  ledger: Ledger
  authorize: EncodedEvent
  certified: EncodedEvent
  /** Milliseconds spent generating keys (reported apart from the network steps). */
  keygenMs: number
}

/**
 * The pairing session's TLS is unauthenticated toward the server until docs/PAIRING.md step 4: the device does not know the
 * fleet root yet. What protects enrollment before then is the code: the request and the authorization are
 * MACed end to end with a key L0 never sees, so a false broker can neither read a usable request nor forge an
 * authorization. Once the root arrives inside the MACed authorization, the broker certificate of this very
 * session must chain to it (else BROKER_IDENTITY), and once genesis arrives its CN must be L0's.
 */
function checkPairingBroker(
  pki: PkiProvider,
  client: GossipClient,
  root: DeviceCertificate,
  now: number,
  sha256: (d: Uint8Array) => Uint8Array,
): DeviceCertificate {
  const der = client.session.peerCertificate()
  if (der === undefined)
    throw new KinError('BROKER_IDENTITY', 'the broker presented no TLS certificate; this is not a kinship L0')
  try {
    const peer = DeviceCertificate.from(der, { sha256 })
    checkIssuedByRoot(peer, root, pki)
    checkValidity(peer, now)
    return peer
  } catch (err) {
    throw new KinError(
      'BROKER_IDENTITY',
      `the broker this device paired through is not vouched for by the fleet root the parent sent (${(err as Error).message}); do not use this network`,
      { cause: err },
    )
  }
}

function lineageError(err: unknown): unknown {
  if (!(err instanceof KinError)) return err
  return new VerificationError(err.code, `the lineage L0 sent does not verify: ${err.message}`, { cause: err })
}

/** Replays L0's lineage into a fresh ledger; its genesis must name the root the parent sent (rootCertHash). */
export function ledgerFromLineage(
  crypto: CryptoProvider,
  lineage: Uint8Array[],
  root: DeviceCertificate,
  domain: string,
  now: number,
  verified?: VerifiedSignatures,
): Ledger {
  const ledger = new Ledger(crypto)
  try {
    for (const bytes of lineage) ledger.ingest(bytes, { now, verified })
  } catch (err) {
    throw lineageError(err)
  }
  const genesis = ledger.state.genesis
  if (genesis === undefined) throw new VerificationError('NO_GENESIS', 'the lineage L0 sent has no genesis event')
  if (!bytesEqual(genesis.body.rootCertHash, root.certHash)) {
    throw new VerificationError(
      'CERT_CHAIN',
      "the fleet's genesis names another root certificate than the one the parent sent; enrollment stopped",
    )
  }
  if (genesis.body.domain !== domain)
    throw new VerificationError('CERT_CHAIN', `genesis founds fleet ${genesis.body.domain}, the root names ${domain}`)
  return ledger
}

/**
 * docs/PAIRING.md step 4 on the child: the parent's sealed answer on the `authorize` leaf — an authorization payload, or a
 * withdrawal (its `kin invite` was stopped), refused at once PAIR_WITHDRAWN instead of waiting out the timeout.
 */
export function awaitAuthorization(
  client: GossipClient,
  secrets: PairingSecrets,
  topics: ReturnType<typeof fleetTopics>,
  timeoutMs: number,
): Promise<Uint8Array> {
  return client.waitFor(
    topics.pair(secrets.inviteId, 'authorize'),
    p => {
      const payload = openPairMessage(secrets, 'authorize', p)
      const withdrawn = withdrawalOf(payload)
      if (withdrawn !== undefined) {
        throw new VerificationError(
          'PAIR_WITHDRAWN',
          `the inviting device withdrew the invite (${withdrawn}); ask it for a new code ('kin invite')`,
        )
      }
      return payload
    },
    {
      timeoutMs,
      code: 'PAIR_TIMEOUT',
      message: `the inviting device did not answer within ${Math.round(timeoutMs / 1000)} s; is 'kin invite' still running there?`,
    },
  )
}

async function requestAuthorization(
  client: GossipClient,
  opts: EnrollOptions,
  topics: ReturnType<typeof fleetTopics>,
  secrets: ReturnType<typeof derivePairingSecrets>,
  request: EnrollRequest,
): Promise<Uint8Array> {
  const message = sealPairMessage(secrets, 'request', encodeEnrollRequest(request))
  const requestTopic = topics.pair(secrets.inviteId, 'request')
  await client.publish(requestTopic, message)
  opts.onStep?.('request')
  // Repeated until answered: the parent may have been reconnecting (an L0 restart) when the first copy passed.
  const repeat = setInterval(() => {
    client.publish(requestTopic, message).catch(() => undefined)
  }, opts.repeatMs ?? 2000)
  try {
    return await awaitAuthorization(client, secrets, topics, opts.stepTimeoutMs)
  } finally {
    clearInterval(repeat)
  }
}

/**
 * Enrolls a new device through L0's broker (docs/PAIRING.md steps 2–7, without the final submission): generates its
 * keys, logs in with the code, sends the request, checks the authorization, sends the CSR, checks the
 * certificate and the lineage, and returns the device with its ledger. Nothing is written anywhere.
 */
export async function enrollThroughBroker(
  crypto: CryptoProvider,
  pki: PkiProvider,
  transport: Transport,
  opts: EnrollOptions,
): Promise<EnrolledDevice> {
  // A typo is refused before spending a second on keys.
  const secrets = derivePairingSecrets(opts.code)
  const started = Date.now()
  const { request, secrets: deviceSecrets } =
    opts.keys ?? (await createEnrollRequest(crypto, pki, { kind: opts.kind, name: opts.name, keyType: opts.keyType }))
  const keygenMs = Date.now() - started
  opts.onStep?.('keys')

  const client = await connectPairing(transport, opts.url, secrets, { timeoutMs: opts.stepTimeoutMs })
  try {
    opts.onStep?.('login')
    return await enrollSteps(crypto, pki, client, opts, secrets, request, deviceSecrets, keygenMs)
  } finally {
    await client.close()
  }
}

/**
 * The fleet domain, for topic names only, from the CN L0 presents in TLS (`<label>.<domain>`): the code does
 * not carry it. It is confirmed in docs/PAIRING.md step 4 against the root's name; a broker that lies about it only makes the
 * topics miss, and the enrollment time out.
 */
export function fleetOfBroker(client: GossipClient, sha256: (d: Uint8Array) => Uint8Array): string {
  const der = client.session.peerCertificate()
  if (der === undefined)
    throw new KinError('BROKER_IDENTITY', 'the broker presented no TLS certificate; this is not a kinship L0')
  const cn = DeviceCertificate.from(der, { sha256 }).cn
  const dot = cn.indexOf('.')
  if (dot <= 0)
    throw new KinError('BROKER_IDENTITY', `the broker's certificate names "${cn}", which is not a kinship device name`)
  return cn.slice(dot + 1)
}

async function enrollSteps(
  crypto: CryptoProvider,
  pki: PkiProvider,
  client: GossipClient,
  opts: EnrollOptions,
  secrets: ReturnType<typeof derivePairingSecrets>,
  request: EnrollRequest,
  deviceSecrets: DeviceSecrets,
  keygenMs: number,
): Promise<EnrolledDevice> {
  const topics = fleetTopics(fleetOfBroker(client, crypto.sha256))
  await client.subscribe([topics.pair(secrets.inviteId, 'authorize'), topics.pair(secrets.inviteId, 'cert')])

  // docs/PAIRING.md steps 3–4: request, then the MACed authorization and the fleet root.
  const payload = decodeAuthorizePayload(await requestAuthorization(client, opts, topics, secrets, request))
  const root = DeviceCertificate.from(payload.rootPem, { sha256: crypto.sha256 })
  try {
    checkIssuedByRoot(root, root, pki)
  } catch (err) {
    throw new VerificationError(
      'CERT_CHAIN',
      `the parent sent a fleet root that is not a self-signed kinship CA: ${(err as Error).message}`,
      { cause: err },
    )
  }
  const domain = fleetDomainOfRootCn(root.cn)
  if (fleetTopics(domain).base !== topics.base)
    throw new KinError('BROKER_IDENTITY', `the broker names fleet ${topics.fleet}, the parent's root names ${domain}`)
  // A rekey invite is answered with the parent's rekey of an existing child (docs/PROTOCOL.md "Rekey by the parent"):
  // this device takes over that CN under the keys it just made.
  const accepted: AcceptedAuthorization =
    readEvent(crypto, payload.authorizeBytes).event.type === 'rekey'
      ? acceptRekey(crypto, payload.authorizeBytes, request, domain)
      : acceptAuthorization(crypto, payload.authorizeBytes, request, domain)
  const broker = checkPairingBroker(pki, client, root, opts.now(), crypto.sha256)
  opts.onStep?.('authorized', accepted.cn)

  // docs/PAIRING.md step 5: the CSR to L0's CA. Step 6: its certificate and the lineage.
  await client.publish(
    topics.pair(secrets.inviteId, 'csr'),
    encodeCsrPayload(payload.authorizeBytes, await createEnrollCsr(accepted, deviceSecrets)),
  )
  opts.onStep?.('csr')
  const reply = await client.waitFor(topics.pair(secrets.inviteId, 'cert'), decodeCertReply, {
    timeoutMs: opts.stepTimeoutMs,
    code: 'PAIR_TIMEOUT',
    message: `L0's CA did not answer within ${Math.round(opts.stepTimeoutMs / 1000)} s; is 'kin broker' running?`,
  })
  if (!reply.ok)
    throw remoteRefusal(reply.code, reply.message, 'ENROLL_STATE', "L0's CA refused this device's certificate")

  // docs/PAIRING.md step 7: the device's own ledger; its certificate checked against the root of step 4.
  const now = opts.now()
  const ledger = ledgerFromLineage(crypto, reply.lineage, root, domain, now, opts.verified)
  const l0Cn = ledger.state.genesis!.cn
  if (broker.cn !== l0Cn)
    throw new KinError('BROKER_IDENTITY', `the broker this device paired through is ${broker.cn}, not L0 (${l0Cn})`)
  // L0's lineage ends with this device's authorize event once the CA recorded it (broker/lineage.ts); an older L0
  // may stop at the parent's events.
  if (!ledger.state.has(accepted.event.idHex)) {
    try {
      ledger.ingest(accepted.event, { now })
    } catch (err) {
      throw lineageError(err)
    }
  }
  const { certified } = recordCertificate(
    crypto,
    pki,
    ledger,
    accepted,
    deviceSecrets,
    reply.certPem,
    payload.rootPem,
    now,
  )
  ledger.ingest(certified, { now })
  opts.onStep?.('certified', accepted.cn)
  const role =
    accepted.event.event.type === 'authorize'
      ? accepted.event.event.body.role
      : ledger.state.bindingById(accepted.event.idHex)!.role
  return {
    cn: accepted.cn,
    fleet: domain,
    role,
    parentCn: accepted.parentCn,
    l0Cn,
    rootPem: payload.rootPem,
    certPem: reply.certPem,
    secrets: deviceSecrets,
    ledger,
    authorize: accepted.event,
    certified,
    keygenMs,
  }
}

/**
 * Enrollment's last step (docs/PAIRING.md step 7): the device's first session with its new certificate hands L0 its
 * authorize and certified events, and waits until L0 admits the device (L0 grants a subscription to the ledger's head
 * only to a device whose certified event it holds), so an enrolled device's first sessions are never refused. The
 * CLI, the simulator and the benchmark all end an enrollment with this.
 */
export async function handOverFirstEvents(
  transport: Transport,
  device: EnrolledDevice,
  url: string,
  timeoutMs: number,
): Promise<void> {
  const client = await connectDevice(
    transport,
    {
      url,
      cn: device.cn,
      certPem: device.certPem,
      keyPem: device.secrets.tls.privateKeyPem,
      rootPem: device.rootPem,
      l0Cn: device.l0Cn,
    },
    { timeoutMs },
  )
  try {
    await submitEvents(client, device.fleet, device.cn, [device.authorize, device.certified])
    await untilAdmitted(client, fleetTopics(device.fleet).head, timeoutMs)
  } finally {
    await client.close()
  }
}

/**
 * Asks for `topic` until L0 grants it: the broker acknowledged the submission (PUBACK) before L0's miner recorded
 * it, so the first asks may be refused. Bounded by `timeoutMs`; the last refusal is thrown, saying why.
 */
async function untilAdmitted(client: GossipClient, topic: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (let wait = 10; ; wait = Math.min(wait * 2, 500)) {
    try {
      await client.subscribe([topic])
      return
    } catch (err) {
      if (!(err instanceof KinError) || err.code !== 'ACL_DENIED' || Date.now() + wait > deadline) {
        if (err instanceof KinError && err.code === 'ACL_DENIED')
          throw new KinError(
            'ACL_DENIED',
            `L0 has not admitted this device within ${timeoutMs} ms of its certified event: ${err.message}`,
            { cause: err, detail: err.detail },
          )
        throw err
      }
      await new Promise(resolve => setTimeout(resolve, wait))
    }
  }
}
