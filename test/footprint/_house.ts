/** @module The house of DESIGN.md through the real enrollment steps, Eve's two certificates and a sealed miner: what the QuickJS tests and the footprint bench verify and decide on. */
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { concatBytes, toHex } from '../../agent/codec/bytes.ts'
import { decide } from '../../agent/access/decide.ts'
import { fleetChainVerifier } from '../../agent/access/fleet-chain.ts'
import type { Decision } from '../../agent/access/types.ts'
import type { DeviceCertificate } from '../../agent/pki/certificate.ts'
import type { TlsKeyPair } from '../../agent/ports/pki.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import type { Miner } from '../../agent/ledger/miner.ts'
import { buildBundle, encodeBundle, type BundleAnchor } from '../../agent/ledger/bundle.ts'
import type { BlockHead } from '../../agent/ledger/head.ts'
import { PureFleet, type PureDevice } from '../helpers/pure-fleet.ts'
import { eveSigner, fleetSigner, forgeCertificate, makeEve } from '../../sim/eve.ts'
import { sealedMiner } from '../../sim/memory-miner.ts'

const DAY = 86400

/** The parts of a decision both engines must agree on; absent values as null, as they cross the engine boundary. */
export interface Comparable {
  allow: boolean
  code: string
  path: string[]
  hops: number | null
  commonAncestor: string | null
  peer: string | null
  retry: boolean
}

/** A decision in its comparable form. */
export function comparable(d: Decision): Comparable {
  return {
    allow: d.allow,
    code: d.code,
    path: d.path,
    hops: d.hops ?? null,
    commonAncestor: d.commonAncestor ?? null,
    peer: d.peer ?? null,
    retry: d.retry,
  }
}

/** A ledger file (CBOR sequence) of events. */
export function ledgerFile(events: readonly EncodedEvent[]): Uint8Array {
  return concatBytes(...events.map(e => e.bytes))
}

/** Hex id of encoded event bytes. */
export function idOf(eventBytes: Uint8Array): string {
  return toHex(nodeCrypto.sha256(eventBytes))
}

/** Everything the tests need about the house. */
export interface FootprintHouse {
  pf: PureFleet
  now: number
  laptop: PureDevice
  phone: PureDevice
  tablet: PureDevice
  lock: PureDevice
  camera: PureDevice
  stolen: PureDevice
  guest: PureDevice
  /** Eve's own root copying the fleet's name, and a certificate for the guest's CN it signed. */
  eveRoot: DeviceCertificate
  eveOwnCa: DeviceCertificate
  /** A certificate for the guest's CN with Eve's key, mis-issued by the fleet CA itself. */
  misIssued: DeviceCertificate
  /** Eve's own TLS key pair. */
  eveKeys: TlsKeyPair
  /** L0's ledger: genesis, every enrollment, the revocation of the stolen camera. */
  ledgerBytes: Uint8Array
  miner: Miner
  head: BlockHead
  anchor: BundleAnchor
  /** The encoded proof bundle of a CN at `head`. */
  bundleOf(cn: string): Uint8Array
  /** The full agent on V8: agent/access decide on the device's own synced ledger, agent/pki's chain check on node:crypto. */
  v8Decision(certificate: DeviceCertificate, selfCn: string, action: string, at?: number): Decision
}

/**
 * L0 → laptop (admin) → owner's phone and tablet (members); under the phone a lock, a camera and a camera that is
 * then lost and revoked; under the tablet a guest's phone valid for two days. Every device holds a real
 * certificate; L0's miner has sealed one head over the whole log.
 */
export async function footprintHouse(): Promise<FootprintHouse> {
  // RSA keys: these figures and QuickJS's 1 MiB heap are measured for kin-core's RSA path; its P-256 path is measured on its own.
  const pf = await PureFleet.create({ keyType: 'rsa2048' })
  const now = pf.now
  const year = now + 365 * DAY
  const laptop = await pf.enroll(pf.l0, { role: 'admin', notAfter: year }, { kind: 'laptop', name: 'laptop' })
  const phone = await pf.enroll(laptop.cn, { role: 'member', notAfter: year }, { kind: 'phone', name: 'owner phone' })
  const tablet = await pf.enroll(laptop.cn, { role: 'member', notAfter: year }, { kind: 'tablet', name: 'tablet' })
  const lock = await pf.enroll(phone.cn, { role: 'device', notAfter: year }, { kind: 'lock', name: 'front door' })
  const camera = await pf.enroll(phone.cn, { role: 'device', notAfter: year }, { kind: 'camera', name: 'camera' })
  const stolen = await pf.enroll(
    phone.cn,
    { role: 'device', notAfter: year },
    { kind: 'camera', name: 'stolen camera' },
  )
  const guest = await pf.enroll(
    tablet.cn,
    { role: 'guest', notAfter: now + 2 * DAY },
    { kind: 'phone', name: "guest's phone" },
  )
  pf.revoke(phone.cn, stolen.cn, { reason: 'lost', effective: now, subtree: false })
  pf.syncAll()

  const eve = await makeEve(pf.fleet.domain, now - 600)
  const eveKeys = eve.keys
  const guestSubject = { cn: guest.cn, parentCn: tablet.cn, keyPair: eveKeys }
  const eveOwnCa = await forgeCertificate(eveSigner(eve), guestSubject, now, now + DAY)
  const misIssued = await forgeCertificate(fleetSigner(pf.fleet), guestSubject, now, now + DAY)
  const { miner, head } = await sealedMiner(pf.fleet.ledgerSeed, pf.l0Ledger.state.log, now)
  const genesis = pf.l0Ledger.state.genesis!
  return {
    pf,
    now,
    laptop,
    phone,
    tablet,
    lock,
    camera,
    stolen,
    guest,
    eveRoot: eve.root,
    eveOwnCa,
    misIssued,
    eveKeys,
    ledgerBytes: ledgerFile(pf.l0Ledger.state.log),
    miner,
    head,
    anchor: { minerKey: genesis.body.minerKey, genesisId: genesis.event.idHex },
    bundleOf: cn => encodeBundle(buildBundle(miner, cn)),
    v8Decision: (certificate, selfCn, action, at = now) =>
      decide(
        { certificate, action },
        {
          self: selfCn,
          ledger: pf.device(selfCn).ledger.state,
          now: at,
          lastHeadTime: now,
          verifyChain: fleetChainVerifier(pf.fleet.root, nodePki),
        },
      ),
  }
}
