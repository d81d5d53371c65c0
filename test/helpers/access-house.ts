/** @module The house from the design on a LedgerFleet, with stand-in certificates for ledger-level access tests. */
import { fromHex } from '../../agent/codec/bytes.ts'
import { VerificationError } from '../../agent/errors.ts'
import type { RoleName } from '../../agent/ledger/types.ts'
import { certifiedEvent } from '../../agent/ledger/builders.ts'
import type { ChainVerifier, DecisionContext, PeerCertificate, VerifiedChain } from '../../agent/access/types.ts'
import { LedgerFleet, T0 } from './ledger-fleet.ts'

/** The devices of the house, by the design's layer names. */
export const HOUSE = ['L0', 'L1', 'L2.1', 'L2.2', 'L3.1', 'L3.2', 'L3.3', 'L3.4'] as const
export type HouseName = (typeof HOUSE)[number]

/** Who authorized whom, written out by hand as the oracle for paths. */
export const PARENT: Record<HouseName, HouseName | undefined> = {
  L0: undefined,
  L1: 'L0',
  'L2.1': 'L1',
  'L2.2': 'L1',
  'L3.1': 'L2.1',
  'L3.2': 'L2.1',
  'L3.3': 'L2.1',
  'L3.4': 'L2.2',
}
export const ROLE_OF: Record<HouseName, RoleName> = {
  L0: 'admin',
  L1: 'admin',
  'L2.1': 'member',
  'L2.2': 'member',
  'L3.1': 'device',
  'L3.2': 'device',
  'L3.3': 'device',
  'L3.4': 'guest',
}

/** The guest's authorization ends two days after the house was set up. */
export const GUEST_UNTIL = T0 + 2 * 86400
/** The next day, 10:00 UTC: everyone valid, inside any daytime window. */
export const NOW = T0 - (T0 % 86400) + 86400 + 10 * 3600

/** A stand-in for a verified certificate: what a chain check would prove about it. */
export interface StubCertificate extends PeerCertificate, VerifiedChain {}

/** The house, its stand-in certificates, and a chain verifier that counts its calls. */
export class House {
  readonly fleet: LedgerFleet
  readonly cn: Record<HouseName, string>
  chainCalls = 0
  readonly verifyChain: ChainVerifier<StubCertificate> = (c, now) => {
    this.chainCalls++
    if (c.cn.startsWith('forged')) throw new VerificationError('CERT_CHAIN', 'not issued by the fleet root')
    if (now > c.notAfter) throw new VerificationError('CERT_EXPIRED', 'expired')
    return { cn: c.cn, parentCn: c.parentCn, spkiHash: c.spkiHash, certHash: c.certHash, notAfter: c.notAfter }
  }

  constructor() {
    const f = (this.fleet = LedgerFleet.create({ time: T0, tag: 'house' }))
    // L0 records its own device certificate like every other device.
    f.sign(certifiedEvent(f.binding(f.l0), f.bytes(32), T0 + 1), f.l0)
    const l1 = f.enroll(f.l0, { role: 'admin', kind: 'laptop', name: 'laptop' })
    const l21 = f.enroll(l1, { role: 'member', kind: 'phone', name: "owner's phone" })
    const l22 = f.enroll(l1, { role: 'member', kind: 'tablet', name: 'tablet' })
    this.cn = {
      L0: f.l0,
      L1: l1,
      'L2.1': l21,
      'L2.2': l22,
      'L3.1': f.enroll(l21, { role: 'device', kind: 'camera', name: 'camera 1' }),
      'L3.2': f.enroll(l21, { role: 'device', kind: 'camera', name: 'camera 2' }),
      'L3.3': f.enroll(l21, { role: 'device', kind: 'lock', name: 'front-door lock' }),
      'L3.4': f.enroll(l22, { role: 'guest', kind: 'phone', name: "guest's phone", notAfter: GUEST_UNTIL }),
    }
  }

  /** The house name of a CN. */
  nameOf(cn: string | undefined): string | undefined {
    return HOUSE.find(n => this.cn[n] === cn) ?? cn
  }

  /** A stand-in certificate matching what the ledger recorded for `name` (current binding), with overrides. */
  cert(name: HouseName | string, overrides: Partial<StubCertificate> = {}): StubCertificate {
    const cn = (this.cn as Record<string, string>)[name] ?? name
    const b = this.fleet.binding(cn)
    return {
      cn,
      parentCn: b.parentCn,
      spkiHash: b.spkiHash,
      certHash: fromHex(b.certHashes[b.certHashes.length - 1]!),
      notBefore: b.time,
      notAfter: b.notAfter,
      ...overrides,
    }
  }

  /** A decision context for `self` at NOW on the fleet's own ledger. */
  context(self: HouseName, extra: Partial<DecisionContext<StubCertificate>> = {}): DecisionContext<StubCertificate> {
    return { self: this.cn[self], ledger: this.fleet.ledger.state, verifyChain: this.verifyChain, now: NOW, ...extra }
  }
}

/** The house path from `peer` up to the common ancestor and down to `self`, from the hand-written PARENT map. */
export function expectedPath(peer: HouseName, self: HouseName): HouseName[] {
  const up = (n: HouseName): HouseName[] => (PARENT[n] === undefined ? [n] : [n, ...up(PARENT[n]!)])
  const a = up(peer),
    b = up(self)
  const i = a.findIndex(n => b.includes(n))
  return [...a.slice(0, i + 1), ...b.slice(0, b.indexOf(a[i]!)).reverse()]
}
