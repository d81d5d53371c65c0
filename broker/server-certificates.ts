/** @module L0's server certificates: an ECDSA P-256 and an RSA-2048 one under L0's CN, naming the hosts and addresses L0 is reached by. */
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { nodePki } from '../runtime/node/pki.ts'
import { writeFileDurable } from '../runtime/home.ts'
import { DeviceCertificate } from '../agent/pki/certificate.ts'
import { buildLeafCertificate } from '../agent/pki/leaf-profile.ts'
import { CLOCK_SKEW_SECONDS } from '../agent/pki/root.ts'
import type { TlsKeyType } from '../agent/pki/key-type.ts'
import { IssuedRegistry } from './issued.ts'
import type { L0Material } from './home.ts'
import { checkServerAddress, sameServerNames, type ServerNames } from './server-names.ts'

/** Folder in L0's home holding the server certificates and their keys. */
export const SERVER_DIR = 'server'

/** The two key types L0 presents, ECDSA first: OpenSSL picks the one the client's signature algorithms allow. */
export const SERVER_KEY_TYPES: readonly TlsKeyType[] = Object.freeze(['p256', 'rsa2048'])

// Long enough that a broker restarted now and then never serves an expired one; re-issued at a start within its last tenth.
const VALIDITY_SECONDS = 365 * 24 * 3600

/** One server certificate and its key, PEM. */
export interface ServerCertificate {
  readonly keyType: TlsKeyType
  readonly certPem: string
  readonly keyPem: string
  /** When, in seconds, a running broker should issue it anew: the start of the last tenth of its life. */
  readonly renewAt: number
}

/** Why a server certificate was made anew: none yet, names changed, about to expire, or not (any more) the fleet root's for L0. */
export type ReissueReason = 'missing' | 'names' | 'expiring' | 'identity'

/** L0's server certificates, the names they carry, and which were made anew by this call and why. */
export interface ServerCertificates {
  readonly certificates: readonly ServerCertificate[]
  readonly names: ServerNames
  readonly reissued: ReadonlyArray<{ keyType: TlsKeyType; reason: ReissueReason }>
}

/** Paths of the certificate and key of one key type in L0's home. */
export function serverCertificatePaths(homeDir: string, keyType: TlsKeyType): { cert: string; key: string } {
  const base = keyType === 'p256' ? 'ecdsa' : 'rsa'
  return { cert: join(homeDir, SERVER_DIR, `${base}-cert.pem`), key: join(homeDir, SERVER_DIR, `${base}-key.pem`) }
}

/** The SAN of a certificate as ServerNames, leaving out DNS:cn (it is there in every kinship leaf). */
export function namesInCertificate(cert: X509Certificate, cn: string): ServerNames {
  const dns: string[] = [],
    ips: string[] = []
  for (const entry of (cert.subjectAltName ?? '').split(', ')) {
    if (entry.startsWith('DNS:') && entry !== `DNS:${cn}`) dns.push(entry.slice(4))
    else if (entry.startsWith('IP Address:')) ips.push(checkServerAddress(entry.slice(11)))
  }
  return { dns: dns.sort(), ips: ips.sort() }
}

function renewAt(certPem: string): number {
  return Math.floor(Date.parse(new X509Certificate(certPem).validTo) / 1000) - VALIDITY_SECONDS / 10
}

function withoutCn(names: ServerNames, cn: string): ServerNames {
  return { dns: names.dns.filter(n => n !== cn), ips: names.ips }
}

/** Why the stored certificate cannot be served as it is, or undefined when it can. */
function staleness(
  paths: { cert: string; key: string },
  m: Pick<L0Material, 'cn' | 'rootPem'>,
  names: ServerNames,
  now: number,
): ReissueReason | undefined {
  if (!existsSync(paths.cert) || !existsSync(paths.key)) return 'missing'
  const cert = new X509Certificate(readFileSync(paths.cert))
  const root = new X509Certificate(m.rootPem)
  let ours: boolean
  try {
    ours =
      DeviceCertificate.from(cert.raw, { sha256: nodeCrypto.sha256 }).cn === m.cn &&
      cert.verify(root.publicKey) &&
      cert.checkPrivateKey(createPrivateKey(readFileSync(paths.key)))
  } catch {
    ours = false
  }
  if (!ours) return 'identity'
  const notBefore = Math.floor(Date.parse(cert.validFrom) / 1000),
    notAfter = Math.floor(Date.parse(cert.validTo) / 1000)
  if (now < notBefore || notAfter - now < VALIDITY_SECONDS / 10) return 'expiring'
  return sameServerNames(namesInCertificate(cert, m.cn), withoutCn(names, m.cn)) ? undefined : 'names'
}

/**
 * L0's server certificates from its home, made anew where missing, naming another set of hosts and addresses than
 * `names`, within the last tenth of their life, or not the fleet root's for L0's CN and key: a P-256 one and an
 * RSA-2048 one, leaves of the fleet root (the device profile, no parent marker, SAN DNS:<L0 CN> then `names`), each
 * with a key of its own kept across re-issues. Every new certificate is recorded in ca/issued.json (through `issued`
 * when L0's running services hold the registry) before it is written.
 */
export async function serverCertificates(
  m: Pick<L0Material, 'home' | 'cn' | 'rootPem' | 'rootKeyPem'>,
  names: ServerNames,
  now: number,
  issued?: IssuedRegistry,
): Promise<ServerCertificates> {
  const root = DeviceCertificate.from(m.rootPem, { sha256: nodeCrypto.sha256 })
  const extra = withoutCn(names, m.cn)
  const certificates: ServerCertificate[] = [],
    reissued: Array<{ keyType: TlsKeyType; reason: ReissueReason }> = []
  for (const keyType of SERVER_KEY_TYPES) {
    const paths = serverCertificatePaths(m.home.dir, keyType)
    const reason = staleness(paths, m, names, now)
    if (reason === undefined) {
      const certPem = readFileSync(paths.cert, 'utf8')
      certificates.push({ keyType, certPem, keyPem: readFileSync(paths.key, 'utf8'), renewAt: renewAt(certPem) })
      continue
    }
    // The key stays when only the certificate is stale: a client that pinned it keeps working.
    let keyPem = existsSync(paths.key) && reason !== 'identity' ? readFileSync(paths.key, 'utf8') : undefined
    if (keyPem === undefined) keyPem = (await nodePki.generateTlsKeyPair(keyType)).privateKeyPem
    const spki = createPublicKey(keyPem).export({ type: 'spki', format: 'der' })
    const cert = await buildLeafCertificate({
      root,
      rootKeyPem: m.rootKeyPem,
      cn: m.cn,
      parentCn: undefined,
      spki: new Uint8Array(spki.buffer, spki.byteOffset, spki.length),
      serverNames: extra,
      notBefore: now - CLOCK_SKEW_SECONDS,
      notAfter: Math.min(now + VALIDITY_SECONDS, root.notAfter),
      randomBytes: n => nodeCrypto.randomBytes(n),
    })
    // Recorded before it is served, so a later CRL could name it.
    ;(issued ?? IssuedRegistry.open(m.home.dir)).record(cert, now)
    mkdirSync(join(m.home.dir, SERVER_DIR), { recursive: true, mode: 0o700 })
    writeFileDurable(paths.key, keyPem, 0o600)
    writeFileDurable(paths.cert, cert.pem)
    certificates.push({ keyType, certPem: cert.pem, keyPem, renewAt: renewAt(cert.pem) })
    reissued.push({ keyType, reason })
  }
  return { certificates, names, reissued }
}
