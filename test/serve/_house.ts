/** @module The house for access-endpoint tests: a small real fleet (PureFleet), Eve's certificates, homes on disk. */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import type { DeviceCertificate } from '../../agent/pki/certificate.ts'
import type { TlsKeyPair } from '../../agent/ports/pki.ts'
import { AccessSession } from '../../agent/access/session.ts'
import type { Home } from '../../runtime/home.ts'
import { PureFleet } from '../helpers/pure-fleet.ts'
import { tempDir, writeHome, type HomeOptions } from '../helpers/home-fleet.ts'
import { buildBundle, encodeBundle } from '../../agent/ledger/bundle.ts'
import { eveSigner, fleetSigner, forgeCertificate, makeEve } from '../../sim/eve.ts'
import { sealedMiner } from '../../sim/memory-miner.ts'

/** The house's devices below L0 (no cameras: RSA key generation costs time). */
export interface ServeHouse {
  fleet: PureFleet
  now: number
  cn: { L0: string; L1: string; 'L2.1': string; 'L2.2': string; 'L3.3': string; 'L3.4': string }
  /** Eve's key pair and her own CA. */
  eve: { keys: TlsKeyPair; root: DeviceCertificate; rootKeys: TlsKeyPair }
  /** A certificate for `cn` naming `parentCn`, carrying Eve's key, issued by Eve's CA (CERT_CHAIN) or the fleet CA (CERT_UNBOUND). */
  forge(by: 'eve-ca' | 'fleet-ca', cn: string, parentCn: string): Promise<DeviceCertificate>
  /** The TLS identity PEMs of a device. */
  identity(cn: string): { certPem: string; keyPem: string; rootPem: string }
  /** An in-memory access session for a device, on the miner's ledger. */
  session(cn: string): AccessSession
  /** Writes a device's home into a fresh temp dir (the miner's ledger unless `ledger: 'own'`). */
  home(cn: string, options?: HomeOptions): Promise<{ home: Home; dir: string; remove: () => void }>
  /** A proof bundle for `cn` from a miner that sealed the fleet's ledger as it is now. */
  bundle(cn: string): Promise<Uint8Array>
  /** Writes PEM text into `dir/name` and returns the path. */
  file(dir: string, name: string, text: string): string
}

/** Builds the house: L0 → L1 (admin) → L2.1 (member) → L3.3 (lock, device); L1 → L2.2 (member) → L3.4 (guest phone). */
export async function makeServeHouse(): Promise<ServeHouse> {
  const now = Math.floor(Date.now() / 1000)
  // RSA keys: tests of this house build odd certificates with node-forge, which signs RSA only.
  const fleet = await PureFleet.create({ now, keyType: 'rsa2048' })
  const year = now + 365 * 86400
  const l1 = await fleet.enroll(fleet.l0, { role: 'admin', notAfter: year }, { kind: 'laptop', name: 'laptop' })
  const l21 = await fleet.enroll(l1.cn, { role: 'member', notAfter: year }, { kind: 'phone', name: "owner's phone" })
  const l22 = await fleet.enroll(l1.cn, { role: 'member', notAfter: year }, { kind: 'tablet', name: 'tablet' })
  const lock = await fleet.enroll(l21.cn, { role: 'device', notAfter: year }, { kind: 'lock', name: 'front door' })
  const guest = await fleet.enroll(
    l22.cn,
    { role: 'guest', notAfter: now + 2 * 86400 },
    { kind: 'phone', name: "guest's phone" },
  )
  const cn = { L0: fleet.l0, L1: l1.cn, 'L2.1': l21.cn, 'L2.2': l22.cn, 'L3.3': lock.cn, 'L3.4': guest.cn }
  const eve = await makeEve(fleet.fleet.domain, now)
  return {
    fleet,
    now,
    cn,
    eve,
    forge(by, subject, parentCn) {
      const ca = by === 'eve-ca' ? eveSigner(eve) : fleetSigner(fleet.fleet)
      return forgeCertificate(ca, { cn: subject, parentCn, keyPair: eve.keys }, now, now + 86400)
    },
    identity(c) {
      const d = fleet.device(c)
      return { certPem: d.certificate.pem, keyPem: d.secrets.tls.privateKeyPem, rootPem: fleet.fleet.root.pem }
    },
    session(c) {
      return new AccessSession({
        self: c,
        root: fleet.fleet.root,
        pki: nodePki,
        sha256: nodeCrypto.sha256,
        clock: { now: () => Math.floor(Date.now() / 1000) },
        ledger: () => fleet.l0Ledger.state,
      })
    },
    async home(c, options) {
      const t = tempDir()
      const home = await writeHome(fleet, c, t.dir, options)
      return { home, ...t }
    },
    async bundle(c) {
      const { miner } = await sealedMiner(
        fleet.fleet.ledgerSeed,
        fleet.l0Ledger.state.log,
        Math.floor(Date.now() / 1000),
      )
      try {
        return encodeBundle(buildBundle(miner, c))
      } finally {
        await miner.close()
      }
    },
    file(dir, name, text) {
      const path = join(dir, name)
      writeFileSync(path, text)
      return path
    },
  }
}
