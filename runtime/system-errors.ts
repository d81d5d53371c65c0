/** @module Errors the operating system raises (a port in use, a path that is a file) as coded errors that say what to do. */
import { KinError, type KinErrorCode } from '../agent/errors.ts'

interface SystemError extends Error {
  code?: string
  syscall?: string
  path?: string
  address?: string
  port?: number
}

const ADVICE: Record<string, { code: KinErrorCode; say: (e: SystemError) => string }> = {
  EADDRINUSE: {
    code: 'PORT_IN_USE',
    say: e =>
      `${where(e)} is already in use by another program: choose another --port, or stop the program that holds it`,
  },
  EADDRNOTAVAIL: {
    code: 'PORT_DENIED',
    say: e =>
      `${where(e)} is not an address of this machine: give --host one of its addresses (127.0.0.1 for this machine only)`,
  },
  ENOTDIR: {
    code: 'PATH_NOT_DIRECTORY',
    say: e =>
      `${e.path ?? 'a path'} (or a folder above it) is a file, not a directory: give a directory, or a path that does not exist yet`,
  },
  EISDIR: {
    code: 'PATH_IS_DIRECTORY',
    say: e => `${e.path ?? 'the path'} is a directory; a file name is needed there`,
  },
  ENOENT: {
    code: 'PATH_MISSING',
    say: e => `${e.path ?? 'a path'} does not exist: check the path, or create its folder first`,
  },
  ENOSPC: {
    code: 'DISK_FULL',
    say: e => `no space left on the device while writing ${e.path ?? 'a file'}: free some space and try again`,
  },
  EROFS: {
    code: 'PATH_READ_ONLY',
    say: e => `${e.path ?? 'the path'} is on a read-only file system: choose a writable place`,
  },
}

function where(e: SystemError): string {
  return e.port !== undefined ? `${e.address ?? 'the address'}:${e.port}` : (e.address ?? 'the address')
}

function denied(e: SystemError): KinError {
  if (e.syscall === 'listen' || e.syscall === 'bind') {
    return new KinError(
      'PORT_DENIED',
      `${where(e)} may not be used by this user (ports below 1024 need privileges): choose --port 1024 or higher`,
      { cause: e },
    )
  }
  return new KinError(
    'PATH_DENIED',
    `${e.path ?? 'a path'} may not be used by this user: check its owner and mode (ls -ld), or choose another place`,
    { cause: e },
  )
}

/** A KinError for an operating-system error a person can act on; undefined for anything else (a defect). */
export function systemErrorAsKinError(err: unknown): KinError | undefined {
  if (!(err instanceof Error)) return undefined
  const e = err as SystemError
  if (typeof e.code !== 'string') return undefined
  if (e.code === 'EACCES' || e.code === 'EPERM') return denied(e)
  // mkdir -p meets a file where a folder should be.
  if (e.code === 'EEXIST' && e.syscall === 'mkdir')
    return new KinError(
      'PATH_NOT_DIRECTORY',
      `${e.path ?? 'a path'} is a file, not a directory: give a path whose folders are folders`,
      { cause: e },
    )
  const advice = ADVICE[e.code]
  return advice === undefined ? undefined : new KinError(advice.code, advice.say(e), { cause: e })
}
