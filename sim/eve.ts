/** @module Eve, who attacks a fleet: her own key pair, her own root CA copying the fleet's name, and certificates she forges with either CA. */
import type { NewFleet } from '../agent/enroll/fleet.ts'
import { createCsr } from '../agent/pki/csr.ts'
import type { DeviceCertificate } from '../agent/pki/certificate.ts'
import { issueDeviceCertificate } from '../agent/pki/issue.ts'
import type { TlsKeyType } from '../agent/pki/key-type.ts'
import { createFleetRoot } from '../agent/pki/root.ts'
import type { TlsKeyPair } from '../agent/ports/pki.ts'
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { nodePki } from '../runtime/node/pki.ts'

/** Eve's keys: the key she puts in forged certificates, and her own root CA for the fleet's domain. */
export interface EveCa {
  keys: TlsKeyPair
  rootKeys: TlsKeyPair
  root: DeviceCertificate
}

/** A CA's certificate and key, as issueDeviceCertificate takes them. */
export interface SigningCa {
  rootCertPem: string
  rootKeyPem: string
}

/** Eve's key pair and her root CA named for `domain`, made at `now` (keys of `keyType`, default P-256). */
export async function makeEve(domain: string, now: number, keyType?: TlsKeyType): Promise<EveCa> {
  const [keys, rootKeys] = await Promise.all([nodePki.generateTlsKeyPair(keyType), nodePki.generateTlsKeyPair(keyType)])
  const root = await createFleetRoot({ domain, keyPair: rootKeys, now, randomBytes: nodeCrypto.randomBytes })
  return { keys, rootKeys, root }
}

/** Eve's root as a signing CA. */
export function eveSigner(eve: EveCa): SigningCa {
  return { rootCertPem: eve.root.pem, rootKeyPem: eve.rootKeys.privateKeyPem }
}

/** The fleet's own CA as a signing CA (a mis-issuance, when Eve gets it to sign her key). */
export function fleetSigner(fleet: NewFleet): SigningCa {
  return { rootCertPem: fleet.root.pem, rootKeyPem: fleet.rootKey.privateKeyPem }
}

/**
 * A certificate for `cn` naming `parentCn`, carrying `keyPair`, issued at `now` until `notAfter` by `ca`: Eve's own
 * root (the chain fails) or the fleet's CA itself (a mis-issuance the ledger does not bind).
 */
export async function forgeCertificate(
  ca: SigningCa,
  subject: { cn: string; parentCn: string; keyPair: TlsKeyPair },
  now: number,
  notAfter: number,
): Promise<DeviceCertificate> {
  const { cn, parentCn, keyPair } = subject
  return issueDeviceCertificate({
    ...ca,
    now,
    randomBytes: nodeCrypto.randomBytes,
    crypto: nodeCrypto,
    csrPem: await createCsr({ cn, parentCn, keyPair }),
    auth: { cn, parentCn, spkiHash: nodeCrypto.sha256(keyPair.spkiDer), notAfter },
  })
}
