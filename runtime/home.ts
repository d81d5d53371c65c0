/** @module A device's home directory: the fixed file names of the design, every file 0600 in a 0700 directory, config.json. */
import {
  chmodSync,
  existsSync,
  mkdirSync,
  renameSync,
  fsyncSync,
  closeSync,
  fchmodSync,
  unlinkSync,
  writeSync,
} from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { KinError } from '../agent/errors.ts'
import {
  CREATE_FLAGS,
  HOME_DIR_MODE,
  HOME_FILE_MODE,
  ensurePrivateDir,
  openHomeFileSync,
  readHomeFile,
  requirePrivateDir,
} from './node/home-file.ts'

/** The file names a home directory holds (DESIGN.md, "A device's home directory"). */
export const HOME_FILES = {
  root: 'root.pem',
  cert: 'cert.pem',
  tlsKey: 'tls-key.pem',
  ledgerKey: 'ledger-key',
  ledger: 'ledger.cbor',
  audit: 'audit.log',
  config: 'config.json',
  caKey: 'ca/root-key.pem',
} as const

/** Settings kept in config.json. */
export interface HomeConfig {
  version: 1
  fleet: string
  cn: string
  role: string
  broker?: string
  policy?: Record<string, unknown>
  [key: string]: unknown
}

// RFC 8410 §7: an Ed25519 private key in PKCS#8, so `openssl pkey -in ledger-key` can read it.
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')

/**
 * Writes a file atomically (temp file, fsync, rename) with the given mode, whatever the umask. Missing directories
 * are created 0700 for a private file, 0755 for one others may read (never writable by others, whatever the umask);
 * the temp file is created new (O_EXCL) and never through a symlink.
 */
export function writeFileDurable(path: string, data: string | Uint8Array, mode = 0o644): void {
  const dirMode = (mode & 0o044) === 0 ? HOME_DIR_MODE : 0o755
  const created = mkdirSync(dirname(path), { recursive: true, mode: dirMode })
  if (created !== undefined) chmodSync(dirname(path), dirMode)
  const tmp = `${path}.tmp-${process.pid}`
  // A temp file of this pid is left from a crash of an earlier process that had the same pid.
  try {
    unlinkSync(tmp)
  } catch {
    /* absent */
  }
  const fd = openHomeFileSync(tmp, CREATE_FLAGS, mode)
  try {
    fchmodSync(fd, mode)
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
    let at = 0
    while (at < bytes.length) at += writeSync(fd, bytes, at, bytes.length - at)
    fsyncSync(fd)
  } catch (err) {
    closeSync(fd)
    try {
      unlinkSync(tmp)
    } catch {
      /* already gone */
    }
    throw err
  }
  closeSync(fd)
  renameSync(tmp, path)
}

/** A device's home directory. */
export class Home {
  readonly dir: string

  constructor(dir: string) {
    this.dir = resolve(dir)
  }

  /** Absolute path of one of the home's files. */
  path(name: keyof typeof HOME_FILES): string {
    return join(this.dir, HOME_FILES[name])
  }

  /** Whether the home has a config.json (an initialized or enrolled device). */
  isInitialized(): boolean {
    return existsSync(this.path('config'))
  }

  /** Throws HOME_MISSING with a hint when the home is not set up, HOME_UNSAFE when others could write it. */
  requireInitialized(): void {
    if (!this.isInitialized()) {
      throw new KinError(
        'HOME_MISSING',
        `${this.dir} is not a kinship home (no config.json): run 'kin init' on L0 or 'kin enroll' on a device first`,
      )
    }
    requirePrivateDir(this.dir)
  }

  /** Reads config.json (after checking the home is private). */
  readConfig(): HomeConfig {
    this.requireInitialized()
    const text = this.readText('config')
    try {
      return JSON.parse(text) as HomeConfig
    } catch (err) {
      throw new KinError('HOME_MISSING', `cannot read ${this.path('config')}: ${(err as Error).message}`, {
        cause: err,
      })
    }
  }

  /** Writes config.json, mode 0600. */
  writeConfig(config: HomeConfig): void {
    ensurePrivateDir(this.dir)
    writeFileDurable(this.path('config'), JSON.stringify(config, null, 2) + '\n', HOME_FILE_MODE)
  }

  /** Writes a public file (certificates); still 0600: a home's files are its device's own. */
  writePublic(name: keyof typeof HOME_FILES, data: string | Uint8Array): string {
    const p = this.path(name)
    ensurePrivateDir(this.dir)
    writeFileDurable(p, data, HOME_FILE_MODE)
    return p
  }

  /** Writes a private key with mode 0600. */
  writeSecret(name: keyof typeof HOME_FILES, data: string | Uint8Array): string {
    const p = this.path(name)
    ensurePrivateDir(this.dir)
    writeFileDurable(p, data, HOME_FILE_MODE)
    return p
  }

  /** Reads a text file of the home (never through a symlink, never a FIFO or device: FILE_NOT_REGULAR). */
  readText(name: keyof typeof HOME_FILES): string {
    try {
      return Buffer.from(readHomeFile(this.path(name))).toString('utf8')
    } catch (err) {
      if (err instanceof KinError) throw err
      throw new KinError('HOME_MISSING', `cannot read ${this.path(name)}: ${(err as Error).message}`, { cause: err })
    }
  }

  /** Stores the 32-byte Ed25519 ledger seed as PKCS#8 PEM, mode 0600. */
  writeLedgerKey(seed: Uint8Array): string {
    const der = Buffer.concat([ED25519_PKCS8_PREFIX, Buffer.from(seed)])
    const pem = `-----BEGIN PRIVATE KEY-----\n${der.toString('base64')}\n-----END PRIVATE KEY-----\n`
    return this.writeSecret('ledgerKey', pem)
  }

  /** Reads the 32-byte Ed25519 ledger seed. */
  readLedgerKey(): Uint8Array {
    const pem = this.readText('ledgerKey')
    const b64 = pem.replace(/-----(BEGIN|END) PRIVATE KEY-----/g, '').replace(/\s+/g, '')
    const der = Buffer.from(b64, 'base64')
    if (der.length !== 48 || !der.subarray(0, 16).equals(ED25519_PKCS8_PREFIX)) {
      throw new KinError('HOME_MISSING', `${this.path('ledgerKey')} is not an Ed25519 PKCS#8 private key`)
    }
    return new Uint8Array(der.subarray(16))
  }
}
