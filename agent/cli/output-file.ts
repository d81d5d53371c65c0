/** @module Output files a long command writes at its end (reports), checked before the work starts. */
import { accessSync, constants, mkdirSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'

/**
 * Resolves `--report FILE` and proves, before a run of many seconds, that the file can be written at its end:
 * its folder exists or can be made, is writable, and FILE is not a directory. Throws the operating system's error,
 * which the command line prints as a coded error that says what to do.
 */
export function reportTarget(value: string | boolean | string[] | undefined): string | undefined {
  if (typeof value !== 'string') return undefined
  const file = resolve(value)
  mkdirSync(dirname(file), { recursive: true })
  accessSync(dirname(file), constants.W_OK)
  const existing = statSync(file, { throwIfNoEntry: false })
  if (existing?.isDirectory() === true) {
    throw Object.assign(new Error(`EISDIR: illegal operation on a directory, open '${file}'`), { code: 'EISDIR', path: file, syscall: 'open' })
  }
  return file
}
