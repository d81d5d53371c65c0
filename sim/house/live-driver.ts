/** @module The house driven through L0's real services: pairing codes, MQTT over TLS, the miner, mutual-TLS access checks. */
import { LiveFleet, simClock, type FleetLog } from '../live/fleet.ts'
import type { TopicObserver } from '../../broker/hooks.ts'
import type { RoleName } from '../../agent/ledger/types.ts'
import type { HouseDriver } from './story.ts'

/** A HouseDriver over a LiveFleet in `dir`; `onTopic` sees every topic a session asks L0's broker to use. */
export async function liveHouseDriver(
  dir: string,
  log?: FleetLog,
  onTopic?: TopicObserver,
): Promise<HouseDriver & { fleet: LiveFleet }> {
  const clock = simClock()
  const fleet = await LiveFleet.start({
    dir,
    domain: 'smith.home.arpa',
    clock,
    ...(log ? { log } : {}),
    ...(onTopic ? { onTopic } : {}),
  })
  return {
    fleet,
    now: () => clock.now(),
    advance: s => clock.advance(s),
    cnOf: label => fleet.cnOf(label),
    async enroll(label, parent, info) {
      const d = await fleet.enroll(label, parent, {
        role: info.role as RoleName,
        kind: info.kind,
        name: info.name,
        validSeconds: info.notAfter - clock.now(),
      })
      return d.cn
    },
    async revoke(by, target, body) {
      await fleet.revoke(by, target, body)
    },
    async rekey(parent, target, notAfter) {
      await fleet.rekey(parent, target, notAfter)
    },
    async converge() {
      await fleet.converge()
    },
    decide: (peer, target, action) => fleet.access(peer, target, action),
  }
}
