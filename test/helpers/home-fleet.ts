/** @module PureFleet devices written out as real home directories, as `kin init`/`kin enroll` would leave them. */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Home, type HomeConfig } from '../../runtime/home.ts'
import { openHomeLedger } from '../../runtime/device.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import type { PureFleet } from './pure-fleet.ts'

/** How to write a device's home. */
export interface HomeOptions {
  /** Which ledger to write: the miner's (L0's) full copy, as after `kin sync` (default), or the device's own. */
  ledger?: 'miner' | 'own'
  /** config.json `policy` (local overrides). */
  policy?: Record<string, unknown>
}

/**
 * Writes device `cn` of `fleet` into `dir`: root.pem, cert.pem, tls-key.pem (0600), ledger-key (0600, via
 * Home.writeLedgerKey), ledger.cbor (through the durable ledger file, every event validated), config.json.
 */
export async function writeHome(fleet: PureFleet, cn: string, dir: string, options: HomeOptions = {}): Promise<Home> {
  const device = fleet.device(cn)
  const home = new Home(dir)
  home.writePublic('root', fleet.fleet.root.pem)
  home.writePublic('cert', device.certificate.pem)
  home.writeSecret('tlsKey', device.secrets.tls.privateKeyPem)
  home.writeLedgerKey(device.secrets.ledgerSeed)
  const events = (options.ledger === 'own' ? device.ledger : fleet.l0Ledger).state.log
  await appendToHome(home, events)
  const binding = fleet.l0Ledger.state.currentBinding(cn)
  const config: HomeConfig = { version: 1, fleet: fleet.fleet.domain, cn, role: binding?.role ?? 'device' }
  if (cn === fleet.l0) config['l0'] = true
  if (options.policy !== undefined) config.policy = options.policy
  home.writeConfig(config)
  return home
}

/** Appends events to a home's ledger.cbor (validated in order, durable), as a sync would. */
export async function appendToHome(home: Home, events: readonly EncodedEvent[]): Promise<void> {
  const ledger = await openHomeLedger(home)
  try {
    for (const e of events) if (!ledger.ledger.state.has(e.idHex)) await ledger.append(e)
  } finally {
    await ledger.close()
  }
}

/** A fresh temporary directory and a function that removes it. */
export function tempDir(prefix = 'kin-home-'): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}
