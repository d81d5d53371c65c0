/** @module A new certificate from L0's CA for this home (renewal or rekey), over the running agent's session or a new one. */
import { KinError, VerificationError } from '../agent/errors.ts'
import type { LedgerState } from '../agent/ledger/state.ts'
import type { Binding } from '../agent/ledger/types.ts'
import { connectDevice, type DeviceLogin } from '../agent/gossip/login.ts'
import { requestRenewal, type RekeyAsk } from '../agent/gossip/renew-session.ts'
import type { DeviceCertificate } from '../agent/pki/certificate.ts'
import { nodeCrypto } from './node/crypto.ts'
import { nodePki } from './node/pki.ts'
import { nodeTransport } from './node/transport.ts'
import { lentClient, ridingSession } from './following-home.ts'
import { GossipClient } from '../agent/gossip/client.ts'
import type { TransportSession } from '../agent/ports/transport.ts'

/**
 * Asks L0's CA for a certificate for the device of `login` (`rekey` absent: the same key, a renewal). Given the
 * agent's broker `session`, or carried out inside the home's agent, it rides on the agent's session (a second one
 * under the CN would push it off); otherwise it logs in for the ask. `what` names the act in the refusal a person
 * reads ("renew", "rekey").
 */
export async function askL0ForCertificate(
  homeDir: string,
  fleet: string,
  cn: string,
  login: DeviceLogin,
  what: string,
  opts: { timeoutMs: number; rekey?: RekeyAsk; session?: TransportSession },
): Promise<DeviceCertificate> {
  const client =
    (opts.session !== undefined ? new GossipClient(ridingSession(opts.session)) : undefined) ??
    (await lentClient(homeDir, opts.timeoutMs)) ??
    (await connectDevice(nodeTransport, login, { timeoutMs: opts.timeoutMs }).catch((err: unknown) => {
      // A refused login cannot say why (CONNACK 5); this home's ledger did not know of a revocation, L0's may.
      if (err instanceof KinError && err.code === 'BROKER_REFUSED') {
        throw new KinError(
          'BROKER_REFUSED',
          `L0 refuses this device's login, so it cannot ${what}: revoked or expired in L0's ledger? (${err.message})`,
          { cause: err },
        )
      }
      throw err
    }))
  try {
    return await requestRenewal(
      nodeCrypto,
      nodePki,
      client.session,
      {
        fleet,
        cn,
        l0Cn: login.l0Cn,
        certPem: login.certPem,
        tlsKeyPem: login.keyPem,
        rootPem: login.rootPem,
      },
      opts,
    )
  } finally {
    await client.close().catch(() => undefined)
  }
}

/** The refusals of an act on this device's own certificate, by act. */
const REFUSAL = {
  renew: { expired: 'RENEW_EXPIRED', revoked: 'RENEW_REVOKED' },
  rekey: { expired: 'REKEY_EXPIRED', revoked: 'REKEY_REVOKED' },
} as const

/**
 * This device's binding, refused when its own ledger already says it may not renew or rekey (the cheapest refusal:
 * no broker needed): expired, or revoked itself or through an ancestor.
 */
export function standingBinding(state: LedgerState, cn: string, now: number, act: 'renew' | 'rekey'): Binding {
  const binding = state.currentBinding(cn)
  if (binding === undefined)
    throw new KinError('HOME_MISSING', `this home's ledger holds no binding for ${cn}: run 'kin sync' first`)
  const invalid = state.invalidAt(binding, now)
  if (invalid?.code === 'EXPIRED')
    throw new VerificationError(
      REFUSAL[act].expired,
      `the authorization of ${cn} ended at ${new Date(invalid.notAfter * 1000).toISOString().replace('.000Z', 'Z')}: only a new invite brings this device back`,
    )
  if (invalid !== undefined)
    throw new VerificationError(
      REFUSAL[act].revoked,
      `${cn} may not ${act}: this home's ledger says ${invalid.code.toLowerCase().replace(/_/g, ' ')}${'ancestorCn' in invalid ? ` (${invalid.ancestorCn})` : ''}`,
    )
  return binding
}
