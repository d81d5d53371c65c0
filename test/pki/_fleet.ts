/** @module Test fleet: a root CA, L0 and enrolled children built through the real issuance path (native keys, they are fast). */
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { cnOf } from '../../agent/ledger/names.ts'
import { createFleetRoot } from '../../agent/pki/root.ts'
import { createCsr } from '../../agent/pki/csr.ts'
import { issueDeviceCertificate, issueL0Certificate, type Authorization } from '../../agent/pki/issue.ts'
import type { DeviceCertificate } from '../../agent/pki/certificate.ts'
import type { TlsKeyPair, TlsKeyType } from '../../agent/ports/pki.ts'

export const DOMAIN = 'smith.home.arpa'
export const DAY = 86400

/** A device enrolled in the test fleet. */
export interface Member {
  cn: string
  keys: TlsKeyPair
  csrPem: string
  auth: Authorization
  cert: DeviceCertificate
}

/** A fresh random device CN in `domain`. */
export function freshCn(domain: string = DOMAIN): string {
  return cnOf(nodeCrypto.randomBytes(10), domain)
}

/** Builds a fleet: root, L0 (own certificate, no parent) and an `enroll` helper for children; keys RSA-2048 unless chosen. */
export async function makeFleet(
  now: number,
  domain: string = DOMAIN,
  keyTypes: { root?: TlsKeyType; devices?: TlsKeyType } = {},
) {
  const rootKeys = await nodePki.generateTlsKeyPair(keyTypes.root)
  const root = await createFleetRoot({ domain, keyPair: rootKeys, now, randomBytes: nodeCrypto.randomBytes })
  const l0Keys = await nodePki.generateTlsKeyPair(keyTypes.devices)
  const l0Cn = freshCn(domain)
  const l0Cert = await issueL0Certificate({
    rootCertPem: root.pem,
    rootKeyPem: rootKeys.privateKeyPem,
    cn: l0Cn,
    publicKeyPem: l0Keys.publicKeyPem,
    now,
    notAfter: now + 3650 * DAY,
    randomBytes: nodeCrypto.randomBytes,
  })
  const ca = { rootCertPem: root.pem, rootKeyPem: rootKeys.privateKeyPem, now, randomBytes: nodeCrypto.randomBytes }
  async function enroll(
    parentCn: string,
    options: { keys?: TlsKeyPair; notAfter?: number; keyType?: TlsKeyType } = {},
  ): Promise<Member> {
    const keys = options.keys ?? (await nodePki.generateTlsKeyPair(options.keyType ?? keyTypes.devices))
    const cn = freshCn(domain)
    const csrPem = await createCsr({ cn, parentCn, keyPair: keys })
    const auth: Authorization = {
      cn,
      parentCn,
      spkiHash: nodeCrypto.sha256(keys.spkiDer),
      notAfter: options.notAfter ?? now + 90 * DAY,
    }
    const cert = await issueDeviceCertificate({ ...ca, csrPem, auth })
    return { cn, keys, csrPem, auth, cert }
  }
  return { domain, root, rootKeys, l0: { cn: l0Cn, keys: l0Keys, cert: l0Cert }, ca, enroll }
}

/** The current time in whole seconds. */
export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000)
}
