/** @module Output files and folders a command writes (reports, bundles, kept homes), checked before the work starts. */
import { accessSync, constants, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { KinError } from '../errors.ts'

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

/**
 * Refuses to replace `file` when it exists and `force` is not given (DESIGN.md "Command line": no command overwrites
 * a file it did not create without --force). STORAGE_EXISTS names the file and the flag.
 */
export function refuseExistingFile(file: string, force: boolean, flag: string): void {
  if (force || !existsSync(file)) return
  throw new KinError('STORAGE_EXISTS', `${file} already exists: choose another ${flag}, or give --force to replace it`, { detail: { path: file } })
}

/**
 * Refuses to write homes into `dir` when it already holds files and `force` is not given: a run would replace or
 * litter among them. An absent or empty folder is fine. STORAGE_EXISTS names the folder and what it holds.
 */
export function refuseNonEmptyDir(dir: string, force: boolean, flag: string): void {
  if (force) return
  const existing = statSync(dir, { throwIfNoEntry: false })
  if (existing === undefined || !existing.isDirectory()) return
  const entries = readdirSync(dir)
  if (entries.length === 0) return
  const shown = entries.slice(0, 3).join(', ') + (entries.length > 3 ? `, … (${entries.length} entries)` : '')
  throw new KinError('STORAGE_EXISTS', `${dir} already holds ${shown}: give ${flag} an empty or new folder, or --force to write among them`, { detail: { path: dir, entries: entries.length } })
}
