/** @module A keyed record store kept as a snapshot plus an append-only journal of changes, each fsynced before it counts. */
import { closeSync, constants, existsSync, fdatasync, fdatasyncSync, readFileSync, writeSync } from 'node:fs'
import { promisify } from 'node:util'
import { KinError } from '../agent/errors.ts'
import { writeFileDurable } from '../runtime/home.ts'
import { APPEND_FLAGS, openHomeFileSync } from '../runtime/node/home-file.ts'

// Never O_CREAT: a journal gone from under its store fails the append (then compacts) rather than growing headless.
const JOURNAL_APPEND_FLAGS = APPEND_FLAGS & ~constants.O_CREAT

const fdatasyncAsync = promisify(fdatasync)

/** Journal entries allowed beyond twice the live records before the store compacts (a small store never does). */
export const JOURNAL_COMPACT_FLOOR = 1024

/** One change in the journal: a record set whole under its key, or a key dropped. */
export type JournalChange<R> = { set: R } | { del: string }

/** What a store of records of type R needs to know about them. */
export interface JournalFormat<R> {
  /** Name of the record array in the snapshot (`invites`, `certificates`): the same as in the version 1 file. */
  readonly field: string
  /** The record's key (an invite id, a certificate hash). */
  key(r: R): string
  /** Checks one record read from disk; throws (STORAGE_DAMAGED) when it is not one. */
  read(v: unknown, where: string): R
  /** The coded error for a damaged file. */
  damaged(path: string, why: string, cause?: unknown): KinError
}

/** Changes waiting for a group commit, and how their caller is answered. */
interface Waiting<R> {
  changes: JournalChange<R>[]
  resolve: () => void
  reject: (err: unknown) => void
}

/** The batch a group commit has written and is fsyncing; `settled` once memory holds it. */
interface Flight<R> {
  batch: Waiting<R>[]
  settled: boolean
}

/** The records read back from a snapshot and its journal, and what was found on the way. */
export interface JournalState<R> {
  records: Map<string, R>
  /** Generation of the snapshot (0: none yet, or the version 1 file of before the journal). */
  generation: number
  /** Changes in the journal of this generation. */
  entries: number
  /** Whether the snapshot is still the version 1 file (migrated at open). */
  legacy: boolean
  /** A last line cut short by a power loss mid-append, ignored (its change never counted). */
  tornTail?: string
  /** Generation the journal continues (undefined: no journal); older than `generation`: stale, skipped. */
  journalGeneration?: number
}

/** The journal's file name beside its snapshot: `invites.json` → `invites.journal`. */
export function journalPathOf(snapshotPath: string): string {
  return snapshotPath.replace(/\.json$/, '') + '.journal'
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function readSnapshot<R>(
  path: string,
  f: JournalFormat<R>,
): { records: Map<string, R>; generation: number; legacy: boolean } {
  const records = new Map<string, R>()
  if (!existsSync(path)) return { records, generation: 0, legacy: false }
  let doc: unknown
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw f.damaged(path, (err as Error).message, err)
  }
  const list = isObject(doc) ? doc[f.field] : undefined
  const version = isObject(doc) ? doc.version : undefined
  const generation = version === 1 ? 0 : isObject(doc) ? doc.generation : undefined
  if (!Array.isArray(list) || (version !== 1 && version !== 2) || !Number.isSafeInteger(generation))
    throw f.damaged(path, 'not a version 1 or 2 file')
  for (const v of list) {
    const r = f.read(v, path)
    records.set(f.key(r), r)
  }
  return { records, generation: generation as number, legacy: version === 1 }
}

function applyLine<R>(records: Map<string, R>, f: JournalFormat<R>, v: unknown, where: string): void {
  if (isObject(v) && 'set' in v && Object.keys(v).length === 1) {
    const r = f.read(v.set, where)
    records.set(f.key(r), r)
  } else if (isObject(v) && typeof v.del === 'string' && Object.keys(v).length === 1) {
    records.delete(v.del)
  } else throw f.damaged(where, `not a journal change: ${JSON.stringify(v).slice(0, 80)}`)
}

/**
 * Reads the snapshot at `path` and replays its journal over it, changing nothing on disk. The journal's first line
 * names the generation it continues; one older than the snapshot's is left from a compaction cut short (its
 * changes are all in the snapshot) and is skipped. A last line cut short is reported as `tornTail`; any other bad
 * line, or a journal newer than its snapshot, throws the format's STORAGE_DAMAGED.
 */
export function readJournalState<R>(path: string, f: JournalFormat<R>): JournalState<R> {
  const snap = readSnapshot(path, f)
  const jpath = journalPathOf(path)
  const state: JournalState<R> = { ...snap, entries: 0 }
  if (!existsSync(jpath)) return state
  const text = readFileSync(jpath, 'utf8')
  const lines = text.split('\n')
  // The text after the last newline is either empty or an append cut short.
  const tail = lines.pop() as string
  if (tail !== '') state.tornTail = tail
  if (lines.length === 0) return state
  let header: unknown
  try {
    header = JSON.parse(lines[0] as string)
  } catch (err) {
    throw f.damaged(jpath, `line 1: ${(err as Error).message}`, err)
  }
  if (!isObject(header) || header.journal !== 1 || !Number.isSafeInteger(header.generation))
    throw f.damaged(jpath, 'line 1 is not a journal header')
  const gen = header.generation as number
  state.journalGeneration = gen
  if (gen < snap.generation) return { ...state, tornTail: undefined }
  if (gen > snap.generation)
    throw f.damaged(jpath, `journal generation ${gen} is newer than its snapshot's (${snap.generation})`)
  for (let i = 1; i < lines.length; i++) {
    let v: unknown
    try {
      v = JSON.parse(lines[i] as string)
    } catch (err) {
      throw f.damaged(jpath, `line ${i + 1}: ${(err as Error).message}`, err)
    }
    applyLine(state.records, f, v, `${jpath} line ${i + 1}`)
  }
  state.entries = lines.length - 1
  return state
}

/**
 * The records of the store at `path` as another process sees them while its owner may be writing, changing nothing
 * on disk: read again when the read crossed a compaction (a journal newer than the snapshot read before it).
 */
export function readJournalRecords<R>(path: string, f: JournalFormat<R>): R[] {
  for (let attempt = 1; ; attempt++) {
    try {
      return [...readJournalState(path, f).records.values()]
    } catch (err) {
      if (attempt >= 3 || !(err instanceof KinError) || err.code !== 'STORAGE_DAMAGED') throw err
    }
  }
}

/**
 * A store of keyed records of one owner process (L0): the snapshot (written atomically) plus the journal, one JSON
 * line per change, written and fsynced before the change takes effect in memory. Each append opens the journal by
 * name, so another opener's compaction (a new journal under the same name) never strands the owner's writes.
 */
export class JournalFile<R> {
  readonly path: string
  readonly journalPath: string
  /** A last line cut short found at open (dropped by the compaction at open). */
  readonly tornTail: string | undefined
  private readonly format: JournalFormat<R>
  private readonly floor: number
  private records: Map<string, R>
  private generation: number
  private entries: number
  // Set when an append failed part-way: the journal may end in a partial line, so the next change compacts first.
  private suspect = false
  // Group commit (applyGrouped): changes waiting for the next flush, the batch being fsynced, whether a flush runs.
  private waiting: Waiting<R>[] = []
  private flight: Flight<R> | undefined
  private flushing = false
  private flushes = 0

  private constructor(path: string, format: JournalFormat<R>, state: JournalState<R>, floor: number) {
    this.path = path
    this.journalPath = journalPathOf(path)
    this.format = format
    this.floor = floor
    this.records = state.records
    this.generation = state.generation
    this.entries = state.entries
    this.tornTail = state.tornTail
  }

  /**
   * Opens the store at `path` (none yet: empty). A version 1 file, a torn last line or a journal to be shortened is
   * compacted at once; a store already compact is left untouched. Later it compacts when the journal holds more
   * than twice the live records plus `floor` changes. STORAGE_DAMAGED as readJournalState says.
   */
  static open<R>(path: string, format: JournalFormat<R>, floor = JOURNAL_COMPACT_FLOOR): JournalFile<R> {
    const state = readJournalState(path, format)
    const store = new JournalFile(path, format, state, floor)
    const alreadyCompact =
      state.generation > 0 &&
      state.journalGeneration === state.generation &&
      state.tornTail === undefined &&
      state.entries === 0
    if (!alreadyCompact) store.compact()
    return store
  }

  /** Changes in the journal since the last compaction. */
  get journalEntries(): number {
    return this.entries
  }

  /** The live records (the caller must not change them). */
  get map(): ReadonlyMap<string, R> {
    return this.records
  }

  /** fdatasync calls made by group commits so far (each covering every change that waited for it). */
  get groupFlushes(): number {
    return this.flushes
  }

  /**
   * The record under `key` as it will be once the changes waiting for a group commit are durable: what a check
   * before a change must read, so two changes in flight at once are refused as if they came one after the other.
   */
  latest(key: string): R | undefined {
    const pending = [...(this.flight?.settled === false ? this.flight.batch : []), ...this.waiting]
    for (let i = pending.length - 1; i >= 0; i--) {
      const cs = pending[i]!.changes
      for (let j = cs.length - 1; j >= 0; j--) {
        const c = cs[j]!
        if ('set' in c ? this.format.key(c.set) === key : c.del === key) return 'set' in c ? c.set : undefined
      }
    }
    return this.records.get(key)
  }

  /** Every record as latest(key) reads it: the live records with the changes waiting for a group commit applied. */
  latestRecords(): R[] {
    if (this.waiting.length === 0 && this.flight?.settled !== false) return [...this.records.values()]
    const out = new Map(this.records)
    for (const w of [...(this.flight?.settled === false ? this.flight.batch : []), ...this.waiting])
      for (const c of w.changes) {
        if ('set' in c) out.set(this.format.key(c.set), c.set)
        else out.delete(c.del)
      }
    return [...out.values()]
  }

  /** Applies changes durably: one journal line each, fsynced, then memory. STORAGE_IO when the disk refuses. */
  apply(changes: JournalChange<R>[]): void {
    if (changes.length === 0) return
    // A group commit's lines written but not yet known durable: made durable and counted first, so memory follows
    // the journal's order and a compaction below never drops them.
    if (this.flight?.settled === false) this.settleFlightNow()
    if (this.suspect) this.compact()
    this.writeDurably(changes)
    this.applyToMemory(changes)
  }

  /**
   * Applies changes durably like apply, without holding the event loop in fsync: the changes of every caller that
   * arrives while one fdatasync is under way are written together and covered by the next single fdatasync (group
   * commit). Resolves once the caller's lines are durable and memory holds them; rejects STORAGE_IO (memory
   * unchanged) when the disk refuses. Read latest(key) before a change to see the changes still waiting.
   */
  applyGrouped(changes: JournalChange<R>[]): Promise<void> {
    if (changes.length === 0) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ changes, resolve, reject })
      if (this.flushing) return
      this.flushing = true
      // Callers in the same tick share the first flush; later ones wait for the one under way and share the next.
      queueMicrotask(() => void this.flush())
    })
  }

  private async flush(): Promise<void> {
    try {
      while (this.waiting.length > 0) {
        const flight: Flight<R> = { batch: this.waiting.splice(0), settled: false }
        const changes = flight.batch.flatMap(w => w.changes)
        try {
          if (this.suspect) this.compact()
          const fd = openHomeFileSync(this.journalPath, JOURNAL_APPEND_FLAGS)
          try {
            this.flight = flight
            writeAll(fd, changes)
            this.flushes++
            await fdatasyncAsync(fd)
          } finally {
            closeSync(fd)
          }
        } catch (err) {
          // Settled meanwhile by a synchronous apply's fsync: durable and counted, whatever this fsync said.
          if (!flight.settled) {
            this.flight = undefined
            this.suspect = true
            const refusal = this.ioError(this.journalPath, err)
            for (const w of flight.batch) w.reject(refusal)
            continue
          }
        }
        this.flight = undefined
        if (!flight.settled) {
          flight.settled = true
          this.applyToMemory(changes)
        }
        for (const w of flight.batch) w.resolve()
      }
    } finally {
      this.flushing = false
    }
  }

  // The flight's lines are in the journal file: one fdatasync of it makes them durable, then memory counts them.
  private settleFlightNow(): void {
    const flight = this.flight!
    try {
      const fd = openHomeFileSync(this.journalPath, JOURNAL_APPEND_FLAGS)
      try {
        fdatasyncSync(fd)
      } finally {
        closeSync(fd)
      }
    } catch (err) {
      this.suspect = true
      throw this.ioError(this.journalPath, err)
    }
    flight.settled = true
    this.applyToMemory(flight.batch.flatMap(w => w.changes))
  }

  private writeDurably(changes: JournalChange<R>[]): void {
    try {
      const fd = openHomeFileSync(this.journalPath, JOURNAL_APPEND_FLAGS)
      try {
        writeAll(fd, changes)
        fdatasyncSync(fd)
      } finally {
        closeSync(fd)
      }
    } catch (err) {
      this.suspect = true
      throw this.ioError(this.journalPath, err)
    }
  }

  private applyToMemory(changes: JournalChange<R>[]): void {
    for (const c of changes) {
      if ('set' in c) this.records.set(this.format.key(c.set), c.set)
      else this.records.delete(c.del)
    }
    this.entries += changes.length
    // Never while a group commit's lines are unsettled: the new journal would drop them.
    if (this.entries > 2 * this.records.size + this.floor && this.flight?.settled !== false) {
      try {
        this.compact()
      } catch {
        // The change is durable in the journal already; the next change retries the compaction.
        this.suspect = true
      }
    }
  }

  // The snapshot of the next generation first, then its empty journal: a crash between the two leaves the older
  // journal, which readJournalState skips as stale.
  private compact(): void {
    // Until both files are written, appends would land in a journal replay skips: the next change compacts again.
    this.suspect = true
    const next = this.generation + 1
    const doc = { version: 2, generation: next, [this.format.field]: [...this.records.values()] }
    try {
      writeFileDurable(this.path, JSON.stringify(doc, null, 1) + '\n', 0o600)
    } catch (err) {
      throw this.ioError(this.path, err)
    }
    this.generation = next
    try {
      writeFileDurable(this.journalPath, JSON.stringify({ journal: 1, generation: next }) + '\n', 0o600)
    } catch (err) {
      throw this.ioError(this.journalPath, err)
    }
    this.entries = 0
    this.suspect = false
  }

  private ioError(path: string, err: unknown): KinError {
    return new KinError('STORAGE_IO', `cannot write ${path}: ${(err as Error).message}`, {
      cause: err,
      detail: { path },
    })
  }
}

// One write of every change's line; a short write continues where it stopped.
function writeAll<R>(fd: number, changes: JournalChange<R>[]): void {
  const bytes = Buffer.from(changes.map(c => JSON.stringify(c) + '\n').join(''), 'utf8')
  let at = 0
  while (at < bytes.length) at += writeSync(fd, bytes, at, bytes.length - at)
}
