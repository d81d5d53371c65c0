/** @module What `kin serve`, `kin access` and `kin check` share: a home opened for access decisions, its ledger followed on disk. */
import { existsSync, lstatSync } from 'node:fs'
import { join } from 'node:path'
import { KinError } from '../agent/errors.ts'
import { nodeCrypto } from './node/crypto.ts'
import { nodePki } from './node/pki.ts'
import { AuditLog } from './node/audit-log.ts'
import { readHomeFile, readHomeFileRange } from './node/home-file.ts'
import type { CryptoProvider } from '../agent/ports/platform.ts'
import { AccessSession } from '../agent/access/session.ts'
import type { Decision, LocalPolicy } from '../agent/access/types.ts'
import { Ledger } from '../agent/ledger/ledger.ts'
import { decodeCbor } from '../agent/codec/cbor.ts'
import { decodeHead, verifyHeadSignature, type BlockHead } from '../agent/ledger/head.ts'
import { SYNC_FILE } from '../agent/gossip/replica-files.ts'
import { mergeBundleInto, verifyBundle, type VerifiedBundle } from '../agent/ledger/bundle.ts'
import { replayRecords } from '../agent/ledger/persistent.ts'
import type { LedgerState } from '../agent/ledger/state.ts'
import { scanRecords } from '../agent/ledger/store.ts'
import { parsePolicyDocument } from '../agent/access/policy-document.ts'
import { DeviceCertificate } from '../agent/pki/certificate.ts'
import { Home, type HomeConfig } from './home.ts'

interface FileMark {
  ino: number
  size: number
  mtimeMs: number
}

function sameMark(a: FileMark, b: FileMark): boolean {
  return a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs
}

/**
 * A home's ledger.cbor, read without taking it over (another process — `kin sync`, the enrollment — may append
 * to it while a device serves). Before each use one lstat() tells whether the file changed: appended records are
 * validated into the state already held; a file that was replaced or shrank is replayed whole. If the new content
 * does not verify, the last verified state stays in force and `lastError` says why. The state never goes back
 * (DESIGN.md "Storage"): a replayed file that lacks any event already verified here — an older copy from before a
 * revocation — is LEDGER_ROLLBACK, an alarm, and the verified state stays in memory. The file is opened without
 * following symlinks and only when it is a regular file (FILE_NOT_REGULAR).
 */
export class HomeLedgerFollower {
  readonly path: string
  readonly crypto: CryptoProvider
  /** The refresh error that left the previous state in force, if the last refresh failed. */
  lastError: KinError | undefined = undefined
  /** Full replays and incremental reads so far (for logs and benches). */
  reloads = 0
  appends = 0
  #ledger: Ledger
  #mark: FileMark = { ino: -1, size: -1, mtimeMs: -1 }
  // The file as it was when it last failed: not read again until it changes (a rollback is not replayed per decision).
  #refused: FileMark | undefined = undefined
  #consumed = 0

  constructor(path: string, crypto: CryptoProvider = nodeCrypto) {
    this.path = path
    this.crypto = crypto
    this.#ledger = new Ledger(crypto)
    this.refresh()
    if (this.lastError !== undefined) throw this.lastError
  }

  /** The verified state, after a refresh. */
  state(): LedgerState {
    this.refresh()
    return this.#ledger.state
  }

  /** Brings the state up to the file; returns true when it changed. Never throws: see `lastError`. */
  refresh(): boolean {
    let mark: FileMark
    try {
      const st = lstatSync(this.path)
      mark = { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs }
    } catch (cause) {
      this.lastError = new KinError('HOME_MISSING', `cannot read ${this.path}: ${(cause as Error).message}`, { cause })
      return false
    }
    const before = this.#mark
    if (sameMark(mark, before)) {
      // Back to the file last verified (e.g. restored by rename): its state is the one held.
      this.lastError = undefined
      this.#refused = undefined
      return false
    }
    if (this.#refused !== undefined && sameMark(mark, this.#refused)) return false
    const grew = mark.ino === before.ino && mark.size > this.#consumed
    try {
      if (!(grew && this.#appendFrom(this.#consumed, mark.size))) this.#reload()
      this.#mark = mark
      this.#refused = undefined
      this.lastError = undefined
      return true
    } catch (e) {
      this.#refused = mark
      this.lastError =
        e instanceof KinError
          ? e
          : new KinError('STORAGE_IO', `reading ${this.path}: ${(e as Error).message}`, { cause: e })
      return false
    }
  }

  // Records appended after `from`: false (a full replay is due) when they do not frame or validate in order.
  #appendFrom(from: number, to: number): boolean {
    const tail = readHomeFileRange(this.path, from, to)
    let scan
    try {
      scan = scanRecords(tail)
    } catch {
      return false
    }
    for (const record of scan.records) {
      try {
        this.#ledger.ingest(record.bytes)
      } catch {
        return false
      }
    }
    this.#consumed = from + (scan.tornTailAt ?? tail.length)
    this.appends++
    return true
  }

  #reload(): void {
    const bytes = readHomeFile(this.path)
    const { records, tornTailAt } = scanRecords(bytes)
    const next = replayRecords(this.crypto, records)
    requireNoRollback(this.path, this.#ledger.state, next.state)
    this.#ledger = next
    this.#consumed = tornTailAt ?? bytes.length
    this.reloads++
  }
}

/**
 * Throws LEDGER_ROLLBACK when `next` (a ledger file read again) lacks an event of `held` (already verified here):
 * the ledger is append-only, so a file that lost events is an older copy or a forgery, never a new truth.
 */
export function requireNoRollback(path: string, held: LedgerState, next: LedgerState): void {
  let missing = 0
  let first: string | undefined
  for (const e of held.log) {
    if (next.has(e.idHex)) continue
    missing++
    first ??= `${e.event.type} ${e.idHex.slice(0, 12)}`
  }
  if (missing === 0) return
  throw new KinError(
    'LEDGER_ROLLBACK',
    `${path} went back: it lacks ${missing} of the ${held.log.length} events this device already verified (first missing: ${first}); ` +
      "the verified state stays in force. Restore the file from a backup of this device, or stop this process, move the file aside and run 'kin sync' to fetch the ledger from L0 again",
    { detail: { path, missing, held: held.log.length, found: next.log.length } },
  )
}

/** The device's local policy overrides from config.json (`policy`: maxHops, maxHeadAge, anchors as CNs, rules). */
export function localPolicyOf(config: HomeConfig): LocalPolicy | undefined {
  if (config.policy === undefined) return undefined
  const { maxHops, maxHeadAge, anchors, rules } = parsePolicyDocument(
    config.policy,
    'config.json "policy"',
    'BAD_ARGUMENT',
  )
  return {
    ...(maxHops !== undefined ? { maxHops } : {}),
    ...(maxHeadAge !== undefined ? { maxHeadAge } : {}),
    ...(anchors !== undefined ? { anchors } : {}),
    ...(rules !== undefined ? { rules } : {}),
  }
}

/**
 * The head a home's replica verified last (DIR/sync.cbor, written by `kin sync` or the follower of `kin serve`),
 * re-read when the file changes. Its signature is checked against the genesis' miner key; a file that does not
 * decode or verify counts as no head (fail closed: no freshness, no anchor).
 */
export class HomeHeadReader {
  readonly path: string
  #mark = ''
  #head: BlockHead | undefined = undefined

  constructor(dir: string) {
    this.path = join(dir, SYNC_FILE)
  }

  /** The held head, if the home keeps a verified one. */
  head(minerKey: Uint8Array | undefined): BlockHead | undefined {
    if (minerKey === undefined || !existsSync(this.path)) return undefined
    let mark: string
    try {
      const st = lstatSync(this.path)
      mark = `${st.ino}:${st.size}:${st.mtimeMs}`
    } catch {
      return undefined
    }
    if (mark === this.#mark) return this.#head
    this.#mark = mark
    this.#head = undefined
    try {
      const v = decodeCbor(readHomeFile(this.path), 1024)
      if (Array.isArray(v) && v.length === 3 && v[1] instanceof Uint8Array) {
        const head = decodeHead(v[1])
        if (verifyHeadSignature(nodeCrypto, head, minerKey)) this.#head = head
      }
    } catch {
      this.#head = undefined
    }
    return this.#head
  }
}

/** A home opened for access decisions. */
export interface AccessHome {
  home: Home
  config: HomeConfig
  cn: string
  certPem: string
  keyPem: string
  rootPem: string
  root: DeviceCertificate
  ledger: HomeLedgerFollower
  session: AccessSession
  /** The home's audit.log, when opened with `audit: true`. */
  audit: AuditLog | undefined
  /** The head the home's replica verified last (sync.cbor), if any: the anchor for bundles, the freshness for maxHeadAge. */
  heldHead(): BlockHead | undefined
  close(): Promise<void>
}

/**
 * Opens a home read-only for decisions (ledger followed on disk, not taken over); `audit` opens audit.log for
 * appending. `lastHeadTime` (default: the time of the head in sync.cbor) is the ledger's freshness for maxHeadAge.
 */
export async function openAccessHome(
  dir: string,
  options: {
    audit: boolean
    needKey: boolean
    lastHeadTime?: () => number | undefined
    /**
     * Where decisions read the ledger and its head when this process holds the ledger in memory (`kin serve`
     * following L0: its replica). The file is then watched only for the rollback alarm: a file swapped behind the
     * agent's back changes no decision, and what the follower adopts afterwards still counts.
     */
    inMemory?: { state: () => LedgerState; head: () => BlockHead | undefined }
  },
): Promise<AccessHome> {
  const home = new Home(dir)
  const config = home.readConfig()
  const rootPem = home.readText('root')
  const root = new DeviceCertificate(rootPem, { sha256: nodeCrypto.sha256 })
  const certPem = home.readText('cert')
  const keyPem = options.needKey ? home.readText('tlsKey') : ''
  const ledger = new HomeLedgerFollower(home.path('ledger'))
  const heads = new HomeHeadReader(home.dir)
  const inMemory = options.inMemory
  const heldHead = inMemory?.head ?? ((): BlockHead | undefined => heads.head(ledger.state().genesis?.body.minerKey))
  const session = new AccessSession({
    self: config.cn,
    root,
    pki: nodePki,
    sha256: nodeCrypto.sha256,
    clock: { now: () => Math.floor(Date.now() / 1000) },
    ledger: inMemory?.state ?? (() => ledger.state()),
    localPolicy: localPolicyOf(config),
    lastHeadTime: options.lastHeadTime ?? (() => heldHead()?.time),
  })
  const audit = options.audit ? await AuditLog.open(home.path('audit')) : undefined
  return {
    home,
    config,
    cn: config.cn,
    certPem,
    keyPem,
    rootPem,
    root,
    ledger,
    session,
    audit,
    heldHead,
    close: async () => {
      await audit?.close()
    },
  }
}

/** A session on the home's ledger merged with a verified proof bundle, for one decision. */
export interface BundleSession {
  session: AccessSession
  verified: VerifiedBundle
  /** Bundle events the home's ledger lacked and took; events refused in its context (e.g. a lost conflict). */
  merged: number
  refused: number
}

/**
 * Verifies a proof bundle the peer carries (DESIGN.md "Access decision" step 5) against the home's genesis and miner key,
 * and merges it into a throw-away copy of the home's ledger: every revocation the home knows still applies, and the
 * home's file is not touched. The bundle's head time counts as the last verified head (policy maxHeadAge). When the
 * home keeps a verified head (sync.cbor), the bundle's head must be it or be proven consistent with it (HEAD_UNPROVEN,
 * HEAD_FORK, HEAD_INCONSISTENT, HEAD_ROLLBACK otherwise); without one it is 'unanchored': its miner signature and
 * inclusion proofs are checked. Throws the bundle's coded refusal.
 */
export async function sessionWithBundle(device: AccessHome, bundleBytes: Uint8Array): Promise<BundleSession> {
  const state = device.ledger.state()
  if (state.genesis === undefined)
    throw new KinError('NO_GENESIS', `${device.home.path('ledger')} holds no genesis event`)
  const now = device.session.now()
  const verified = verifyBundle(
    nodeCrypto,
    bundleBytes,
    { minerKey: state.genesis.body.minerKey, genesisId: state.genesis.event.idHex, knownHead: device.heldHead() },
    now,
  )
  const merged = new Ledger(nodeCrypto)
  merged.ingestMany(state.log, { trustSignatures: true })
  const result = await mergeBundleInto(merged, verified)
  const session = new AccessSession({
    self: device.cn,
    root: device.root,
    pki: nodePki,
    sha256: nodeCrypto.sha256,
    clock: { now: () => now },
    ledger: () => merged.state,
    localPolicy: localPolicyOf(device.config),
    lastHeadTime: () => Math.max(verified.head.time, device.heldHead()?.time ?? 0),
  })
  return { session, verified, merged: result.accepted.length, refused: result.refused.length }
}

/** One readable line for a decision. */
export function describeDecision(d: Decision): string {
  const who = d.peer ?? '(unnamed peer)'
  const via =
    d.path.length > 0 ? ` via ${d.path.join(' → ')} (${d.hops} hops, common ancestor ${d.commonAncestor})` : ''
  return `${d.allow ? 'ALLOW' : `DENY ${d.code}`} "${d.action}" for ${who}${via}: ${d.reason}`
}
