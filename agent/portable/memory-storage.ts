/** @module Memory storage for the simulator and tests: the same append-only semantics as node, plus simulated power loss. */
import { KinError } from '../errors.ts'
import type { AppendFile, Storage } from '../ports/platform.ts'

/** Storage kept in memory, with its files in view and a way to simulate a crash in the middle of an append. */
export interface MemoryStorage extends Storage {
  /** Durable content by name. Tests may read it, or set an entry to plant damage; appends continue from what is there. */
  readonly files: Map<string, Uint8Array>
  /**
   * Simulates power loss during the next append to `name`: only its first `keep` bytes reach storage, that
   * append rejects with STORAGE_IO, and the handle dies (every later operation on it rejects) as the process
   * would; reopen the name to recover.
   */
  tearNextAppend(name: string, keep: number): void
}

/** A growable buffer per file, so that a long run of appends costs amortized O(bytes), not O(file) each. */
interface Slot {
  buf: Uint8Array
  length: number
  view: Uint8Array
}

function adopt(bytes: Uint8Array): Slot {
  const buf = new Uint8Array(Math.max(64, bytes.length * 2))
  buf.set(bytes)
  return { buf, length: bytes.length, view: buf.subarray(0, bytes.length) }
}

class MemoryAppendFile implements AppendFile {
  private readonly storage: MemoryStore
  private readonly name: string
  private failure: KinError | undefined = undefined

  constructor(storage: MemoryStore, name: string) {
    this.storage = storage
    this.name = name
  }

  size(): Promise<number> {
    return this.guard(() => this.storage.slot(this.name).length)
  }

  read(): Promise<Uint8Array> {
    return this.guard(() => this.storage.slot(this.name).view.slice())
  }

  append(bytes: Uint8Array): Promise<void> {
    return this.guard(() => {
      if (!(bytes instanceof Uint8Array)) throw new KinError('BAD_ARGUMENT', '"bytes" expected Uint8Array')
      const keep = this.storage.takeTear(this.name)
      if (keep === undefined) {
        this.storage.write(this.name, bytes)
        return
      }
      this.storage.write(this.name, bytes.subarray(0, Math.min(keep, bytes.length)))
      this.die(new KinError('STORAGE_IO', `simulated power loss while appending to ${this.name}`))
      throw this.failure
    })
  }

  replace(bytes: Uint8Array): Promise<void> {
    return this.guard(() => {
      if (!(bytes instanceof Uint8Array)) throw new KinError('BAD_ARGUMENT', '"bytes" expected Uint8Array')
      this.storage.files.set(this.name, bytes.slice())
    })
  }

  close(): Promise<void> {
    if (this.failure === undefined) this.die(new KinError('STORAGE_IO', `${this.name} is closed`))
    return Promise.resolve()
  }

  private die(err: KinError): void {
    this.failure = err
    this.storage.release(this.name)
  }

  // Every operation takes effect at call time, so call order is storage order; the promise settles later, as on disk.
  private guard<T>(op: () => T): Promise<T> {
    if (this.failure !== undefined) return Promise.reject(this.failure)
    try {
      return Promise.resolve(op())
    } catch (err) {
      return Promise.reject(err)
    }
  }
}

class MemoryStore implements MemoryStorage {
  readonly files: Map<string, Uint8Array> = new Map()
  private readonly slots: Map<string, Slot> = new Map()
  private readonly tears: Map<string, number> = new Map()
  private readonly openNames: Set<string> = new Set()

  async openAppendFile(name: string): Promise<AppendFile> {
    if (typeof name !== 'string' || name.length === 0)
      throw new KinError('BAD_ARGUMENT', '"name" expected a non-empty string')
    if (this.openNames.has(name)) throw new KinError('STORAGE_BUSY', `${name} is already open in this storage`)
    this.openNames.add(name)
    if (!this.files.has(name)) this.files.set(name, new Uint8Array(0))
    return new MemoryAppendFile(this, name)
  }

  tearNextAppend(name: string, keep: number): void {
    if (!Number.isInteger(keep) || keep < 0)
      throw new KinError('BAD_ARGUMENT', `"keep" expected a non-negative integer, got ${keep}`)
    this.tears.set(name, keep)
  }

  /** The file's buffer, re-adopted when a test has set `files` directly since the last write. */
  slot(name: string): Slot {
    const current = this.files.get(name) ?? new Uint8Array(0)
    let s = this.slots.get(name)
    if (s === undefined || s.view !== current) {
      s = adopt(current)
      this.slots.set(name, s)
      this.files.set(name, s.view)
    }
    return s
  }

  write(name: string, bytes: Uint8Array): void {
    const s = this.slot(name)
    const need = s.length + bytes.length
    if (need > s.buf.length) {
      const grown = new Uint8Array(Math.max(need, s.buf.length * 2))
      grown.set(s.buf.subarray(0, s.length))
      s.buf = grown
    }
    s.buf.set(bytes, s.length)
    s.length = need
    s.view = s.buf.subarray(0, need)
    this.files.set(name, s.view)
  }

  takeTear(name: string): number | undefined {
    const keep = this.tears.get(name)
    this.tears.delete(name)
    return keep
  }

  release(name: string): void {
    this.openNames.delete(name)
  }
}

/** Fresh, empty memory storage. */
export function memoryStorage(): MemoryStorage {
  return new MemoryStore()
}
