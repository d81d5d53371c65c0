/** @module The house driven in one process through the pure enrollment steps (no broker): for fast tests. */
import { PureFleet } from '../pure-fleet.ts'
import type { RoleName } from '../../agent/ledger/types.ts'
import type { HouseDriver, HouseLabel } from './story.ts'

/** A HouseDriver over PureFleet. */
export async function pureHouseDriver(): Promise<HouseDriver & { fleet: PureFleet }> {
  const fleet = await PureFleet.create()
  const cns = new Map<string, string>([['L0', fleet.l0]])
  const cn = (label: HouseLabel): string => {
    const c = cns.get(label)
    if (c === undefined) throw new Error(`${label} is not enrolled`)
    return c
  }
  return {
    fleet,
    now: () => fleet.now,
    advance: s => {
      fleet.now += s
    },
    cnOf: cn,
    async enroll(label, parent, info) {
      fleet.sync(cn(parent))
      const d = await fleet.enroll(
        cn(parent),
        { role: info.role as RoleName, notAfter: info.notAfter },
        { kind: info.kind, name: info.name },
      )
      cns.set(label, d.cn)
      return d.cn
    },
    async revoke(by, target, body) {
      fleet.sync(cn(by))
      fleet.revoke(cn(by), cn(target), { ...body, effective: fleet.now })
    },
    async rekey(parent, target, notAfter) {
      fleet.sync(cn(parent))
      await fleet.rekey(cn(parent), cn(target), notAfter)
    },
    async converge() {
      fleet.syncAll()
    },
    async decide(peer, target, action) {
      return fleet.decide(cn(peer), cn(target), action)
    },
  }
}
