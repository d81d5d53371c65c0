/** @module Loading a device from its home: config, keys, certificates and its ledger file, on Node. */
import { existsSync } from 'node:fs'
import { nodeCrypto } from './node/crypto.ts'
import { nodePki } from './node/pki.ts'
import { nodeStorage } from './node/storage.ts'
import type { CryptoProvider } from '../agent/ports/platform.ts'
import { PersistentLedger } from '../agent/ledger/persistent.ts'
import { DeviceCertificate } from '../agent/pki/certificate.ts'
import type { PkiProvider } from '../agent/ports/pki.ts'
import { HOME_FILES, Home, type HomeConfig } from './home.ts'

/** A device as the CLI sees it: home, config, identity, and its open ledger. */
export interface Device {
  home: Home
  config: HomeConfig
  crypto: CryptoProvider
  pki: PkiProvider
  cn: string
  ledger: PersistentLedger
  ledgerSeed: Uint8Array
  certificate: DeviceCertificate | undefined
  rootPem: string
  close(): Promise<void>
}

/** Opens the ledger file of a home (creating it when absent). */
export async function openHomeLedger(
  home: Home,
  crypto: CryptoProvider = nodeCrypto,
  onTornTail?: (offset: number, dropped: number) => void,
): Promise<PersistentLedger> {
  const file = await nodeStorage(home.dir).openAppendFile(HOME_FILES.ledger)
  return PersistentLedger.open(crypto, file, { onTornTail })
}

/** Opens an initialized or enrolled home. */
export async function openDevice(dir: string): Promise<Device> {
  const home = new Home(dir)
  const config = home.readConfig()
  const ledger = await openHomeLedger(home, nodeCrypto, (offset, dropped) => {
    process.stderr.write(
      `kin: dropped a torn tail of ${dropped} bytes at offset ${offset} in ${home.path('ledger')} (an interrupted write)\n`,
    )
  })
  const certificate = existsSync(home.path('cert'))
    ? DeviceCertificate.from(home.readText('cert'), { sha256: nodeCrypto.sha256 })
    : undefined
  return {
    home,
    config,
    crypto: nodeCrypto,
    pki: nodePki,
    cn: config.cn,
    ledger,
    ledgerSeed: home.readLedgerKey(),
    certificate,
    rootPem: home.readText('root'),
    close: () => ledger.close(),
  }
}
