/** @module Reading L0's side of a submission in the attack suite: what the miner made of the one event a case sent it. */
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import { KinError } from '../../agent/errors.ts'
import type { Refusal } from '../../agent/ledger/ledger.ts'
import type { SubmitResult } from '../../agent/ledger/miner.ts'
import type { LiveFleet } from '../live/fleet.ts'

/** How long L0 has to judge a submission that reached the broker, ms. */
export const MINER_WAIT_MS = 10_000

/** What L0's miner made of a submission carrying one event. */
export interface MinerVerdict {
  result: SubmitResult
  refused: Refusal | undefined
}

/**
 * Watches L0's miner for the submission carrying `idHex` (what L0 logs as ledger.accepted or ledger.refused): a
 * device is never told, so this is the simulator reading L0's side. It only observes: the submission itself
 * travels over MQTT. `stop` puts the miner back.
 */
export function watchMiner(fleet: LiveFleet, idHex: string): { result: Promise<MinerVerdict>; stop: () => void } {
  const miner = fleet.l0.miner
  const submit = miner.submit.bind(miner)
  let stop = (): void => undefined
  const result = new Promise<MinerVerdict>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new KinError(
            'BROKER_TIMEOUT',
            `L0's miner saw no submission of ${idHex.slice(0, 16)}… within ${MINER_WAIT_MS} ms`,
          ),
        ),
      MINER_WAIT_MS,
    )
    miner.submit = async (eventBytes, now, from) => {
      const out = await submit(eventBytes, now, from)
      // An event whose links are missing stays pending: L0 logs it refused with MISSING_LINK (broker/submit.ts).
      // A submission over its sender's budget is refused whole before the miner looks at any event (quota.ts).
      const refused =
        (out.overQuota !== undefined && eventBytes.some(b => toHex(nodeCrypto.sha256(b)) === idHex)
          ? { idHex, code: out.overQuota.code, message: out.overQuota.message }
          : undefined) ??
        out.refused.find(r => r.idHex === idHex) ??
        (out.pending.some(e => e.idHex === idHex)
          ? {
              idHex,
              code: 'MISSING_LINK',
              message: "an event it links to is in neither L0's ledger nor this submission",
            }
          : undefined)
      const covered = refused !== undefined || out.accepted.some(e => e.idHex === idHex) || out.known.includes(idHex)
      if (covered) {
        clearTimeout(timer)
        resolve({ result: out, refused })
      }
      return out
    }
    stop = () => {
      clearTimeout(timer)
      Reflect.deleteProperty(miner, 'submit')
    }
  })
  return { result, stop }
}
