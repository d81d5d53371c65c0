/** @module Writing a new home: L0's after `kin init`, a device's after `kin enroll` — the same files from CLI, tests and simulator. */
import { existsSync, readdirSync } from 'node:fs'
import { KinError } from '../errors.ts'
import type { NewFleet } from '../enroll/fleet.ts'
import type { EnrolledDevice } from '../gossip/enroll-session.ts'
import { openHomeLedger } from './device.ts'
import type { Home } from './home.ts'

/** Refuses a directory that already holds a home, or anything at all, so nothing is ever overwritten. */
export function refuseExistingHome(home: Home, what: string): void {
  if (home.isInitialized() || existsSync(home.path('ledger')) || existsSync(home.path('tlsKey')) || existsSync(home.path('caKey'))) {
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

/** Writes an enrolled device's home; config.json last, so a home without it is an interrupted enrollment. */
export async function writeDeviceHome(home: Home, device: EnrolledDevice, broker: string): Promise<Record<string, string>> {
  const files = {
    root: home.writePublic('root', device.rootPem),
    cert: home.writePublic('cert', device.certPem),
    tlsKey: home.writeSecret('tlsKey', device.secrets.tls.privateKeyPem),
    ledgerKey: home.writeLedgerKey(device.secrets.ledgerSeed),
    ledger: home.path('ledger'),
    config: home.path('config'),
  }
  const ledger = await openHomeLedger(home)
  try {
    const { accepted, refused, pending } = await ledger.appendMany(device.ledger.state.log)
    if (refused.length > 0 || pending.length > 0 || accepted.length !== device.ledger.size) {
      throw new KinError('STORAGE_IO', `could not write the new ledger to ${files.ledger} (${refused[0]?.code ?? 'incomplete'})`)
    }
  } finally {
    await ledger.close()
  }
  const authorize = device.authorize.event
  const body = authorize.type === 'authorize' ? authorize.body : undefined
  home.writeConfig({
    version: 1, fleet: device.fleet, cn: device.cn, role: device.role, broker, l0Cn: device.l0Cn, parentCn: device.parentCn,
    name: body?.name ?? '', kind: body?.kind ?? '',
  })
  return files
}
