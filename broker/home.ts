/** @module L0's home as the broker needs it: keys, certificates, the ledger file, the invite book, and a lock against a second broker. */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { KinError } from '../agent/errors.ts'
import { bytesEqual } from '../agent/codec/bytes.ts'
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { replayRecords, type PersistentLedger } from '../agent/ledger/persistent.ts'
import type { Ledger } from '../agent/ledger/ledger.ts'
import { scanRecords } from '../agent/ledger/store.ts'
import { DeviceCertificate } from '../agent/pki/certificate.ts'
import { Home, type HomeConfig } from '../runtime/home.ts'
import { takePidLock } from '../runtime/pid-lock.ts'
import { openHomeLedger } from '../runtime/device.ts'
import { INVITES_FILE, InviteBook } from './invites.ts'
import { IssuedRegistry } from './issued.ts'
import type { L0Logger } from './log.ts'
import { readHomeFile } from '../runtime/node/home-file.ts'

/** File in L0's home that says a broker runs on it (holds its pid). */
export const LOCK_FILE = 'broker.lock'

/** What the broker loads from L0's home. */
export interface L0Home extends Omit<L0Material, 'config'> {
  /** L0's Ed25519 ledger seed: also the fleet's miner key (genesis.body.minerKey). */
  ledgerSeed: Uint8Array
  ledger: PersistentLedger
  invites: InviteBook
  /** Certificates the CA issued (ca/issued.json), L0's own included. */
  issued: IssuedRegistry
  /** Closes the ledger file (if still open) and removes the lock. */
  close(): Promise<void>
}

// Two brokers appending to one ledger file would interleave records; the lock makes the second one stop early.
function acquireLock(path: string): () => void {
  return takePidLock(
    path,
    pid =>
      pid === undefined
        ? new KinError('BROKER_LOCKED', `cannot take the lock ${path}`)
        : new KinError('BROKER_LOCKED', `a broker (pid ${pid}) already runs on this home (${path}); stop it first`, {
            detail: { pid },
          }),
    'holds',
  )
}

/** L0's keys and certificates as `kin init` wrote them, without the ledger; HOME_MISSING for a device's home. */
export interface L0Material {
  home: Home
  config: HomeConfig
  cn: string
  fleet: string
  root: DeviceCertificate
  rootPem: string
  rootKeyPem: string
  certPem: string
  tlsKeyPem: string
}

/** Reads L0's keys and certificates; refuses a device's home. */
export function readL0Material(dir: string): L0Material {
  const home = new Home(dir)
  const config = home.readConfig()
  if (config.l0 !== true)
    throw new KinError(
      'HOME_MISSING',
      `${home.dir} is a device's home, not L0's: run 'kin broker' on the home made by 'kin init'`,
    )
  const rootPem = home.readText('root')
  const root = DeviceCertificate.from(rootPem, { sha256: nodeCrypto.sha256 })
  return {
    home,
    config,
    cn: config.cn,
    fleet: config.fleet,
    root,
    rootPem,
    rootKeyPem: home.readText('caKey'),
    certPem: home.readText('cert'),
    tlsKeyPem: home.readText('tlsKey'),
  }
}

function checkGenesis(m: L0Material, ledger: Ledger): void {
  const genesis = ledger.state.genesis
  if (genesis === undefined)
    throw new KinError('HOME_MISSING', `${m.home.path('ledger')} has no genesis event; was 'kin init' interrupted?`)
  if (
    genesis.cn !== m.config.cn ||
    genesis.body.domain !== m.config.fleet ||
    !bytesEqual(genesis.body.rootCertHash, m.root.certHash)
  ) {
    throw new KinError(
      'STORAGE_DAMAGED',
      `the ledger's genesis does not match ${m.home.path('config')} and ${m.home.path('root')}`,
    )
  }
}

/**
 * L0's ledger read without opening it for writing (a running broker may hold it): the complete records of the file,
 * replayed with signatures trusted (it is L0's own file); a torn tail being written is simply not read.
 */
export function readL0Ledger(m: L0Material): Ledger {
  const path = m.home.path('ledger')
  if (!existsSync(path)) throw new KinError('HOME_MISSING', `${path} is missing; was 'kin init' run on ${m.home.dir}?`)
  const { records } = scanRecords(readHomeFile(path))
  const ledger = replayRecords(nodeCrypto, records, { trustSignatures: true })
  checkGenesis(m, ledger)
  return ledger
}

/** Opens L0's home for the broker: refuses a device's home, a home whose ledger names another root, or a locked home. */
export async function openL0Home(dir: string, log: L0Logger): Promise<L0Home> {
  const m = readL0Material(dir)
  const { home, config } = m
  const ledgerSeed = home.readLedgerKey()
  const release = acquireLock(join(home.dir, LOCK_FILE))
  let ledger: PersistentLedger | undefined
  try {
    ledger = await openHomeLedger(home, nodeCrypto, (offset, dropped) => {
      log('warn', 'ledger.error', {
        code: 'STORAGE_DAMAGED',
        message: `dropped a torn tail of ${dropped} bytes at offset ${offset} (an interrupted write)`,
      })
    })
    checkGenesis(m, ledger.ledger)
    // A torn last journal line (an interrupted append) is dropped; L0's log says so, as for the ledger.
    const tornJournal = (message: string) => log('warn', 'ledger.error', { code: 'STORAGE_DAMAGED', message })
    const invites = InviteBook.open(join(home.dir, INVITES_FILE), tornJournal)
    const issued = IssuedRegistry.open(home.dir, tornJournal)
    // `kin init` predates the registry: L0's own certificate is recorded here, so a CRL can name it too.
    issued.record(DeviceCertificate.from(m.certPem, { sha256: nodeCrypto.sha256 }), Math.floor(Date.now() / 1000))
    const opened = ledger
    return {
      home,
      cn: config.cn,
      fleet: config.fleet,
      root: m.root,
      rootPem: m.rootPem,
      rootKeyPem: m.rootKeyPem,
      certPem: m.certPem,
      tlsKeyPem: m.tlsKeyPem,
      ledgerSeed,
      ledger: opened,
      invites,
      issued,
      close: async () => {
        try {
          await opened.close()
        } finally {
          release()
        }
      },
    }
  } catch (err) {
    await ledger?.close().catch(() => undefined)
    release()
    throw err
  }
}
