/** @module The certificates L0's CA issued, by serial: what a CRL names when the ledger says a CN is revoked. */
import { join } from 'node:path'
import { KinError } from '../agent/errors.ts'
import { toHex } from '../agent/codec/bytes.ts'
import type { DeviceCertificate } from '../agent/pki/certificate.ts'
import { JournalFile, readJournalRecords, type JournalFormat } from './journal-file.ts'

/** File in L0's home listing issued certificates (next to the CA key); recorded since in `ca/issued.journal`. */
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

const FORMAT: JournalFormat<IssuedCertificate> = {
  field: 'certificates',
  key: r => r.certHash,
  read: (v, where) => readRecord(where, v),
  damaged,
}

/**
 * The certificates recorded in the registry of L0's home `homeDir`, read without changing anything on disk: for a
 * process other than the running L0 (an export), which must not compact the registry under it.
 */
export function readIssued(homeDir: string): IssuedCertificate[] {
  return readJournalRecords(join(homeDir, ISSUED_FILE), FORMAT)
}

/**
 * L0's record of issued certificates (serial, CN, hashes). Devices' certificates never come back to L0, and the
 * ledger names a certificate only by its hash, so the serial a CRL must list is kept here when the CA issues.
 * Every certificate is appended to the journal and fsynced before it counts (journal-file.ts).
 */
export class IssuedRegistry {
  readonly path: string
  private readonly store: JournalFile<IssuedCertificate>

  private constructor(store: JournalFile<IssuedCertificate>) {
    this.path = store.path
    this.store = store
  }

  /**
   * Reads the registry of L0's home `homeDir` (none yet: empty; a version 1 file is migrated). A last line cut short
   * by a power loss is dropped and reported through `warn`; STORAGE_DAMAGED when the registry is damaged otherwise.
   */
  static open(homeDir: string, warn: (message: string) => void = m => process.emitWarning(m)): IssuedRegistry {
    const store = JournalFile.open(join(homeDir, ISSUED_FILE), FORMAT)
    if (store.tornTail !== undefined)
      warn(`${store.journalPath}: dropped a last line cut short (${store.tornTail.length} bytes, an interrupted write)`)
    return new IssuedRegistry(store)
  }

  private get byHash(): ReadonlyMap<string, IssuedCertificate> {
    return this.store.map
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

  /** Records a certificate (again: no change) durably; STORAGE_IO when the journal cannot be written. */
  record(cert: DeviceCertificate, issuedAt: number): IssuedCertificate {
    const known = this.byHash.get(cert.certHashHex)
    if (known !== undefined) return known
    const record = issuedRecord(cert, issuedAt)
    this.store.apply([{ set: record }])
    return record
  }

  /** As record, answered once durable under a group commit (L0's CA: many enrollments at once). */
  async recordGrouped(cert: DeviceCertificate, issuedAt: number): Promise<IssuedCertificate> {
    // Only a durable record answers at once: one still waiting is written again (the same certificate, harmless).
    const known = this.byHash.get(cert.certHashHex)
    if (known !== undefined) return known
    const record = issuedRecord(cert, issuedAt)
    await this.store.applyGrouped([{ set: record }])
    return record
  }
}

function issuedRecord(cert: DeviceCertificate, issuedAt: number): IssuedCertificate {
  return {
    serial: cert.serialHex.toLowerCase(),
    cn: cert.cn,
    certHash: cert.certHashHex,
    spkiHash: toHex(cert.spkiHash),
    notAfter: cert.notAfter,
    issuedAt,
  }
}
