/** @module L0's services' own TLS identity for an external broker: a certificate of the fleet root under a CN no device can hold. */
import { generateKeyPairSync } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { writeFileDurable } from '../runtime/home.ts'
import { DeviceCertificate } from '../agent/pki/certificate.ts'
import { buildLeafCertificate } from '../agent/pki/leaf-profile.ts'
import { CLOCK_SKEW_SECONDS } from '../agent/pki/root.ts'
import { IssuedRegistry } from './issued.ts'
import type { L0Material } from './home.ts'

/** Folder in L0's home holding the services' certificate and key. */
export const SERVICES_DIR = 'services'

/** The services' identity: its CN (the broker's user name and, with use_username_as_clientid, its client id) and TLS files. */
export interface ServicesIdentity {
  cn: string
  certPem: string
  keyPem: string
}

/**
 * The CN of L0's services: `services.<L0 CN>`. A device CN is `<16-character label>.<fleet domain>`, so no device
 * can be issued this name; and it differs from L0's own CN, so L0's CLI logging in as L0 never takes the services'
 * persistent session on a broker that makes the user name the client id.
 */
export function servicesCn(l0Cn: string): string {
  return `services.${l0Cn}`
}

// Unused by a device check (the services only ever connect as clients), but kept short-lived like any leaf.
const VALIDITY_SECONDS = 365 * 24 * 3600

/**
 * The services' certificate and key from L0's home, made on first use: an RSA-2048 key and a leaf of the fleet root
 * (the device profile, no parent marker) valid for a year, recorded in ca/issued.json like any certificate L0
 * issues (through `issued` when L0's running services hold the registry, so their copy stays whole); renewed when
 * less than a tenth of its life is left.
 */
export async function servicesIdentity(
  m: Pick<L0Material, 'home' | 'cn' | 'rootPem' | 'rootKeyPem'>,
  now: number,
  issued?: IssuedRegistry,
): Promise<ServicesIdentity> {
  const dir = join(m.home.dir, SERVICES_DIR)
  const certPath = join(dir, 'cert.pem')
  const keyPath = join(dir, 'tls-key.pem')
  const cn = servicesCn(m.cn)
  if (existsSync(certPath) && existsSync(keyPath)) {
    const certPem = readFileSync(certPath, 'utf8')
    const cert = DeviceCertificate.from(certPem, { sha256: nodeCrypto.sha256 })
    if (cert.cn === cn && cert.notAfter - now > VALIDITY_SECONDS / 10)
      return { cn, certPem, keyPem: readFileSync(keyPath, 'utf8') }
  }
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const root = DeviceCertificate.from(m.rootPem, { sha256: nodeCrypto.sha256 })
  const spki = publicKey.export({ type: 'spki', format: 'der' })
  const cert = await buildLeafCertificate({
    root,
    rootKeyPem: m.rootKeyPem,
    cn,
    parentCn: undefined,
    spki: new Uint8Array(spki.buffer, spki.byteOffset, spki.length),
    notBefore: now - CLOCK_SKEW_SECONDS,
    notAfter: Math.min(now + VALIDITY_SECONDS, root.notAfter),
    randomBytes: n => nodeCrypto.randomBytes(n),
  })
  // Recorded before it is used, so a later CRL could name it.
  const registry = issued ?? IssuedRegistry.open(m.home.dir)
  registry.record(cert, now)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  writeFileDurable(keyPath, keyPem, 0o600)
  writeFileDurable(certPath, cert.pem)
  return { cn, certPem: cert.pem, keyPem }
}
