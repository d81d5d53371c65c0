/** @module The house with real X.509 certificates: fleet root, RSA keys, CSRs and issuance, bound in a LedgerFleet. */
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { certifiedEvent } from '../../agent/ledger/builders.ts'
import type { RoleName } from '../../agent/ledger/types.ts'
import { createFleetRoot } from '../../agent/pki/root.ts'
import { createCsr } from '../../agent/pki/csr.ts'
import { issueDeviceCertificate } from '../../agent/pki/issue.ts'
import type { DeviceCertificate } from '../../agent/pki/certificate.ts'
import type { TlsKeyPair } from '../../agent/ports/pki.ts'
import { LedgerFleet, T0 } from './ledger-fleet.ts'
import { GUEST_UNTIL, type HouseName } from './access-house.ts'

export const DOMAIN = 'smith.home.arpa'

/** A house whose devices below L0 hold real certificates from the fleet root, recorded by certified events. */
export interface X509House {
  fleet: LedgerFleet
  root: DeviceCertificate
  rootKeys: TlsKeyPair
  cn: Record<Exclude<HouseName, 'L0'>, string> & { L0: string }
  cert: Record<Exclude<HouseName, 'L0'>, DeviceCertificate>
  keys: Record<Exclude<HouseName, 'L0'>, TlsKeyPair>
  /** Has the fleet CA issue a certificate for `cn` naming `parentCn` and carrying `keys` (no ledger check). */
  issue(cn: string, parentCn: string, keys: TlsKeyPair, notAfter: number): Promise<DeviceCertificate>
}

/** Creates a root CA for `domain` at `now`. */
export async function makeRoot(
  now: number,
  domain: string = DOMAIN,
): Promise<{ root: DeviceCertificate; rootKeys: TlsKeyPair }> {
  const rootKeys = await nodePki.generateTlsKeyPair()
  return {
    root: await createFleetRoot({ domain, keyPair: rootKeys, now, randomBytes: nodeCrypto.randomBytes }),
    rootKeys,
  }
}

/** Builds the house: authorize on the ledger with the real SPKI hash, CSR, issue, then a certified event. */
export async function makeX509House(): Promise<X509House> {
  const { root, rootKeys } = await makeRoot(T0 - 600)
  const fleet = LedgerFleet.create({ time: T0, tag: 'x509-house', domain: DOMAIN })
  const issue = async (cn: string, parentCn: string, keys: TlsKeyPair, notAfter: number): Promise<DeviceCertificate> =>
    issueDeviceCertificate({
      rootCertPem: root.pem,
      rootKeyPem: rootKeys.privateKeyPem,
      now: T0 + 60,
      randomBytes: nodeCrypto.randomBytes,
      csrPem: await createCsr({ cn, parentCn, keyPair: keys }),
      auth: { cn, parentCn, spkiHash: nodeCrypto.sha256(keys.spkiDer), notAfter },
    })
  const cn = { L0: fleet.l0 } as X509House['cn']
  const cert = {} as X509House['cert']
  const keys = {} as X509House['keys']
  const enroll = async (
    name: Exclude<HouseName, 'L0'>,
    parent: HouseName,
    role: RoleName,
    kind: string,
    notAfter?: number,
  ): Promise<void> => {
    keys[name] = await nodePki.generateTlsKeyPair()
    cn[name] = fleet.enroll(cn[parent], {
      role,
      kind,
      name,
      spkiHash: nodeCrypto.sha256(keys[name].spkiDer),
      notAfter,
      certify: false,
    })
    const binding = fleet.binding(cn[name])
    cert[name] = await issue(cn[name], cn[parent], keys[name], binding.notAfter)
    fleet.sign(certifiedEvent(binding, cert[name].certHash, binding.time + 1), cn[name])
  }
  await enroll('L1', 'L0', 'admin', 'laptop')
  await enroll('L2.1', 'L1', 'member', 'phone')
  await enroll('L2.2', 'L1', 'member', 'tablet')
  await enroll('L3.1', 'L2.1', 'device', 'camera')
  await enroll('L3.2', 'L2.1', 'device', 'camera')
  await enroll('L3.3', 'L2.1', 'device', 'lock')
  await enroll('L3.4', 'L2.2', 'guest', 'phone', GUEST_UNTIL)
  return { fleet, root, rootKeys, cn, cert, keys, issue }
}
