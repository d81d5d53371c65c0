/** @module How a device logs in to its broker: as an enrolled device (mutual TLS, L0 checked) or as a pairing session. */
import { KinError, isKinError } from '../errors.ts'
import { CONNACK, type Transport } from '../ports/transport.ts'
import type { PairingSecrets } from '../enroll/pairing.ts'
import { GossipClient } from './client.ts'

/** What an enrolled device needs to open a session: its certificate and key, the fleet root and L0's CN. */
export interface DeviceLogin {
  url: string
  cn: string
  certPem: string
  keyPem: string
  rootPem: string
  /** L0's CN: the broker's certificate must name it and chain to `rootPem`. */
  l0Cn: string
}

/**
 * A device session: client id = the device's CN, its fleet certificate presented in TLS, the broker's
 * certificate checked against the fleet root and L0's CN. `reconnect` keeps a long wait alive across an L0
 * restart (subscriptions are renewed).
 */
export function connectDevice(
  transport: Transport,
  login: DeviceLogin,
  opts: { timeoutMs: number; reconnect?: boolean },
): Promise<GossipClient> {
  return GossipClient.connect(transport, {
    url: login.url,
    clientId: login.cn,
    connectTimeoutMs: opts.timeoutMs,
    reconnect: opts.reconnect === true,
    login: { kind: 'certificate', certPem: login.certPem, keyPem: login.keyPem },
    server: { kind: 'fleet', rootPem: login.rootPem, serverCn: login.l0Cn },
  })
}

/** MQTT user name of the pairing session of an invite (docs/PAIRING.md step 2). */
export function pairingUsername(inviteId: string): string {
  return `pair:${inviteId}`
}

/** MQTT client id of the pairing session of an invite. */
export function pairingClientId(inviteId: string): string {
  return `pair-${inviteId}`
}

/**
 * Logs in as the pairing session of a code. The broker's certificate cannot be checked yet (the enrolling
 * device learns the fleet root only in docs/PAIRING.md step 4); the caller checks `session.peerCertificate()` afterwards.
 * CONNACK refusals become PAIR_CODE_WRONG (4), PAIR_CODE_USED (2) and PAIR_CODE_EXPIRED (5).
 */
export async function connectPairing(
  transport: Transport,
  url: string,
  secrets: PairingSecrets,
  opts: { timeoutMs: number },
): Promise<GossipClient> {
  try {
    return await GossipClient.connect(transport, {
      url,
      clientId: pairingClientId(secrets.inviteId),
      connectTimeoutMs: opts.timeoutMs,
      reconnect: false,
      login: { kind: 'pairing', username: pairingUsername(secrets.inviteId), password: secrets.loginProof },
      server: { kind: 'deferred' },
    })
  } catch (err) {
    throw pairingLoginError(err)
  }
}

/** Maps a refused pairing login to the PAIR_* code that tells the person what to do. */
export function pairingLoginError(err: unknown): unknown {
  if (!isKinError(err, 'BROKER_REFUSED')) return err
  const returnCode = err.detail?.returnCode
  switch (returnCode) {
    case CONNACK.badUsernameOrPassword:
      return new KinError(
        'PAIR_CODE_WRONG',
        'L0 knows no invite for this code: check it for a typo, or ask the inviter for a new code',
        { cause: err },
      )
    case CONNACK.identifierRejected:
      return new KinError(
        'PAIR_CODE_USED',
        'this code was already used (a code works once): ask the inviter for a new code',
        { cause: err },
      )
    case CONNACK.notAuthorized:
      return new KinError(
        'PAIR_CODE_EXPIRED',
        "this code has expired (or its inviter withdrew it): ask the inviter for a new code ('kin invite')",
        { cause: err },
      )
    default:
      return err
  }
}
