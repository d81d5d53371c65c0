/** @module A new home built in a sibling staging directory and renamed into place: it appears whole or not at all. */
import {
  chmodSync,
  closeSync,
  constants,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
} from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { KinError } from '../agent/errors.ts'
import { HOME_DIR_MODE, READ_FLAGS, openHomeFileSync } from './node/home-file.ts'

// `.DIR.enrolling-<pid>` next to DIR: same file system (so rename(2) is atomic), hidden, and named for its writer.
const STAGING_MARK = '.enrolling-'

function errCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as { code?: string }).code : undefined
}

/** The staging directory process `pid` builds `dir` in. */
export function stagingDirOf(dir: string, pid: number = process.pid): string {
  return join(dirname(dir), `.${basename(dir)}${STAGING_MARK}${pid}`)
}

// Signal 0 checks existence only; EPERM means a process of another user holds the pid: alive.
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return errCode(err) === 'EPERM'
  }
}

/**
 * Removes the staging directories of `dir` left by runs that were killed (SIGKILL, power loss) and returns their
 * paths. One whose process still runs is another enrollment into the same DIR: STORAGE_BUSY. A staging name that
 * is not a directory of this user is left alone: HOME_UNSAFE, with what to do.
 */
export function clearStaleStaging(dir: string): string[] {
  const parent = dirname(dir)
  const prefix = `.${basename(dir)}${STAGING_MARK}`
  let names: string[]
  try {
    names = readdirSync(parent)
  } catch (err) {
    if (errCode(err) === 'ENOENT') return []
    throw err
  }
  const removed: string[] = []
  for (const name of names) {
    if (!name.startsWith(prefix)) continue
    const path = join(parent, name)
    const pidText = name.slice(prefix.length)
    const pid = /^[1-9][0-9]{0,9}$/.test(pidText) ? Number(pidText) : undefined
    if (pid !== undefined && pid !== process.pid && processAlive(pid)) {
      throw new KinError(
        'STORAGE_BUSY',
        `another 'kin enroll' (pid ${pid}) is writing ${dir} in ${path}; wait for it to finish. If no enrollment runs (the pid was reused), remove ${path} and try again`,
        { detail: { path, pid } },
      )
    }
    const st = lstatSync(path)
    const uid = typeof process.getuid === 'function' ? process.getuid() : st.uid
    if (!st.isDirectory() || st.uid !== uid) {
      throw new KinError(
        'HOME_UNSAFE',
        `${path} is named like an interrupted enrollment of ${dir} but is not a directory of this user; look at it, remove it, and try again`,
        { detail: { path } },
      )
    }
    rmSync(path, { recursive: true, force: true })
    removed.push(path)
  }
  return removed
}

/** Creates this process's staging directory for `dir`, mode 0700 whatever the umask (missing parents 0700 too). */
export function createStaging(dir: string): string {
  mkdirSync(dirname(dir), { recursive: true, mode: HOME_DIR_MODE })
  const staging = stagingDirOf(dir)
  mkdirSync(staging, { mode: HOME_DIR_MODE })
  chmodSync(staging, HOME_DIR_MODE)
  return staging
}

function fsyncDir(path: string): void {
  const fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW)
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

// Files first, then their directory: after a crash the rename below never reveals a name whose data is missing.
function fsyncTree(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) {
      fsyncTree(path)
      continue
    }
    const fd = openHomeFileSync(path, READ_FLAGS)
    try {
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
  }
  fsyncDir(dir)
}

/**
 * Makes the staging directory `dir`: everything in it is synced, then one rename(2) puts it in place (over an
 * empty directory, which rename replaces) and the parent is synced so the new name survives a power loss.
 * HOME_EXISTS when `dir` gained files meanwhile or is a mount point (rename cannot replace it).
 */
export function commitStaging(staging: string, dir: string): void {
  fsyncTree(staging)
  try {
    renameSync(staging, dir)
  } catch (err) {
    const c = errCode(err)
    if (c === 'ENOTEMPTY' || c === 'EEXIST' || c === 'EBUSY' || c === 'EXDEV') {
      throw new KinError(
        'HOME_EXISTS',
        `${dir} cannot be replaced by the new home (${c}: it gained files meanwhile, or it is a mount point); nothing was written there. Give a new directory, e.g. a subdirectory of ${dir}`,
        { cause: err, detail: { path: dir } },
      )
    }
    throw err
  }
  fsyncDir(dirname(dir))
}

/** Removes a staging directory (an enrollment that failed or was stopped); never throws. */
export function discardStaging(staging: string): void {
  try {
    rmSync(staging, { recursive: true, force: true })
  } catch {
    /* best effort: the next enrollment into the same DIR removes it */
  }
}
