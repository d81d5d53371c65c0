/** @module A new certificate from L0's CA for this home (renewal or rekey), over the running agent's session or a new one. */
import { KinError } from '../agent/errors.ts'
import { connectDevice, type DeviceLogin } from '../agent/gossip/login.ts'
import { requestRenewal, type RekeyAsk } from '../agent/gossip/renew-session.ts'
import type { DeviceCertificate } from '../agent/pki/certificate.ts'
import { nodeCrypto } from './node/crypto.ts'
import { nodePki } from './node/pki.ts'
import { nodeTransport } from './node/transport.ts'
import { lentClient } from './following-home.ts'

/**
 * Asks L0's CA for a certificate for the device of `login` (`rekey` absent: the same key, a renewal). Carried out
 * inside the home's agent, it rides on the agent's broker session (a second one under the CN would push it off);
 * otherwise it logs in for the ask. `what` names the act in the refusal a person reads ("renew", "rekey").
 */
export async function askL0ForCertificate(
  homeDir: string,
  fleet: string,
  cn: string,
  login: DeviceLogin,
  what: string,
  opts: { timeoutMs: number; rekey?: RekeyAsk },
): Promise<DeviceCertificate> {
  const client =
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
