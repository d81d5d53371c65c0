/** @module Node storage: append-only files under one directory, fsync before every acknowledgement, group commit. */
import { open, rename, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { KinError } from '../../agent/errors.ts'
import type { AppendFile, Storage } from '../../agent/ports/platform.ts'
import { APPEND_FLAGS, CREATE_FLAGS, HOME_FILE_MODE, READ_FLAGS, ensurePrivateDir, openHomeFile } from './home-file.ts'

// A home's files are the device's own (DESIGN.md "Storage"): 0600 in a 0700 directory, set explicitly whatever the
// umask; opened without following symlinks, and only when they are regular files.
const FILE_MODE = HOME_FILE_MODE
const NAME_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/

interface PendingAppend {
  bytes: Uint8Array
  resolve: () => void
  reject: (err: unknown) => void
}

interface PendingOp {
  run: () => Promise<unknown>
  resolve: (value: unknown) => void
  reject: (err: unknown) => void
}

function ioError(what: string, path: string, cause: unknown): KinError {
  const msg = cause instanceof Error ? cause.message : String(cause)
  return new KinError('STORAGE_IO', `${what} ${path}: ${msg}`, { cause, detail: { path } })
}

function isCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code
}

async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done)
    done += bytesWritten
  }
}

/** fsync of a directory: makes a created or renamed entry in it durable. */
async function syncDirectory(dir: string): Promise<void> {
  const d = await open(dir, 'r')
  try {
    await d.sync()
  } finally {
    await d.close()
  }
}

function concatQueued(batch: PendingAppend[]): Uint8Array {
  if (batch.length === 1) return batch[0]!.bytes
  let n = 0
  for (const p of batch) n += p.bytes.length
  const out = new Uint8Array(n)
  let o = 0
  for (const p of batch) {
    out.set(p.bytes, o)
    o += p.bytes.length
  }
  return out
}

/**
 * One open append-only file. Every operation goes through one queue in call order. Appends that queue up
 * while a write and fsync are in flight are written together and share the next fsync (group commit);
 * each still resolves only after its own bytes are durable. After any I/O failure the file refuses
 * everything: what reached the disk is unknown (a failed fsync may have dropped dirty pages), so only a
 * reopen, which frames the file again, may go on.
 */
class NodeAppendFile implements AppendFile {
  private readonly dir: string
  private readonly path: string
  private readonly release: () => void
  private fh: FileHandle
  private readonly queue: Array<PendingAppend | PendingOp> = []
  private draining = false
  private closed = false
  private failure: KinError | undefined = undefined

  constructor(dir: string, path: string, fh: FileHandle, release: () => void) {
    this.dir = dir
    this.path = path
    this.fh = fh
    this.release = release
  }

  size(): Promise<number> {
    return this.enqueueOp(async () => (await this.fh.stat()).size)
  }

  read(): Promise<Uint8Array> {
    return this.enqueueOp(async () => {
      const fh = await openHomeFile(this.path, READ_FLAGS)
      try {
        const b = await fh.readFile()
        return new Uint8Array(b.buffer, b.byteOffset, b.length)
      } finally {
        await fh.close()
      }
    })
  }

  append(bytes: Uint8Array): Promise<void> {
    if (!(bytes instanceof Uint8Array))
      return Promise.reject(new KinError('BAD_ARGUMENT', '"bytes" expected Uint8Array'))
    if (this.failure !== undefined) return Promise.reject(this.failure)
    // Copied now: the caller may reuse its buffer before the write happens.
    const copy = bytes.slice()
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ bytes: copy, resolve, reject })
      this.kick()
    })
  }

  replace(bytes: Uint8Array): Promise<void> {
    if (!(bytes instanceof Uint8Array))
      return Promise.reject(new KinError('BAD_ARGUMENT', '"bytes" expected Uint8Array'))
    const copy = bytes.slice()
    return this.enqueueOp(() => this.replaceNow(copy))
  }

  close(): Promise<void> {
    // Closing a failed file is a no-op: fail() already let go of the handle.
    if (this.closed || this.failure !== undefined) return Promise.resolve()
    this.closed = true
    return this.enqueueOp(async () => {
      this.failure = new KinError('STORAGE_IO', `${this.path} is closed`)
      this.release()
      await this.fh.close()
    })
  }

  private enqueueOp<T>(run: () => Promise<T>): Promise<T> {
    if (this.failure !== undefined) return Promise.reject(this.failure)
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run, resolve: resolve as (v: unknown) => void, reject })
      this.kick()
    })
  }

  private kick(): void {
    if (this.draining) return
    this.draining = true
    // Deferred by a microtask, so that appends issued in the same turn form one batch and one fsync.
    queueMicrotask(() => {
      void this.drain()
    })
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const head = this.queue[0]!
      if ('run' in head) {
        this.queue.shift()
        await this.runOp(head)
        continue
      }
      let k = 0
      while (k < this.queue.length && !('run' in this.queue[k]!)) k++
      const batch = this.queue.splice(0, k) as PendingAppend[]
      await this.commit(batch)
    }
    this.draining = false
  }

  private async runOp(op: PendingOp): Promise<void> {
    if (this.failure !== undefined) {
      op.reject(this.failure)
      return
    }
    try {
      op.resolve(await op.run())
    } catch (err) {
      this.fail(err instanceof KinError ? err : ioError('I/O failed on', this.path, err))
      op.reject(this.failure)
    }
  }

  private async commit(batch: PendingAppend[]): Promise<void> {
    if (this.failure !== undefined) {
      for (const p of batch) p.reject(this.failure)
      return
    }
    try {
      await writeAll(this.fh, concatQueued(batch))
      // fdatasync flushes the data and the new file size, which is all an append changes.
      await this.fh.datasync()
    } catch (err) {
      this.fail(ioError('append failed on', this.path, err))
      for (const p of batch) p.reject(this.failure)
      return
    }
    for (const p of batch) p.resolve()
  }

  private fail(err: KinError): void {
    if (this.failure === undefined) {
      this.failure = err
      this.release()
      this.fh.close().catch(() => undefined)
    }
  }

  /** Atomic replacement: write `<name>.tmp`, fsync it, rename it over the file, fsync the directory. */
  private async replaceNow(bytes: Uint8Array): Promise<void> {
    const tmp = this.path + '.tmp'
    try {
      await unlink(tmp).catch(err => {
        if (!isCode(err, 'ENOENT')) throw err
      })
      const t = await openHomeFile(tmp, CREATE_FLAGS, FILE_MODE)
      try {
        await t.chmod(FILE_MODE)
        await writeAll(t, bytes)
        await t.sync()
      } finally {
        await t.close()
      }
      await rename(tmp, this.path)
      await syncDirectory(this.dir)
      const old = this.fh
      // The old handle points at the replaced inode; appends must go to the new one.
      this.fh = await openHomeFile(this.path, APPEND_FLAGS, FILE_MODE)
      await old.close()
    } catch (err) {
      await unlink(tmp).catch(() => undefined)
      throw err instanceof KinError ? err : ioError('replace failed on', this.path, err)
    }
  }
}

async function openFile(dir: string, name: string, release: () => void): Promise<AppendFile> {
  const path = join(dir, name)
  try {
    ensurePrivateDir(dir)
    // A leftover .tmp is a replacement that crashed before its rename: the file itself is still intact.
    await unlink(path + '.tmp').catch(err => {
      if (!isCode(err, 'ENOENT')) throw err
    })
    let fh: FileHandle
    try {
      fh = await openHomeFile(path, CREATE_FLAGS, FILE_MODE)
    } catch (err) {
      if (!isCode(err, 'EEXIST')) throw err
      fh = await openHomeFile(path, APPEND_FLAGS, FILE_MODE)
      return new NodeAppendFile(dir, path, fh, release)
    }
    try {
      await fh.chmod(FILE_MODE)
      // The new directory entry must be durable too, or a crash could lose the whole file.
      await syncDirectory(dir)
    } catch (err) {
      await fh.close().catch(() => undefined)
      throw err
    }
    return new NodeAppendFile(dir, path, fh, release)
  } catch (err) {
    release()
    throw err instanceof KinError ? err : ioError('cannot open', path, err)
  }
}

/**
 * Storage in directory `dir` (created if absent). Names are plain file names; one open handle per name at
 * a time in this storage (a second open before close throws STORAGE_BUSY).
 */
export function nodeStorage(dir: string): Storage {
  if (typeof dir !== 'string' || dir.length === 0) throw new KinError('BAD_ARGUMENT', '"dir" expected a non-empty path')
  const openNames = new Set<string>()
  return {
    async openAppendFile(name: string): Promise<AppendFile> {
      if (typeof name !== 'string' || !NAME_PATTERN.test(name) || name.endsWith('.tmp')) {
        throw new KinError(
          'BAD_ARGUMENT',
          `"name" expected a plain file name (letters, digits, . _ -; not .tmp), got ${JSON.stringify(name)}`,
        )
      }
      if (openNames.has(name)) throw new KinError('STORAGE_BUSY', `${name} is already open in this storage`)
      openNames.add(name)
      return openFile(dir, name, () => {
        openNames.delete(name)
      })
    },
  }
}
