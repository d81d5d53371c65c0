/** @module L0's miner in memory: it takes a fleet's log and seals heads over it, for proof bundles without a broker. */
import type { EncodedEvent } from '../agent/ledger/types.ts'
import type { BlockHead } from '../agent/ledger/head.ts'
import { Miner } from '../agent/ledger/miner.ts'
import { PersistentLedger } from '../agent/ledger/persistent.ts'
import { memoryStorage } from '../agent/portable/memory-storage.ts'
import { nodeCrypto } from '../runtime/node/crypto.ts'

/**
 * A miner on memory files, keyed by L0's ledger seed (genesis names it as the miner key), that does not hold event
 * times to its clock: a fleet built at any time can be mined.
 */
export async function memoryMiner(ledgerSeed: Uint8Array): Promise<Miner> {
  const storage = memoryStorage()
  return Miner.open(
    nodeCrypto,
    await PersistentLedger.open(nodeCrypto, await storage.openAppendFile('ledger.cbor')),
    await storage.openAppendFile('heads.cbor'),
    ledgerSeed,
    { boundTimes: false },
  )
}

/**
 * Hands `log` to the miner at `now`, in submissions of `batch` events (default: one). Throws when it refuses any or
 * waits for a link: the log is meant to be the fleet's own.
 */
export async function submitAll(
  miner: Miner,
  log: readonly EncodedEvent[],
  now: number,
  batch = Math.max(1, log.length),
): Promise<void> {
  let accepted = 0
  for (let at = 0; at < log.length; at += batch) {
    const submitted = await miner.submit(
      log.slice(at, at + batch).map(e => e.bytes),
      now,
    )
    accepted += submitted.accepted.length
  }
  if (accepted !== log.length) throw new Error(`the miner took ${accepted} of the log's ${log.length} events`)
}

/**
 * Hands `log` to the miner in parts that end at each of `ends` (ascending, the last one usually the log's length),
 * sealing one head after each part at `sealAt(i)` for the i-th part (default: `now`). Throws as submitAll does, and
 * when a part seals no head (an empty part). Returns the heads, one per part.
 */
export async function mineInParts(
  miner: Miner,
  log: readonly EncodedEvent[],
  ends: readonly number[],
  now: number,
  opts: { sealAt?: (i: number) => number; batch?: number } = {},
): Promise<BlockHead[]> {
  const heads: BlockHead[] = []
  let at = 0
  for (const end of ends) {
    await submitAll(miner, log.slice(at, end), now, opts.batch)
    const head = await miner.seal(opts.sealAt?.(heads.length) ?? now)
    if (head === undefined) throw new Error(`the miner sealed no head over events ${at} to ${end}`)
    heads.push(head)
    at = end
  }
  return heads
}

/** A memory miner (memoryMiner) that has accepted every event of `log` and sealed one head at `now`; throws as mineInParts does. */
export async function sealedMiner(
  ledgerSeed: Uint8Array,
  log: readonly EncodedEvent[],
  now: number,
  opts: { batch?: number } = {},
): Promise<{ miner: Miner; head: BlockHead }> {
  const miner = await memoryMiner(ledgerSeed)
  try {
    const [head] = await mineInParts(miner, log, [log.length], now, opts)
    return { miner, head: head! }
  } catch (err) {
    await miner.close()
    throw err
  }
}
