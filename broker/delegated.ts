/**
 * @module L0's delegated-tier service (DESIGN.md "Small devices: three tiers", PROTOCOL.md §11.6): for every device
 * registered at flashing, the latest head MACed under the ledger key L0 shares with it, with inclusion proofs of the
 * events about the device and its ancestors — sent when a new head covers a new such event, and when the device
 * asks at boot (at most once per DELEGATED_REQUEST_INTERVAL_MS).
 */
import { existsSync, readFileSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { KinError } from '../agent/errors.ts'
import { fromHex, toHex } from '../agent/codec/bytes.ts'
import { writeFileDurable } from '../runtime/home.ts'
import { withPidLock } from '../runtime/pid-lock.ts'
import { labelFromBase32 } from '../agent/ledger/names.ts'
import type { BundleSource } from '../agent/ledger/bundle.ts'
import type { EncodedEvent } from '../agent/ledger/types.ts'
import type { FleetTopics } from '../agent/gossip/topics.ts'
import type { L0Logger } from './log.ts'
import {
  DELEGATED_HEADER_BYTES,
  DELEGATED_MAC_BYTES,
  MAX_DELEGATED_BYTES,
  MAX_DELEGATED_ENTRIES,
  MAX_DELEGATED_REQUEST_BYTES,
  encodeDelegatedHead,
  entryBytes,
  type DelegatedEntry,
} from './delegated-wire.ts'

/** File in L0's home naming the delegated-tier devices and their ledger keys (hex), written at flashing. */
export const DELEGATED_FILE = 'delegated.json'
/** Lock file in L0's home held while delegated.json is read, changed and written (by kin delegate). */
export const DELEGATED_LOCK_FILE = 'delegated.lock'
/** How long (ms) a registration waits for another process's to finish before STORAGE_BUSY. */
export const DELEGATED_LOCK_WAIT_MS = 10_000
/** Shortest interval (ms) between two answers to one device's boot requests; requests in between are dropped. */
export const DELEGATED_REQUEST_INTERVAL_MS = 10_000
/** Most messages one send holds (a lineage of 16 levels with a revoke and a policy each fits). */
export const MAX_DELEGATED_MESSAGES = 24

// The event types a delegated device learns from: who its ancestors are, who was revoked, what policy says.
const SENT_TYPES: ReadonlySet<string> = new Set(['authorize', 'revoke', 'policy'])

function damaged(path: string, why: string): KinError {
  return new KinError('STORAGE_DAMAGED', `${path} is damaged (${why}); register the delegated devices again`, {
    detail: { path },
  })
}

/** The delegated-tier devices of L0's home and the ledger key of each (the file is re-read when it changes). */
export class DelegatedRegistry {
  readonly path: string
  private keys = new Map<string, Uint8Array>()
  private readMtime = -1

  constructor(homeDir: string) {
    this.path = join(homeDir, DELEGATED_FILE)
  }

  /** Device CN → ledger key, as the file says now; STORAGE_DAMAGED when it is not a version 1 registry. */
  devices(): ReadonlyMap<string, Uint8Array> {
    const mtime = existsSync(this.path) ? statSync(this.path).mtimeMs : -1
    if (mtime === this.readMtime) return this.keys
    const keys = new Map<string, Uint8Array>()
    if (mtime >= 0) {
      let doc: { version?: unknown; devices?: unknown }
      try {
        doc = JSON.parse(readFileSync(this.path, 'utf8')) as typeof doc
      } catch (err) {
        throw damaged(this.path, (err as Error).message)
      }
      if (
        typeof doc !== 'object' ||
        doc === null ||
        doc.version !== 1 ||
        typeof doc.devices !== 'object' ||
        doc.devices === null
      )
        throw damaged(this.path, 'not a version 1 registry')
      for (const [cn, hex] of Object.entries(doc.devices as Record<string, unknown>)) {
        if (typeof hex !== 'string' || !/^[0-9a-f]{64}$/.test(hex))
          throw damaged(this.path, `the key of ${cn} is not 32 bytes of hex`)
        keys.set(cn, fromHex(hex))
      }
    }
    this.keys = keys
    this.readMtime = mtime
    return keys
  }

  /**
   * Registers device `cn` with its ledger key (delegated-wire.ts delegatedKeys), durably, and says whether it replaced
   * an earlier registration. The file is read again and written under the home's DELEGATED_LOCK_FILE, so two
   * processes registering at once both stay registered. With `replace: false` a device registered meanwhile is
   * refused (DELEGATED_REGISTERED); STORAGE_BUSY when the lock stays held DELEGATED_LOCK_WAIT_MS, STORAGE_IO when the
   * file cannot be written.
   */
  register(cn: string, ledgerKey: Uint8Array, opts: { replace?: boolean } = {}): boolean {
    if (ledgerKey.length !== 32) throw new RangeError(`"ledgerKey" expected 32 bytes, got ${ledgerKey.length}`)
    const lock = join(dirname(this.path), DELEGATED_LOCK_FILE)
    const busy = (pid: number | undefined) =>
      new KinError(
        'STORAGE_BUSY',
        `${lock} was held ${pid === undefined ? '' : `by pid ${pid} `}for ${DELEGATED_LOCK_WAIT_MS / 1000} s: another kin delegate is registering; try again`,
        { detail: { path: lock, pid: pid ?? null } },
      )
    return withPidLock(lock, DELEGATED_LOCK_WAIT_MS, busy, () => {
      // Read again under the lock: another process may have registered a device since this one last read.
      this.readMtime = -2
      const devices: Record<string, string> = {}
      for (const [c, k] of this.devices()) devices[c] = toHex(k)
      const replaced = devices[cn] !== undefined
      if (replaced && opts.replace === false)
        throw new KinError('DELEGATED_REGISTERED', `${cn} is already registered in ${this.path}`, {
          detail: { cn, path: this.path },
        })
      devices[cn] = toHex(ledgerKey)
      try {
        writeFileDurable(this.path, JSON.stringify({ version: 1, devices }, null, 1) + '\n', 0o600)
      } catch (err) {
        throw new KinError('STORAGE_IO', `cannot write ${this.path}: ${(err as Error).message}`, {
          cause: err,
          detail: { path: this.path },
        })
      }
      this.readMtime = -2
      return replaced
    })
  }
}

/** What the messages are built from: the miner's bundle source (its state, tree and last head). */
export type DelegatedSource = Pick<BundleSource, 'state' | 'tree' | 'head' | 'indexOf' | 'eventsAbout'>

function labelHexOf(cn: string): string {
  return toHex(labelFromBase32(cn.slice(0, cn.indexOf('.'))))
}

/** Hex labels of `cn` and its ancestors, from `cn` up to L0. */
export function lineageLabelHexes(source: DelegatedSource, cn: string): string[] {
  return source.state.lineage(cn).map(labelHexOf)
}

/**
 * The entries device `cn` is sent, in the order its ledger view can learn them: the authorize events of `cn`, its
 * parent, … up to L0's child (each names the next ancestor as its issuer), then the revoke and policy events about
 * any of them in log order. Only events the head covers.
 */
export function delegatedEntries(source: DelegatedSource, cn: string): DelegatedEntry[] {
  const { state, tree, head } = source
  const indexOf = source.indexOf ?? ((idHex: string) => state.log.findIndex(e => e.idHex === idHex))
  const lineage = lineageLabelHexes(source, cn)
  const wanted = new Set(lineage)
  const placed: { e: EncodedEvent; leafIndex: number; order: number }[] = []
  // The miner indexes events by subject; without it, one scan of the log.
  const about = source.eventsAbout
  const candidates = about === undefined ? state.log : lineage.flatMap(l => about(fromHex(l)))
  for (const e of candidates) {
    const subject = toHex(e.event.subject)
    if (!wanted.has(subject) || !SENT_TYPES.has(e.event.type)) continue
    const leafIndex = indexOf(e.idHex)
    if (leafIndex === undefined || leafIndex < 0 || leafIndex >= head.treeSize) continue
    // Authorize events climb the lineage (own first); the rest follow in log order.
    const order = e.event.type === 'authorize' ? lineage.indexOf(subject) - lineage.length : leafIndex
    placed.push({ e, leafIndex, order })
  }
  placed.sort((a, b) => a.order - b.order)
  return placed.map(({ e, leafIndex }) => ({
    leafIndex,
    eventBytes: e.bytes,
    proof: tree.inclusionProof(leafIndex, head.treeSize),
  }))
}

/**
 * The messages device `cn` is sent for the source's head, MACed under `ledgerKey`: entries packed in order, each
 * message within MAX_DELEGATED_BYTES. An entry too large for any message (a long policy) is left out and named in
 * `skipped`; a device then lacks that event, never a wrong one.
 */
export function delegatedMessages(
  source: DelegatedSource,
  cn: string,
  ledgerKey: Uint8Array,
): { messages: Uint8Array[]; skipped: number[] } {
  const head = { treeSize: source.head.treeSize, root: source.head.root, time: source.head.time }
  const room = MAX_DELEGATED_BYTES - DELEGATED_HEADER_BYTES - DELEGATED_MAC_BYTES
  const messages: Uint8Array[] = []
  const skipped: number[] = []
  let batch: DelegatedEntry[] = []
  let used = 0
  const flush = (): void => {
    if (batch.length > 0) messages.push(encodeDelegatedHead(ledgerKey, { ...head, entries: batch }))
    batch = []
    used = 0
  }
  for (const entry of delegatedEntries(source, cn)) {
    const size = entryBytes(entry)
    if (size > room) {
      skipped.push(entry.leafIndex)
      continue
    }
    if (used + size > room || batch.length === MAX_DELEGATED_ENTRIES) flush()
    batch.push(entry)
    used += size
  }
  flush()
  if (messages.length === 0) messages.push(encodeDelegatedHead(ledgerKey, { ...head, entries: [] }))
  return { messages: messages.slice(0, MAX_DELEGATED_MESSAGES), skipped }
}

/** What the service needs from L0. */
export interface DelegatedServiceOptions {
  registry: DelegatedRegistry
  topics: FleetTopics
  /** The miner's bundle source now (its last head); throws HEAD_MISSING before the first seal. */
  source: () => DelegatedSource
  publish: (topic: string, payload: Uint8Array) => Promise<void>
  log: L0Logger
  /** Milliseconds, for the request rate (default performance.now). */
  clockMs?: () => number
}

/** Sends delegated devices their heads: after each seal that concerns them, and on their boot requests. */
export class DelegatedService {
  private readonly opts: DelegatedServiceOptions
  private handledSize: number
  private readonly answered = new Map<string, number>()

  /** `sealedSize`: the tree size of the head already published when the service starts (its events are not new). */
  constructor(opts: DelegatedServiceOptions, sealedSize: number) {
    this.opts = opts
    this.handledSize = sealedSize
  }

  /** After a head was published: devices whose lineage a newly covered authorize, revoke or policy event is about get it. */
  async headSealed(): Promise<void> {
    const devices = this.opts.registry.devices()
    const source = this.opts.source()
    const from = this.handledSize
    this.handledSize = Math.max(from, source.head.treeSize)
    if (devices.size === 0 || source.head.treeSize <= from) return
    const subjects = new Set<string>()
    for (const e of source.state.log.slice(from, source.head.treeSize))
      if (SENT_TYPES.has(e.event.type)) subjects.add(toHex(e.event.subject))
    for (const [cn, key] of devices) {
      if (!source.state.currentBinding(cn)) continue
      if (lineageLabelHexes(source, cn).some(l => subjects.has(l))) await this.send(source, cn, key, 'head')
    }
  }

  /** A boot request on device `cn`'s request topic: answered with the latest head, within the rate and size limits. */
  async request(cn: string, payload: Uint8Array): Promise<void> {
    const { log, registry } = this.opts
    if (payload.length > MAX_DELEGATED_REQUEST_BYTES) {
      log('warn', 'delegated.refused', {
        cn,
        code: 'DECODE_OVERSIZE',
        message: `a request of ${payload.length} bytes (at most ${MAX_DELEGATED_REQUEST_BYTES})`,
      })
      return
    }
    const key = registry.devices().get(cn)
    if (key === undefined) {
      log('warn', 'delegated.refused', {
        cn,
        code: 'DELEGATED_NOT_REGISTERED',
        message: `${cn} is not registered as a delegated-tier device in ${registry.path}`,
      })
      return
    }
    const now = (this.opts.clockMs ?? (() => performance.now()))()
    const last = this.answered.get(cn)
    if (last !== undefined && now - last < DELEGATED_REQUEST_INTERVAL_MS) {
      log('warn', 'delegated.refused', {
        cn,
        code: 'QUOTA_RATE',
        message: `answered ${Math.round(now - last)} ms ago; one answer per ${DELEGATED_REQUEST_INTERVAL_MS} ms`,
      })
      return
    }
    this.answered.set(cn, now)
    await this.send(this.opts.source(), cn, key, 'request')
  }

  private async send(source: DelegatedSource, cn: string, key: Uint8Array, why: 'head' | 'request'): Promise<void> {
    const { messages, skipped } = delegatedMessages(source, cn, key)
    for (const m of messages) await this.opts.publish(this.opts.topics.delegatedHead(cn), m)
    this.opts.log('info', 'delegated.sent', {
      cn,
      why,
      treeSize: source.head.treeSize,
      messages: messages.length,
      bytes: messages.reduce((n, m) => n + m.length, 0),
    })
    if (skipped.length > 0)
      this.opts.log('warn', 'delegated.refused', {
        cn,
        code: 'DELEGATED_OVERSIZE',
        message: `events at leaves ${skipped.join(', ')} do not fit a ${MAX_DELEGATED_BYTES}-byte message`,
        leaves: skipped,
      })
  }
}
