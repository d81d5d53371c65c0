/** @module L0's miner in memory: it takes a fleet's log and seals one head over it, for proof bundles without a broker. */
import type { EncodedEvent } from '../agent/ledger/types.ts'
import type { BlockHead } from '../agent/ledger/head.ts'
import { Miner } from '../agent/ledger/miner.ts'
import { PersistentLedger } from '../agent/ledger/persistent.ts'
import { memoryStorage } from '../agent/portable/memory-storage.ts'
import { nodeCrypto } from '../runtime/node/crypto.ts'

/**
 * A miner on memory files, keyed by L0's ledger seed (genesis names it as the miner key), that has accepted every
 * event of `log` and sealed one head at `now`. Throws when it refuses any: the log is meant to be the fleet's own.
 */
export async function sealedMiner(
  ledgerSeed: Uint8Array,
  log: readonly EncodedEvent[],
  now: number,
): Promise<{ miner: Miner; head: BlockHead }> {
  const storage = memoryStorage()
  const miner = await Miner.open(
    nodeCrypto,
    await PersistentLedger.open(nodeCrypto, await storage.openAppendFile('ledger.cbor')),
    await storage.openAppendFile('heads.cbor'),
    ledgerSeed,
    { boundTimes: false },
  )
  const submitted = await miner.submit(
    log.map(e => e.bytes),
    now,
  )
  const head = submitted.accepted.length === log.length ? await miner.seal(now) : undefined
  if (head === undefined) {
    await miner.close()
    throw new Error(`the miner took ${submitted.accepted.length} of the log's ${log.length} events`)
  }
  return { miner, head }
}
