/** @module The certificates L0's CA issued, by serial: what a CRL names when the ledger says a CN is revoked. */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { KinError } from '../agent/errors.ts'
import { toHex } from '../agent/codec/bytes.ts'
import { writeFileDurable } from '../runtime/home.ts'
import type { DeviceCertificate } from '../agent/pki/certificate.ts'

/** File in L0's home listing issued certificates (next to the CA key). */
export const ISSUED_FILE = 'ca/issued.json'

/** One issued certificate as the CRL needs it. */
export interface IssuedCertificate {
  /** Serial number, lowercase hex as in the certificate. */
  serial: string
  cn: string
  /** SHA-256 of the certificate and of its SubjectPublicKeyInfo (hex): how the ledger names it. */
  certHash: string
  spkiHash: string
  notAfter: number
  /** When L0 recorded it (seconds). */
  issuedAt: number
}

function damaged(path: string, why: string, cause?: unknown): KinError {
  return new KinError(
    'STORAGE_DAMAGED',
    `${path} is damaged (${why}); the CRL cannot be built without it — restore it from a backup`,
    { cause, detail: { path } },
  )
}

const HEX = /^[0-9a-f]+$/

function readRecord(path: string, v: unknown): IssuedCertificate {
  const r = v as Record<string, unknown>
  const ok =
    typeof r === 'object' &&
    r !== null &&
    typeof r.serial === 'string' &&
    HEX.test(r.serial) &&
    r.serial.length <= 42 &&
    typeof r.cn === 'string' &&
    typeof r.certHash === 'string' &&
    /^[0-9a-f]{64}$/.test(r.certHash) &&
    typeof r.spkiHash === 'string' &&
    /^[0-9a-f]{64}$/.test(r.spkiHash) &&
    Number.isSafeInteger(r.notAfter) &&
    Number.isSafeInteger(r.issuedAt)
  if (!ok) throw damaged(path, `malformed record ${JSON.stringify(v).slice(0, 80)}`)
  return r as unknown as IssuedCertificate
}

/**
 * L0's record of issued certificates (serial, CN, hashes). Devices' certificates never come back to L0, and the
 * ledger names a certificate only by its hash, so the serial a CRL must list is kept here when the CA issues.
 * Every change is written (temp file, fsync, rename) before it counts.
 */
export class IssuedRegistry {
  readonly path: string
  private readonly byHash: Map<string, IssuedCertificate>

  private constructor(path: string, records: Map<string, IssuedCertificate>) {
    this.path = path
    this.byHash = records
  }

  /** Reads the registry of L0's home `homeDir` (none yet: empty); STORAGE_DAMAGED when the file is not one. */
  static open(homeDir: string): IssuedRegistry {
    const path = join(homeDir, ISSUED_FILE)
    const records = new Map<string, IssuedCertificate>()
    if (!existsSync(path)) return new IssuedRegistry(path, records)
    let doc: unknown
    try {
      doc = JSON.parse(readFileSync(path, 'utf8'))
    } catch (err) {
      throw damaged(path, (err as Error).message, err)
    }
    const d = doc as { version?: unknown; certificates?: unknown }
    if (typeof d !== 'object' || d === null || d.version !== 1 || !Array.isArray(d.certificates))
      throw damaged(path, 'not a version 1 registry')
    for (const v of d.certificates) {
      const r = readRecord(path, v)
      records.set(r.certHash, r)
    }
    return new IssuedRegistry(path, records)
  }

  /** Every recorded certificate, in the order recorded. */
  list(): IssuedCertificate[] {
    return [...this.byHash.values()]
  }

  /** Whether the certificate with this hash (hex) is recorded. */
  has(certHashHex: string): boolean {
    return this.byHash.has(certHashHex)
  }

  /** The recorded certificate with this hash (hex), if any. */
  get(certHashHex: string): IssuedCertificate | undefined {
    return this.byHash.get(certHashHex)
  }

  /** Records a certificate (again: no change) durably; STORAGE_IO when the file cannot be written. */
  record(cert: DeviceCertificate, issuedAt: number): IssuedCertificate {
    const known = this.byHash.get(cert.certHashHex)
    if (known !== undefined) return known
    const record: IssuedCertificate = {
      serial: cert.serialHex.toLowerCase(),
      cn: cert.cn,
      certHash: cert.certHashHex,
      spkiHash: toHex(cert.spkiHash),
      notAfter: cert.notAfter,
      issuedAt,
    }
    const next = [...this.byHash.values(), record]
    try {
      writeFileDurable(this.path, JSON.stringify({ version: 1, certificates: next }, null, 1) + '\n', 0o600)
    } catch (err) {
      throw new KinError('STORAGE_IO', `cannot write ${this.path}: ${(err as Error).message}`, {
        cause: err,
        detail: { path: this.path },
      })
    }
    this.byHash.set(record.certHash, record)
    return record
  }
}
