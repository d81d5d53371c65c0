/** @module A home's files on Node: owner-only modes whatever the umask, never through a symlink, only regular files. */
import {
  chmodSync,
  closeSync,
  constants,
  fstatSync,
  mkdirSync,
  openSync,
  readSync,
  statSync,
  type Stats,
} from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { KinError } from '../../agent/errors.ts'

/** Mode of every directory of a home (DESIGN.md "Storage": 0700 whatever the umask). */
export const HOME_DIR_MODE = 0o700
/** Mode of every file of a home (DESIGN.md "Storage": 0600 whatever the umask). */
export const HOME_FILE_MODE = 0o600

// O_NOFOLLOW: a symlink planted at a home file's name is refused (ELOOP), never followed. O_NONBLOCK: opening a
// FIFO whose other end nobody holds returns at once instead of hanging; it changes nothing for a regular file.
const GUARD = constants.O_NOFOLLOW | constants.O_NONBLOCK

/** Open flags for reading a home file. */
export const READ_FLAGS: number = constants.O_RDONLY | GUARD
/** Open flags for reading a file the user named on the command line: symlinks followed, FIFOs still never waited on. */
export const READ_NAMED_FLAGS: number = constants.O_RDONLY | constants.O_NONBLOCK
/** Open flags for appending to a home file, creating it if absent. */
export const APPEND_FLAGS: number = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | GUARD
/** Open flags for creating a new home file that must not exist yet (temp files, new ledgers). */
export const CREATE_FLAGS: number = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | GUARD

function code(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as { code?: string }).code : undefined
}

/** FILE_NOT_REGULAR for a path that is a symlink, FIFO, device, socket or directory. */
function notRegular(path: string, what: string): KinError {
  return new KinError(
    'FILE_NOT_REGULAR',
    `${path} is ${what}, not a regular file: a home's files are never followed through a symlink nor read from a FIFO or device; remove it and restore the file (or run 'kin sync')`,
    { detail: { path } },
  )
}

function kindOf(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO'
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device'
  if (st.isSocket()) return 'a socket'
  if (st.isDirectory()) return 'a directory'
  return 'not a regular file'
}

/** The open error of a home file as a coded error: a symlink is FILE_NOT_REGULAR; others are returned as they are. */
export function openError(path: string, err: unknown): unknown {
  // Linux says ELOOP for O_NOFOLLOW on a symlink; some BSDs say EMLINK or EFTYPE.
  const c = code(err)
  if (c === 'ELOOP' || c === 'EMLINK' || c === 'EFTYPE') return notRegular(path, 'a symlink')
  return err
}

/** Throws FILE_NOT_REGULAR unless `st` (from fstat of the open descriptor) is a regular file. */
export function requireRegular(path: string, st: Stats): void {
  if (!st.isFile()) throw notRegular(path, kindOf(st))
}

/** Opens a home file synchronously with `flags` (READ_FLAGS, APPEND_FLAGS, CREATE_FLAGS); refuses anything but a regular file. */
export function openHomeFileSync(path: string, flags: number, mode = HOME_FILE_MODE): number {
  let fd: number
  try {
    fd = openSync(path, flags, mode)
  } catch (err) {
    throw openError(path, err)
  }
  try {
    requireRegular(path, fstatSync(fd))
  } catch (err) {
    closeSync(fd)
    throw err
  }
  return fd
}

/** Opens a home file with `flags`; refuses anything but a regular file (fstat after open, so no race with a swap). */
export async function openHomeFile(path: string, flags: number, mode = HOME_FILE_MODE): Promise<FileHandle> {
  let fh: FileHandle
  try {
    fh = await open(path, flags, mode)
  } catch (err) {
    throw openError(path, err)
  }
  try {
    requireRegular(path, await fh.stat())
  } catch (err) {
    await fh.close().catch(() => undefined)
    throw err
  }
  return fh
}

/** Reads bytes [from, to) of an open descriptor (fewer at end of file). */
export function readRangeFd(fd: number, from: number, to: number): Uint8Array {
  const out = new Uint8Array(Math.max(0, to - from))
  let at = 0
  while (at < out.length) {
    const n = readSync(fd, out, at, out.length - at, from + at)
    if (n === 0) break
    at += n
  }
  return at === out.length ? out : out.subarray(0, at)
}

/** Reads a whole home file: no symlink, regular files only (`flags`: READ_NAMED_FLAGS follows). ENOENT is thrown as it is. */
export function readHomeFile(path: string, flags = READ_FLAGS): Uint8Array {
  const fd = openHomeFileSync(path, flags)
  try {
    return readRangeFd(fd, 0, fstatSync(fd).size)
  } finally {
    closeSync(fd)
  }
}

/** Reads bytes [from, to) of a home file: no symlink, regular files only. */
export function readHomeFileRange(path: string, from: number, to: number): Uint8Array {
  const fd = openHomeFileSync(path, READ_FLAGS)
  try {
    return readRangeFd(fd, from, to)
  } finally {
    closeSync(fd)
  }
}

/**
 * Throws HOME_UNSAFE unless `dir` is a directory owned by this user and writable by no one else: anyone who can
 * write a home can swap its ledger back to before a revocation, or plant a symlink in it.
 */
export function requirePrivateDir(dir: string): void {
  let st: Stats
  try {
    st = statSync(dir)
  } catch (err) {
    if (code(err) === 'ENOENT') return
    throw new KinError('STORAGE_IO', `cannot stat ${dir}: ${(err as Error).message}`, { cause: err })
  }
  if (!st.isDirectory()) throw new KinError('HOME_UNSAFE', `${dir} is not a directory`, { detail: { path: dir } })
  const uid = typeof process.getuid === 'function' ? process.getuid() : undefined
  if (uid !== undefined && st.uid !== uid) {
    throw new KinError(
      'HOME_UNSAFE',
      `${dir} belongs to user ${st.uid}, not to this user (${uid}): a home must be its device's own; run kinship as its owner, or 'chown -R ${uid} ${dir} && chmod 700 ${dir}'`,
      { detail: { path: dir, uid: st.uid } },
    )
  }
  if ((st.mode & 0o022) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(3, '0')
    throw new KinError(
      'HOME_UNSAFE',
      `${dir} is writable by ${(st.mode & 0o020) !== 0 ? 'its group' : ''}${(st.mode & 0o022) === 0o022 ? ' and ' : ''}${(st.mode & 0o002) !== 0 ? 'others' : ''} (mode ${mode}): anyone who can write it can roll its ledger back; fix with 'chmod 700 ${dir}'`,
      { detail: { path: dir, mode } },
    )
  }
}

/**
 * Creates `dir` (and missing parents) 0700 whatever the umask, then checks it is private (HOME_UNSAFE otherwise).
 * An existing directory keeps its mode: loosening or tightening a user's directory is the user's call.
 */
export function ensurePrivateDir(dir: string): void {
  let created: string | undefined
  try {
    created = mkdirSync(dir, { recursive: true, mode: HOME_DIR_MODE })
  } catch (err) {
    throw new KinError('STORAGE_IO', `cannot create ${dir}: ${(err as Error).message}`, { cause: err })
  }
  // A umask that strips owner bits would leave the new directory unusable; mkdir's mode only ever loses bits.
  if (created !== undefined) chmodSync(dir, HOME_DIR_MODE)
  requirePrivateDir(dir)
}
