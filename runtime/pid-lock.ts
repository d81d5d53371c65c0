/** @module Pid lock files: one process at a time writes a home's ledger (kin broker on L0's home; kin serve or kin sync --follow on a device's). */
import { closeSync, existsSync, statSync, unlinkSync, writeSync } from 'node:fs'
import { KinError } from '../agent/errors.ts'
import { CREATE_FLAGS, HOME_FILE_MODE, openHomeFileSync, readHomeFile } from './node/home-file.ts'

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM'
  }
}

/**
 * The pid of the live process holding the lock file at `path`, if any. With `ownPid: 'stale'` a lock naming this
 * process counts as left behind (a device home reopened in the same process); with 'holds' it is held.
 */
export function pidLockHolder(path: string, ownPid: 'holds' | 'stale' = 'stale'): number | undefined {
  if (!existsSync(path)) return undefined
  let pid: number
  try {
    pid = Number.parseInt(Buffer.from(readHomeFile(path)).toString('utf8'), 10)
  } catch {
    return undefined
  }
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined
  if (pid === process.pid) return ownPid === 'holds' ? pid : undefined
  return isAlive(pid) ? pid : undefined
}

/** How long a lock file may stay without a pid before it counts as left by a process that died mid-creation. */
const UNWRITTEN_LOCK_MS = 10_000

/**
 * What the existing lock file at `path` says: the pid of a live holder; 'unwritten' when it holds no pid yet and is
 * young (its holder is between its open and its write); 'gone' when it no longer exists; 'stale' when it was left by a
 * process that died (or holds no pid and is old, or this process's own pid with ownPid 'stale').
 */
function lockFileState(path: string, ownPid: 'holds' | 'stale'): number | 'unwritten' | 'gone' | 'stale' {
  let text: string
  let age: number
  try {
    text = Buffer.from(readHomeFile(path)).toString('utf8')
    age = Date.now() - statSync(path).mtimeMs
  } catch {
    return existsSync(path) ? 'stale' : 'gone'
  }
  if (text.trim() === '') return age < UNWRITTEN_LOCK_MS ? 'unwritten' : 'stale'
  const pid = Number.parseInt(text, 10)
  if (!Number.isSafeInteger(pid) || pid <= 0) return 'stale'
  if (pid === process.pid) return ownPid === 'holds' ? pid : 'stale'
  return isAlive(pid) ? pid : 'stale'
}

/**
 * Creates the lock file at `path` holding this process's pid and returns the release function. When a live
 * process holds it, throws `busy(pid)`; a lock left by a process that died is taken over.
 */
export function takePidLock(
  path: string,
  busy: (pid: number | undefined) => KinError,
  ownPid: 'holds' | 'stale' = 'stale',
): () => void {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openHomeFileSync(path, CREATE_FLAGS, HOME_FILE_MODE)
      writeSync(fd, `${process.pid}\n`)
      closeSync(fd)
      return () => {
        try {
          unlinkSync(path)
        } catch {
          /* already gone */
        }
      }
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST')
        throw new KinError('STORAGE_IO', `cannot create ${path}: ${(err as Error).message}`, { cause: err })
      const found = lockFileState(path, ownPid)
      // Released between the open and the look: try to create it again. Only a lock seen left behind is removed, never
      // one that may be another process's new lock.
      if (found === 'gone') continue
      if (typeof found === 'number' || found === 'unwritten') throw busy(typeof found === 'number' ? found : undefined)
      try {
        unlinkSync(path)
      } catch {
        /* raced with another remover */
      }
    }
  }
  throw busy(undefined)
}

/** Longest pause (ms) between two tries of a lock another process holds for a short change. */
const LOCK_POLL_MAX_MS = 50

/**
 * Runs `change` holding the lock file at `path`, for a short read-modify-write of a file several processes change.
 * A lock held by another live process is tried again (pauses of 2, 4, … up to LOCK_POLL_MAX_MS) for at most
 * `waitMs`; then `busy(pid)` is thrown. Synchronous: the change is a few file operations, not worth yielding for.
 */
export function withPidLock<T>(
  path: string,
  waitMs: number,
  busy: (pid: number | undefined) => KinError,
  change: () => T,
): T {
  const deadline = Date.now() + waitMs
  const pause = new Int32Array(new SharedArrayBuffer(4))
  let release: () => void
  for (let ms = 2; ; ms = Math.min(ms * 2, LOCK_POLL_MAX_MS)) {
    try {
      release = takePidLock(path, busy)
      break
    } catch (err) {
      if (!(err instanceof KinError) || err.code === 'STORAGE_IO' || Date.now() >= deadline) throw err
      Atomics.wait(pause, 0, 0, ms)
    }
  }
  try {
    return change()
  } finally {
    release()
  }
}
