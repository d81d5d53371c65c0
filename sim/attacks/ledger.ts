/** @module Tampering with a device's ledger on disk: a flipped byte, a deleted event, two events swapped — each caught on reopen — and an older copy swapped in under a serving device. */
import { copyFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodeStorage } from '../../runtime/node/storage.ts'
import { KinError } from '../../agent/errors.ts'
import { concatBytes, toHex } from '../../agent/codec/bytes.ts'
import { LEDGER_FILE, SYNC_FILE, openReplicaFiles } from '../../agent/gossip/replica-files.ts'
import { readEvent } from '../../agent/ledger/event.ts'
import { scanRecords, type StoredRecord } from '../../agent/ledger/store.ts'
import type { AttackContext } from './house.ts'
import type { AttackRunner } from './runner.ts'
import { ACCEPTED, type AttackOutcome } from './types.ts'
import { HomeLedgerFollower } from '../../runtime/access-home.ts'

/** Copies the home's ledger and sync files into `into`, with the ledger's bytes changed by `tamper`. */
function copyHome(
  home: string,
  into: string,
  tamper: (records: StoredRecord[], bytes: Uint8Array) => Uint8Array,
): void {
  mkdirSync(into, { recursive: true })
  const bytes = new Uint8Array(readFileSync(join(home, LEDGER_FILE)))
  writeFileSync(join(into, LEDGER_FILE), tamper(scanRecords(bytes).records, bytes))
  copyFileSync(join(home, SYNC_FILE), join(into, SYNC_FILE))
}

/** Reopens a home's ledger as the device does after a restart: the file replayed and verified, the held head checked. */
async function reopen(dir: string): Promise<AttackOutcome> {
  try {
    const opened = await openReplicaFiles(nodeCrypto, nodeStorage(dir))
    const size = opened.ledger.ledger.size,
      head = opened.replica.head
    await opened.close()
    return {
      actual: ACCEPTED,
      detail: `${size} events replayed and verified; held head ${head?.height} over ${head?.treeSize} events matches`,
    }
  } catch (err) {
    if (!(err instanceof KinError)) throw err
    return { actual: err.code, detail: err.message }
  }
}

/** Whether the event of `later` links to the event of `earlier`. */
function links(later: StoredRecord, earlier: StoredRecord): boolean {
  const earlierId = toHex(nodeCrypto.sha256(earlier.bytes))
  return readEvent(nodeCrypto, later.bytes).event.links.some(l => toHex(l) === earlierId)
}

/**
 * The front-door lock's home, copied while the lock runs (its ledger file and the head it holds), changed the way
 * someone with the disk in hand could, and reopened. The untouched copy must reopen: the refusals come from the
 * change, not from the copy.
 */
export async function ledgerAttacks(ctx: AttackContext, run: AttackRunner): Promise<void> {
  const { fleet } = ctx
  await fleet.converge()
  const home = fleet.device('L3.3').dir
  const scratch = (name: string): string => join(ctx.scratch, `L3.3-${name}`)

  await run.run(
    {
      id: 'ledger-untouched',
      family: 'ledger',
      kind: 'control',
      attack: "an untouched copy of the lock's ledger reopens",
      expected: [ACCEPTED],
    },
    () => {
      copyHome(home, scratch('copy'), (_, bytes) => bytes)
      return reopen(scratch('copy'))
    },
  )
  await run.run(
    {
      id: 'ledger-flipped-byte',
      family: 'ledger',
      kind: 'attack',
      attack: "one byte flipped in the middle of the lock's ledger file",
      expected: ['STORAGE_DAMAGED', 'HEAD_ROOT_MISMATCH'],
    },
    () => {
      copyHome(home, scratch('flipped'), (records, bytes) => {
        const middle = records[Math.floor(records.length / 2)]!
        const copy = bytes.slice()
        copy[middle.offset + middle.bytes.length - 5]! ^= 0x01
        return copy
      })
      return reopen(scratch('flipped'))
    },
  )
  await run.run(
    {
      id: 'ledger-deleted-event',
      family: 'ledger',
      kind: 'attack',
      attack: "one event cut out of the lock's ledger file",
      expected: ['STORAGE_DAMAGED', 'HEAD_ROOT_MISMATCH'],
    },
    () => {
      copyHome(home, scratch('deleted'), records => {
        const cut = Math.floor(records.length / 2)
        return concatBytes(...records.filter((_, i) => i !== cut).map(r => r.bytes))
      })
      return reopen(scratch('deleted'))
    },
  )
  await run.run(
    {
      id: 'ledger-reordered',
      family: 'ledger',
      kind: 'attack',
      attack: "two neighbouring independent events swapped in the lock's ledger file",
      expected: ['HEAD_ROOT_MISMATCH', 'STORAGE_DAMAGED'],
    },
    () => {
      copyHome(home, scratch('reordered'), records => {
        // Two events neither of which links to the other replay fine in either order: only the head's root sees it.
        let i = records.length - 2
        while (i > 1 && links(records[i + 1]!, records[i]!)) i--
        const order = records.slice()
        ;[order[i], order[i + 1]] = [order[i + 1]!, order[i]!]
        return concatBytes(...order.map(r => r.bytes))
      })
      return reopen(scratch('reordered'))
    },
  )
  await run.run(
    {
      id: 'ledger-rolled-back',
      family: 'ledger',
      kind: 'attack',
      attack: "the lock's ledger file swapped, while it serves, for an older copy (its last events cut)",
      expected: ['LEDGER_ROLLBACK'],
    },
    async () => {
      // A device that serves from its file (kin serve on a home written by another process) reads it again when it
      // changes; an older copy — from before a revocation — must not become its truth (DESIGN.md "Storage").
      const dir = scratch('rolled-back')
      copyHome(home, dir, (_, bytes) => bytes)
      const file = join(dir, LEDGER_FILE)
      const serving = new HomeLedgerFollower(file)
      const held = serving.state().log.length
      const records = scanRecords(new Uint8Array(readFileSync(file))).records
      const older = concatBytes(...records.slice(0, Math.max(1, records.length - 3)).map(r => r.bytes))
      writeFileSync(`${file}.older`, older)
      renameSync(`${file}.older`, file)
      const after = serving.state().log.length
      const error = serving.lastError
      if (error === undefined)
        return { actual: ACCEPTED, detail: `the older copy became the state: ${after} events (held ${held})` }
      return {
        actual: error.code,
        detail: `still deciding on the ${after} events verified before (the copy has ${records.length - 3}): ${error.message.split('. ')[0]}`,
      }
    },
  )
}
