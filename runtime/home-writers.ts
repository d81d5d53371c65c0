/** @module Writing a new home: L0's after `kin init`, a device's after `kin enroll` — the same files from CLI, tests and simulator. */
import { existsSync, readdirSync } from 'node:fs'
import { KinError } from '../agent/errors.ts'
import type { NewFleet } from '../agent/enroll/fleet.ts'
import type { EnrolledDevice } from '../agent/gossip/enroll-session.ts'
import { verifiedIn } from '../agent/ledger/precheck.ts'
import { openHomeLedger } from './device.ts'
import { Home } from './home.ts'
import { clearStaleStaging, commitStaging, createStaging, discardStaging } from './home-staging.ts'

/** Refuses a directory that already holds a home, or anything at all, so nothing is ever overwritten. */
export function refuseExistingHome(home: Home, what: string): void {
  // Keys without config.json: a home an older kinship began to write when its enrollment was stopped.
  if (
    !home.isInitialized() &&
    !existsSync(home.path('caKey')) &&
    (existsSync(home.path('tlsKey')) || existsSync(home.path('ledgerKey')))
  ) {
    throw new KinError(
      'HOME_EXISTS',
      `${home.dir} holds the keys of an enrollment that was interrupted (no config.json): it was never a working home. Remove it (rm -r ${home.dir}) and enroll again with a new code`,
      { detail: { path: home.dir, interrupted: true } },
    )
  }
  if (
    home.isInitialized() ||
    existsSync(home.path('ledger')) ||
    existsSync(home.path('tlsKey')) ||
    existsSync(home.path('caKey'))
  ) {
    throw new KinError('HOME_EXISTS', `${home.dir} already holds a kinship home; ${what} (choose another --home)`)
  }
  if (existsSync(home.dir) && readdirSync(home.dir).some(f => f !== 'lost+found')) {
    throw new KinError('HOME_EXISTS', `${home.dir} is not empty; give an empty or new directory`)
  }
}

/** Writes L0's home: root CA (key 0600), L0's certificate and keys, the ledger with genesis; config.json last. */
export async function writeL0Home(home: Home, fleet: NewFleet, name: string): Promise<Record<string, string>> {
  const files = {
    root: home.writePublic('root', fleet.root.pem),
    caKey: home.writeSecret('caKey', fleet.rootKey.privateKeyPem),
    cert: home.writePublic('cert', fleet.certificate.pem),
    tlsKey: home.writeSecret('tlsKey', fleet.tls.privateKeyPem),
    ledgerKey: home.writeLedgerKey(fleet.ledgerSeed),
    ledger: home.path('ledger'),
    config: home.path('config'),
  }
  const ledger = await openHomeLedger(home)
  try {
    for (const e of fleet.events) await ledger.append(e)
  } finally {
    await ledger.close()
  }
  home.writeConfig({ version: 1, fleet: fleet.domain, cn: fleet.cn, role: 'admin', l0: true, name })
  return files
}

/**
 * Writes an enrolled device's home atomically: every file (keys, certificates, ledger, config.json) goes into the
 * staging directory next to it (`staging`, made by createStaging; by default made here), is synced, and the
 * directory is renamed into place, so DIR holds a whole home or nothing (DESIGN.md "The device runtime").
 * Returns the final paths. The staging directory is removed when anything fails.
 */
export async function writeDeviceHome(
  home: Home,
  device: EnrolledDevice,
  broker: string,
  staging?: string,
): Promise<Record<string, string>> {
  let dir = staging
  if (dir === undefined) {
    clearStaleStaging(home.dir)
    dir = createStaging(home.dir)
  }
  try {
    await writeDeviceFiles(new Home(dir), device, broker)
    commitStaging(dir, home.dir)
  } catch (err) {
    discardStaging(dir)
    throw err
  }
  return {
    root: home.path('root'),
    cert: home.path('cert'),
    tlsKey: home.path('tlsKey'),
    ledgerKey: home.path('ledgerKey'),
    ledger: home.path('ledger'),
    config: home.path('config'),
  }
}

async function writeDeviceFiles(home: Home, device: EnrolledDevice, broker: string): Promise<void> {
  home.writePublic('root', device.rootPem)
  home.writePublic('cert', device.certPem)
  home.writeSecret('tlsKey', device.secrets.tls.privateKeyPem)
  home.writeLedgerKey(device.secrets.ledgerSeed)
  const ledger = await openHomeLedger(home)
  try {
    // The enrollment verified these very events in memory: written from there, they are not verified again.
    const { accepted, refused, pending } = await ledger.appendMany(device.ledger.state.log, {
      verified: verifiedIn(device.ledger.state),
    })
    if (refused.length > 0 || pending.length > 0 || accepted.length !== device.ledger.size) {
      throw new KinError(
        'STORAGE_IO',
        `could not write the new ledger to ${home.path('ledger')} (${refused[0]?.code ?? 'incomplete'})`,
      )
    }
  } finally {
    await ledger.close()
  }
  const authorize = device.authorize.event
  const body = authorize.type === 'authorize' ? authorize.body : undefined
  home.writeConfig({
    version: 1,
    fleet: device.fleet,
    cn: device.cn,
    role: device.role,
    broker,
    l0Cn: device.l0Cn,
    parentCn: device.parentCn,
    name: body?.name ?? '',
    kind: body?.kind ?? '',
  })
}
