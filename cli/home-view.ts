/** @module A home read without taking it over (ledger state, verified head, proofs, the agent holding it) and how its identities are shown: for kin status, devices, show and ledger bundle. */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { KinError } from '../agent/errors.ts'
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { memoryStorage } from '../agent/portable/memory-storage.ts'
import { readHomeFile } from '../runtime/node/home-file.ts'
import { LEDGER_FILE, SYNC_FILE, openReplicaFiles } from '../agent/gossip/replica-files.ts'
import type { BlockHead } from '../agent/ledger/head.ts'
import { Miner } from '../agent/ledger/miner.ts'
import { escapeNonPrintable } from '../agent/ledger/names.ts'
import { PersistentLedger } from '../agent/ledger/persistent.ts'
import type { InvalidReason, LedgerState } from '../agent/ledger/state.ts'
import type { Binding, Revocation } from '../agent/ledger/types.ts'
import type { BundleSource } from '../agent/ledger/bundle.ts'
import { usageError } from './args.ts'
import { Home, type HomeConfig } from '../runtime/home.ts'
import { isoTime } from './output.ts'
import { BROKER_LOCK_FILE, LEDGER_LOCK_FILE, lockHolder } from '../runtime/following-home.ts'

/** The heads file of L0's miner (broker/miner-service.ts HEADS_FILE). */
const L0_HEADS_FILE = 'heads.cbor'

/** A home's log read into memory: its state, the head it verified, and what proves inclusion against that head. */
export interface HomeLog {
  state: LedgerState
  /** The last head this home verified (a device's sync.cbor; on L0, the miner's latest sealed head). */
  head: BlockHead | undefined
  headId: string | undefined
  /** When the device last confirmed that head with L0 (seconds; undefined on L0 and before the first sync). */
  confirmedAt: number | undefined
  /** The replica (a device) or the miner (L0) over the copy, for proof bundles. */
  proofs: { bundleSource(): BundleSource | undefined }
  /** Every head the home holds, oldest first: all the miner signed on L0's home, the latest verified one on a device's. */
  heads(): BlockHead[]
  /** The genesis' miner key and id: the anchor a bundle from this home is checked with. */
  minerKey: Uint8Array
  genesisId: string
}

/** What a home's files say, read into memory: a running agent keeps owning the files. */
export interface HomeView extends Omit<HomeLog, 'proofs' | 'heads'> {
  home: Home
  config: HomeConfig
}

function fileBytes(path: string): Uint8Array {
  return existsSync(path) ? readHomeFile(path) : new Uint8Array(0)
}

/**
 * Reads a home without taking it over (a running kin serve or kin broker may own it): ledger.cbor with sync.cbor
 * (a device) or heads.cbor (L0's miner) copied into memory, replayed, verified and opened there, handed to `use`,
 * then closed. The running agent keeps writing its files; this copy is what they held a moment ago.
 */
export async function readHomeLog<T>(
  home: Home,
  config: HomeConfig,
  use: (log: HomeLog) => T | Promise<T>,
): Promise<T> {
  const storage = memoryStorage()
  // The head first, then the ledger: an agent appends events before it records a head over them, so the ledger read
  // second holds at least what the head covers, however the two reads interleave with its writes.
  if (config.l0 === true) {
    storage.files.set(L0_HEADS_FILE, fileBytes(join(home.dir, L0_HEADS_FILE)))
    storage.files.set(LEDGER_FILE, fileBytes(home.path('ledger')))
    const ledger = await PersistentLedger.open(nodeCrypto, await storage.openAppendFile(LEDGER_FILE))
    const genesis = ledger.ledger.state.genesis
    if (genesis === undefined) throw new KinError('NO_GENESIS', `${home.path('ledger')} holds no genesis event`)
    const miner = await Miner.open(
      nodeCrypto,
      ledger,
      await storage.openAppendFile(L0_HEADS_FILE),
      home.readLedgerKey(),
    )
    try {
      return await use({
        state: ledger.ledger.state,
        head: miner.latestHead(),
        headId: miner.latestHeadId(),
        confirmedAt: undefined,
        proofs: miner,
        heads: () => allHeads(miner),
        minerKey: genesis.body.minerKey,
        genesisId: genesis.event.idHex,
      })
    } finally {
      await miner.close()
    }
  }
  storage.files.set(SYNC_FILE, fileBytes(join(home.dir, SYNC_FILE)))
  storage.files.set(LEDGER_FILE, fileBytes(home.path('ledger')))
  const opened = await openReplicaFiles(nodeCrypto, storage)
  try {
    const r = opened.replica
    const state = opened.ledger.ledger.state
    return await use({
      state,
      head: r.head,
      headId: r.headId,
      confirmedAt: r.confirmedAt,
      proofs: r,
      heads: () => (r.head === undefined ? [] : [r.head]),
      minerKey: opened.minerKey,
      genesisId: state.genesis!.event.idHex,
    })
  } finally {
    await opened.close()
  }
}

/** Every head `miner` signed, oldest first. */
function allHeads(miner: Miner): BlockHead[] {
  const heads: BlockHead[] = []
  for (let h = 0; h <= (miner.latestHead()?.height ?? -1); h++) {
    const head = miner.headAt(h)
    if (head !== undefined) heads.push(head)
  }
  return heads
}

/** Opens `dir` read-only: its config, ledger state and verified head (readHomeLog). */
export async function openHomeView(dir: string): Promise<HomeView> {
  const home = new Home(dir)
  const config = home.readConfig()
  return readHomeLog(home, config, ({ proofs: _proofs, heads: _heads, ...log }) => ({ home, config, ...log }))
}

/** The process that holds the home, if one does: `kin broker` on L0's home, `kin serve` or `kin sync --follow` on a device's. */
export function homeHolder(home: Home): { pid: number; what: string } | undefined {
  const broker = lockHolder(home, BROKER_LOCK_FILE)
  if (broker !== undefined) return { pid: broker, what: 'kin broker' }
  const follower = lockHolder(home, LEDGER_LOCK_FILE)
  if (follower !== undefined) return { pid: follower, what: 'kin serve or kin sync --follow' }
  return undefined
}

/** A name from the ledger as a terminal may show it: a control character can never move the cursor or forge a line. */
export function shown(name: string): string {
  return escapeNonPrintable(name)
}

/** `"front door" (3xk…)`: a binding's name beside its CN's label, for people. */
export function nameAndLabel(b: Binding): string {
  return `"${shown(b.name)}" ${b.label}`
}

/** A revocation as JSON (times in seconds) with the signer's CN. */
export function revocationJson(state: LedgerState, r: Revocation): Record<string, unknown> {
  return {
    reason: r.reason,
    effective: r.effective,
    subtree: r.subtree,
    by: state.bindings.get(r.issuerBindingId)?.cn ?? r.by,
    time: r.time,
    eventId: r.eventId,
  }
}

/** A revocation for people: reason, effective time in ISO 8601, and who signed it. */
export function revocationText(state: LedgerState, r: Revocation): string {
  const by = state.bindings.get(r.issuerBindingId)
  return `revoked (${r.reason}${r.subtree ? ', with its subtree' : ''}) effective ${isoTime(r.effective)} by ${by === undefined ? r.by : nameAndLabel(by)}`
}

/** Why a binding stands or not at `now`, as JSON: `{ valid: true }` or the code with its revocation or expiry. */
export function standingJson(state: LedgerState, invalid: InvalidReason | undefined): Record<string, unknown> {
  if (invalid === undefined) return { valid: true }
  switch (invalid.code) {
    case 'REVOKED':
      return { valid: false, code: invalid.code, revocation: revocationJson(state, invalid.revocation) }
    case 'ANCESTOR_REVOKED':
      return {
        valid: false,
        code: invalid.code,
        ancestor: invalid.ancestorCn,
        revocation: revocationJson(state, invalid.revocation),
      }
    case 'EXPIRED':
      return { valid: false, code: invalid.code, notAfter: invalid.notAfter }
    case 'LINEAGE_GAP':
      return { valid: false, code: invalid.code }
    case 'PARENT_SUPERSEDED':
      return { valid: false, code: invalid.code, ancestor: invalid.ancestorCn }
  }
}

/** Why a binding does not stand, for people; undefined when it does. */
export function standingText(state: LedgerState, invalid: InvalidReason | undefined): string | undefined {
  if (invalid === undefined) return undefined
  const named = (cn: string): string => {
    const b = state.currentBinding(cn)
    return b === undefined ? cn : nameAndLabel(b)
  }
  switch (invalid.code) {
    case 'REVOKED':
      return revocationText(state, invalid.revocation)
    case 'ANCESTOR_REVOKED':
      return `its ancestor ${named(invalid.ancestorCn)} was ${revocationText(state, invalid.revocation)}`
    case 'EXPIRED':
      return `expired at ${isoTime(invalid.notAfter)}`
    case 'LINEAGE_GAP':
      return 'its lineage has a gap in this ledger (run kin sync)'
    case 'PARENT_SUPERSEDED':
      return `its parent ${named(invalid.ancestorCn)} had new keys before it was authorized`
  }
}

/**
 * The CN `query` names in the ledger: a CN, a label, or a friendly name matched whole (case-sensitively, then
 * ignoring case). IDENTITY_UNKNOWN when nothing matches, NAME_AMBIGUOUS listing the candidates when several do.
 */
export function findIdentity(state: LedgerState, query: string): string {
  if (query.length === 0) throw usageError('give a CN or a device name')
  if (state.bindingsByCn.has(query)) return query
  const current = [...state.bindingsByCn.keys()].map(cn => state.currentBinding(cn)!)
  const byLabel = current.filter(b => b.label === query.toLowerCase())
  if (byLabel.length === 1) return byLabel[0]!.cn
  let matches = current.filter(b => b.name === query)
  if (matches.length === 0) matches = current.filter(b => b.name.toLowerCase() === query.toLowerCase())
  if (matches.length === 1) return matches[0]!.cn
  if (matches.length === 0) {
    throw new KinError(
      'IDENTITY_UNKNOWN',
      `no identity named "${shown(query)}" in this home's ledger (${current.length} identities): run 'kin devices' for the names, or 'kin sync' if it was enrolled since`,
      { detail: { query } },
    )
  }
  const candidates = matches.map(
    b =>
      `${b.cn} (${b.role} ${shown(b.kind)}, under ${b.parentCn === undefined ? '-' : shown(state.currentBinding(b.parentCn)?.name ?? b.parentCn)})`,
  )
  throw new KinError(
    'NAME_AMBIGUOUS',
    `${matches.length} identities are named "${shown(query)}": give one of their CNs instead:\n  ${candidates.join('\n  ')}`,
    { detail: { query, candidates: matches.map(b => b.cn) } },
  )
}
