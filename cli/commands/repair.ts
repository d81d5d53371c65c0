/** @module `kin repair`: rebuild a device's damaged ledger from L0 (the sync path from genesis), keep the damaged file aside, say what was dropped. */
import { mkdirSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { KinError } from '../../agent/errors.ts'
import { bytesEqual } from '../../agent/codec/bytes.ts'
import { decodeCbor } from '../../agent/codec/cbor.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodeStorage } from '../../runtime/node/storage.ts'
import { memoryStorage } from '../../agent/portable/memory-storage.ts'
import { readHomeFile } from '../../runtime/node/home-file.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { LedgerFollower } from '../../agent/gossip/follower.ts'
import { LEDGER_FILE, SYNC_FILE, openReplicaFiles } from '../../agent/gossip/replica-files.ts'
import { readEvent } from '../../agent/ledger/event.ts'
import { decodeHead, verifyHeadSignature, type BlockHead } from '../../agent/ledger/head.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import { MerkleTree } from '../../agent/ledger/merkle.ts'
import { scanRecords } from '../../agent/ledger/store.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { parseDuration, requireString, usageError, type CommandSpec } from '../args.ts'
import { Home } from '../../runtime/home.ts'
import { emit, isoTime } from '../output.ts'
import { brokerLoginOf, followsBroker, headSummary, takeLedgerLock } from '../../runtime/following-home.ts'

/** What could still be read of a damaged ledger file. */
interface Salvage {
  /** Events that still decode, in file order (duplicates included). */
  events: EncodedEvent[]
  /** Bytes from the first that no longer frame or decode as an event (0 when all did). */
  unreadableBytes: number
}

/** Every record of `bytes` that still frames and decodes, up to the first damage the framing cannot pass. */
function salvage(bytes: Uint8Array): Salvage {
  let records
  let readable = bytes.length
  try {
    const scan = scanRecords(bytes)
    records = scan.records
    readable = scan.tornTailAt ?? bytes.length
  } catch (err) {
    const offset = (err as KinError).detail?.['offset']
    if (!(err instanceof KinError) || typeof offset !== 'number') throw err
    readable = offset
    records = scanRecords(bytes.subarray(0, offset)).records
  }
  const events: EncodedEvent[] = []
  let unreadableBytes = bytes.length - readable
  for (const r of records) {
    try {
      events.push(readEvent(nodeCrypto, r.bytes))
    } catch {
      unreadableBytes += r.bytes.length
    }
  }
  return { events, unreadableBytes }
}

/** Why the home's ledger and sync file do not open (the error a command on the home meets), or undefined when they do. */
async function damageOf(home: Home): Promise<KinError | undefined> {
  const storage = memoryStorage()
  const read = (name: string): Uint8Array => {
    try {
      return readHomeFile(join(home.dir, name))
    } catch {
      return new Uint8Array(0)
    }
  }
  storage.files.set(LEDGER_FILE, read(LEDGER_FILE))
  storage.files.set(SYNC_FILE, read(SYNC_FILE))
  try {
    const opened = await openReplicaFiles(nodeCrypto, storage)
    await opened.close()
    return undefined
  } catch (err) {
    if (!(err instanceof KinError)) throw err
    return err
  }
}

/** The genesis the rebuild starts from: the damaged file's first event, if it verifies and names the home's root certificate. */
function genesisOf(home: Home, events: EncodedEvent[]): { genesis: EncodedEvent; minerKey: Uint8Array } {
  const first = events[0]
  const rootHash = nodeCrypto.sha256(DeviceCertificate.from(home.readText('root'), { sha256: nodeCrypto.sha256 }).der)
  if (first === undefined || first.event.type !== 'genesis') {
    throw new KinError(
      'REPAIR_NO_GENESIS',
      `${home.path('ledger')} does not start with a readable genesis event: there is nothing to anchor a rebuild on; enroll this device again`,
    )
  }
  try {
    new Ledger(nodeCrypto).ingest(first.bytes)
  } catch (err) {
    throw new KinError(
      'REPAIR_NO_GENESIS',
      `the genesis event of ${home.path('ledger')} does not verify (${(err as KinError).code}): enroll this device again`,
      { cause: err },
    )
  }
  if (!bytesEqual(first.event.body.rootCertHash, rootHash)) {
    throw new KinError(
      'REPAIR_NO_GENESIS',
      `the genesis event of ${home.path('ledger')} names another root certificate than ${home.path('root')}: enroll this device again`,
    )
  }
  return { genesis: first, minerKey: first.event.body.minerKey }
}

/** The head the damaged home had verified (its sync.cbor), when it still decodes and carries the miner's signature. */
function heldHeadOf(home: Home, minerKey: Uint8Array): BlockHead | undefined {
  try {
    const v = decodeCbor(readHomeFile(join(home.dir, SYNC_FILE)), 1024)
    if (!Array.isArray(v) || !(v[1] instanceof Uint8Array)) return undefined
    const head = decodeHead(v[1])
    return verifyHeadSignature(nodeCrypto, head, minerKey) ? head : undefined
  } catch {
    return undefined
  }
}

/** Refuses a rebuilt ledger that does not extend the head the home verified before (L0 must not roll a device back). */
function requireExtends(log: readonly EncodedEvent[], held: BlockHead | undefined): void {
  if (held === undefined) return
  if (log.length < held.treeSize) {
    throw new KinError(
      'HEAD_ROLLBACK',
      `L0's ledger holds ${log.length} events, fewer than the ${held.treeSize} of head ${held.height} this device verified before: nothing was changed`,
    )
  }
  const tree = new MerkleTree(nodeCrypto)
  for (let i = 0; i < held.treeSize; i++) tree.append(log[i]!.id)
  if (!bytesEqual(tree.root(), held.root)) {
    throw new KinError(
      'HEAD_INCONSISTENT',
      `L0's ledger does not extend head ${held.height} this device verified before: nothing was changed`,
    )
  }
}

/** A time as it goes into a file name: 20260101T000000Z. */
function fileStamp(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')
}

/** `kin repair`. */
export const repair: CommandSpec = {
  name: 'repair',
  usage: 'kin repair --home DIR [--timeout 30s] [--json]',
  summary:
    "Rebuild a device's damaged ledger from L0. When DIR/ledger.cbor (with DIR/sync.cbor) no longer opens — STORAGE_DAMAGED, a DUPLICATE_EVENT, a torn or " +
    "cut file — fetch the whole ledger again from L0's miner starting at the file's own genesis (which must verify and name DIR/root.pem), verified as " +
    'every sync is and required to extend the head this device verified before; then keep the damaged files aside as DIR/ledger.damaged-TIME and ' +
    'DIR/sync.damaged-TIME and put the rebuilt ones in their place. Says which events of the damaged file L0 does not have (dropped) and how many ' +
    'bytes could not be read. Stop kin serve or kin sync --follow on DIR first. Exit 0 repaired or nothing to repair, 2 on errors (the home is then unchanged).',
  options: {
    home: { type: 'string', help: 'the device home whose ledger to rebuild' },
    timeout: { type: 'string', help: 'limit for fetching the ledger from L0', default: '30s' },
  },
  async run(args) {
    const dir = requireString(args, 'home', 'the device home to repair, e.g. --home ./phone')
    const seconds = parseDuration(String(args.values.timeout), 'timeout')
    if (seconds < 1) throw usageError('--timeout must be at least 1s')
    const home = new Home(dir)
    const config = home.readConfig()
    if (config.l0 === true)
      throw new KinError(
        'BAD_ARGUMENT',
        `${home.dir} is L0's home: L0's ledger is the miner's log itself; restore it from a backup of L0's home`,
      )
    if (!followsBroker(config))
      throw usageError(`${home.path('config')} names no broker and L0 CN to rebuild from (written by 'kin enroll')`)
    const release = takeLedgerLock(home)
    const staging = join(home.dir, `.repair-${process.pid}`)
    try {
      const damage = await damageOf(home)
      if (damage === undefined) {
        emit(
          args.json,
          { ok: true, repaired: false, file: home.path('ledger') },
          () => `${home.path('ledger')} opens and verifies: nothing to repair`,
        )
        return 0
      }
      const old = salvage(readHomeFile(home.path('ledger')))
      const { genesis, minerKey } = genesisOf(home, old.events)
      const held = heldHeadOf(home, minerKey)

      // The rebuild happens in a staging directory: the home changes only once the new ledger is whole and verified.
      rmSync(staging, { recursive: true, force: true })
      mkdirSync(staging, { mode: 0o700 })
      const storage = nodeStorage(staging)
      const seed = await storage.openAppendFile(LEDGER_FILE)
      await seed.append(genesis.bytes)
      await seed.close()
      const files = await openReplicaFiles(nodeCrypto, storage)
      const follower = new LedgerFollower({
        transport: nodeTransport,
        login: brokerLoginOf(home, config),
        fleet: config.fleet,
        replica: files.replica,
        clock: { now: () => Math.floor(Date.now() / 1000) },
      })
      let log: readonly EncodedEvent[]
      let head: BlockHead | undefined
      let headId: string | undefined
      try {
        const report = await follower.syncOnce(seconds * 1000)
        if (report.alarms.length > 0)
          throw new KinError(
            report.alarms[0]!.code as KinError['code'],
            `L0's head was refused: ${report.alarms[0]!.message}; nothing was changed`,
          )
        if (report.head === undefined)
          throw new KinError(
            'HEAD_MISSING',
            "L0's miner has not signed a head yet: nothing to rebuild from; nothing was changed",
          )
        log = [...files.ledger.ledger.state.log]
        head = report.head
        headId = report.headId
        requireExtends(log, held)
      } finally {
        await follower.close()
        await files.close()
      }
      const has = new Set(log.map(e => e.idHex))
      const seen = new Set<string>()
      let duplicates = 0
      const dropped: Array<Record<string, unknown>> = []
      for (const e of old.events) {
        if (seen.has(e.idHex)) {
          duplicates++
          continue
        }
        seen.add(e.idHex)
        if (!has.has(e.idHex)) dropped.push({ id: e.idHex, type: e.event.type, time: e.event.time })
      }
      const stamp = fileStamp(Date.now())
      const kept = join(home.dir, `ledger.damaged-${stamp}`)
      renameSync(home.path('ledger'), kept)
      try {
        renameSync(join(home.dir, SYNC_FILE), join(home.dir, `sync.damaged-${stamp}`))
      } catch {
        /* no sync file */
      }
      renameSync(join(staging, SYNC_FILE), join(home.dir, SYNC_FILE))
      renameSync(join(staging, LEDGER_FILE), home.path('ledger'))
      emit(
        args.json,
        {
          ok: true,
          repaired: true,
          file: home.path('ledger'),
          events: log.length,
          head: headSummary(head, headId),
          damage: { code: damage.code, message: damage.message },
          kept,
          dropped,
          duplicates,
          unreadableBytes: old.unreadableBytes,
        },
        () =>
          [
            `rebuilt ${home.path('ledger')} from L0: ${log.length} events, head ${head!.height} over ${head!.treeSize} events (${isoTime(head!.time)})`,
            `  it was damaged (${damage.code}: ${damage.message}); kept as ${kept}`,
            ...(duplicates > 0 ? [`  ${duplicates} duplicate record(s) left out`] : []),
            ...(old.unreadableBytes > 0 ? [`  ${old.unreadableBytes} bytes could not be read`] : []),
            dropped.length === 0
              ? '  dropped nothing: L0 has every event the damaged file held'
              : `  dropped ${dropped.length} event(s) L0 does not have:`,
            ...dropped.map(d => `    ${String(d['type'])} ${String(d['id'])} (${isoTime(d['time'] as number)})`),
          ].join('\n'),
      )
      return 0
    } finally {
      rmSync(staging, { recursive: true, force: true })
      release()
    }
  },
}
