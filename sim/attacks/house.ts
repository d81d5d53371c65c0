/** @module The attacked house: the design's house enrolled for real on a LiveFleet, a second guest, and Eve with her own CA. */
import { join } from 'node:path'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { createCsr } from '../../agent/pki/csr.ts'
import { issueDeviceCertificate } from '../../agent/pki/issue.ts'
import type { TlsKeyPair } from '../../agent/ports/pki.ts'
import { createFleetRoot } from '../../agent/pki/root.ts'
import { DEFAULT_TLS_KEY_TYPE } from '../../agent/pki/key-type.ts'
import { x509Builder } from '../../agent/pki/builder.ts'
import { randomSerialHex } from '../../agent/pki/_build.ts'
import type { RoleName } from '../../agent/ledger/types.ts'
import { LiveFleet, simClock, type FleetLog } from '../live/fleet.ts'
import { HOUSE } from '../house/story.ts'

const DAY = 86400

/** One device of the attacked house. */
export interface AttackHouseDevice {
  label: string
  parent: string
  role: RoleName
  kind: string
  name: string
  /** How long its authorization lasts, seconds from enrollment. */
  validSeconds: number
}

/**
 * The house of the design (story.ts) plus a dog-sitter's phone: a guest under the owner's phone for three days,
 * whose stay runs out during the suite. The revoked-ancestor case takes the tablet and the mother's phone below
 * it; a guest that is both revoked and expired would let the first refusing stage hide the second.
 */
export const ATTACK_HOUSE: readonly AttackHouseDevice[] = [
  ...HOUSE.map(d => ({ ...d, role: d.role as RoleName, validSeconds: d.role === 'guest' ? 14 * DAY : 365 * DAY })),
  { label: 'L3.5', parent: 'L2.1', role: 'guest', kind: 'phone', name: "dog-sitter's phone", validSeconds: 3 * DAY },
]

/** Eve: an RSA key pair, her own CA named exactly like the fleet's root, and an Ed25519 key for forged heads. */
export interface Eve {
  keys: TlsKeyPair
  root: DeviceCertificate
  rootKeys: TlsKeyPair
  ledgerSeed: Uint8Array
}

/** A head alarm a device raised (from the fleet's log). */
export interface SeenAlarm {
  label: string
  code: string
  message: string
}

/** Everything the attack families share. */
export interface AttackContext {
  fleet: LiveFleet
  house: readonly AttackHouseDevice[]
  eve: Eve
  /** Alarms raised by the devices' ledger followers, in order. */
  alarms: SeenAlarm[]
  /** A folder for copies of homes and other scratch files. */
  scratch: string
  /** Labels by CN (L0 … L3.5), for paths in the report. */
  labelOf(cn: string): string
  /** Hears every record of the fleet's log (L0's with source 'L0') until the returned function is called. */
  watchLog(listener: FleetLog): () => void
  /** A certificate for `cn` naming `parentCn`, carrying `keys`, issued by Eve's CA or — mis-issued — by the fleet CA with the real root key. */
  forge(by: 'eve-ca' | 'fleet-ca', cn: string, parentCn: string, keys: TlsKeyPair): Promise<DeviceCertificate>
  /** The same, by the fleet CA, in the form issued before the URI parent marker: SAN DNS:<cn>, DNS:parent.<parentCn>. */
  forgeOldMarker(cn: string, parentCn: string, keys: TlsKeyPair): Promise<DeviceCertificate>
}

/** What `startAttackHouse` is told. */
export interface AttackHouseOptions {
  /** Where the device homes go. */
  dir: string
  domain?: string
  /** Receives the fleet's log records (alarms are also collected in the context). */
  log?: FleetLog
  /** Told after each enrollment. */
  onEnrolled?: (device: AttackHouseDevice, cn: string) => void
}

/** Starts L0's services, enrolls the attacked house with pairing codes, waits until every device holds L0's ledger. */
export async function startAttackHouse(options: AttackHouseOptions): Promise<AttackContext> {
  const alarms: SeenAlarm[] = []
  const watchers = new Set<FleetLog>()
  const log: FleetLog = record => {
    for (const w of watchers) w(record)
    if (record['event'] === 'alarm')
      alarms.push({ label: String(record['source']), code: String(record['code']), message: String(record['message']) })
    options.log?.(record)
  }
  const fleet = await LiveFleet.start({
    dir: options.dir,
    domain: options.domain ?? 'smith.home.arpa',
    clock: simClock(),
    log,
  })
  try {
    // Eve's keys are of the fleet's key type, so a stolen certificate meets a signature in its own scheme.
    const [keys, rootKeys] = await Promise.all([
      nodePki.generateTlsKeyPair(DEFAULT_TLS_KEY_TYPE),
      nodePki.generateTlsKeyPair(DEFAULT_TLS_KEY_TYPE),
    ])
    const now = fleet.clock.now()
    const eve: Eve = {
      keys,
      rootKeys,
      ledgerSeed: nodeCrypto.randomBytes(32),
      root: await createFleetRoot({
        domain: fleet.l0.fleet,
        keyPair: rootKeys,
        now,
        randomBytes: nodeCrypto.randomBytes,
      }),
    }
    for (const d of ATTACK_HOUSE) {
      const enrolled = await fleet.enroll(d.label, d.parent, {
        role: d.role,
        kind: d.kind,
        name: d.name,
        validSeconds: d.validSeconds,
      })
      options.onEnrolled?.(d, enrolled.cn)
    }
    await fleet.converge()
    const caKeyPem = fleet.l0Home.readText('caKey')
    return {
      fleet,
      house: ATTACK_HOUSE,
      eve,
      alarms,
      scratch: join(options.dir, 'scratch'),
      labelOf: cn => [...fleet.devices.values()].find(d => d.cn === cn)?.label ?? cn,
      watchLog(listener) {
        watchers.add(listener)
        return () => watchers.delete(listener)
      },
      async forge(by, cn, parentCn, keyPair) {
        const ca =
          by === 'eve-ca'
            ? { rootCertPem: eve.root.pem, rootKeyPem: rootKeys.privateKeyPem }
            : { rootCertPem: fleet.l0.rootPem, rootKeyPem: caKeyPem }
        const issuedAt = fleet.clock.now()
        return issueDeviceCertificate({
          ...ca,
          now: issuedAt,
          randomBytes: nodeCrypto.randomBytes,
          crypto: nodeCrypto,
          csrPem: await createCsr({ cn, parentCn, keyPair }),
          auth: { cn, parentCn, spkiHash: nodeCrypto.sha256(keyPair.spkiDer), notAfter: issuedAt + 30 * DAY },
        })
      },
      forgeOldMarker(cn, parentCn, keyPair) {
        // The leaf profile with the retired SAN, signed by the fleet CA's real key (of either key type).
        const root = DeviceCertificate.from(fleet.l0.rootPem),
          issuedAt = fleet.clock.now()
        return x509Builder().buildCertificate(
          {
            subjectCn: cn,
            issuerName: root.layout.subject,
            spki: keyPair.spkiDer,
            notBefore: issuedAt - 60,
            notAfter: issuedAt + 30 * DAY,
            serialHex: randomSerialHex(nodeCrypto.randomBytes),
            extensions: {
              ca: false,
              keyUsage: keyPair.keyType === 'p256' ? ['digitalSignature'] : ['digitalSignature', 'keyEncipherment'],
              tlsBothWays: true,
              altNames: { dns: [cn, `parent.${parentCn}`], uris: [] },
              authorityKeyId: root.subjectKeyId,
            },
          },
          { privateKeyPem: caKeyPem, spkiDer: root.layout.spki, mismatch: "the CA key is not the root's" },
        )
      },
    }
  } catch (err) {
    await fleet.close()
    throw err
  }
}
