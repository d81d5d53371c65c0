/** @module A device's replica on its storage: `ledger.cbor` (DESIGN.md's home file) and `sync.cbor`, the last verified head. */
import { KinError } from '../errors.ts'
import type { CryptoProvider, Storage } from '../ports/platform.ts'
import { PersistentLedger, type OpenOptions } from '../ledger/persistent.ts'
import { Replica } from '../ledger/replica.ts'

/** The device's ledger file (the home's `ledger.cbor`). */
export const LEDGER_FILE = 'ledger.cbor'
/** The replica's sync file: `[1, headBytes, confirmedAt]`, replaced atomically (agent/ledger/replica.ts). */
export const SYNC_FILE = 'sync.cbor'

/** An open replica and the ledger it wraps; `close` closes both. */
export interface OpenReplica {
  ledger: PersistentLedger
  replica: Replica
  /** The miner key of the ledger's genesis. */
  minerKey: Uint8Array
  close(): Promise<void>
}

/**
 * Opens the ledger file (replayed and verified) and the sync file of a device's storage, checks the held head
 * against the ledger and the genesis' miner key (HEAD_ROOT_MISMATCH, HEAD_SIGNATURE), and returns the replica.
 * NO_GENESIS when the ledger has no genesis yet: a device learns its fleet at enrollment. `verified`: the in-memory
 * ledger this process has just written the file from (right after enrollment), so its records are not verified twice;
 * `events`: decoded events shared by the replicas of this process (the simulator).
 */
export async function openReplicaFiles(
  crypto: CryptoProvider,
  storage: Storage,
  opts: Pick<OpenOptions, 'onTornTail' | 'verified' | 'events'> = {},
): Promise<OpenReplica> {
  const ledger = await PersistentLedger.open(crypto, await storage.openAppendFile(LEDGER_FILE), {
    onTornTail: opts.onTornTail,
    verified: opts.verified,
    events: opts.events,
  })
  try {
    const genesis = ledger.ledger.state.genesis
    if (genesis === undefined)
      throw new KinError('NO_GENESIS', `${LEDGER_FILE} holds no genesis event: enroll the device first`)
    const minerKey = Uint8Array.from(genesis.body.minerKey)
    const syncFile = await storage.openAppendFile(SYNC_FILE)
    let replica: Replica
    try {
      replica = await Replica.open(crypto, ledger, syncFile, { minerKey, events: opts.events })
    } catch (err) {
      await syncFile.close().catch(() => undefined)
      throw err
    }
    return {
      ledger,
      replica,
      minerKey,
      close: async () => {
        try {
          await replica.close()
        } finally {
          await ledger.close()
        }
      },
    }
  } catch (err) {
    await ledger.close().catch(() => undefined)
    throw err
  }
}
