/** @module Output files and folders a command writes (reports, bundles, kept homes), checked before the work starts. */
import { accessSync, constants, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { KinError } from '../agent/errors.ts'

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
    throw Object.assign(new Error(`EISDIR: illegal operation on a directory, open '${file}'`), {
      code: 'EISDIR',
      path: file,
      syscall: 'open',
    })
  }
  return file
}

/**
 * Refuses to replace `file` when it exists and `force` is not given (DESIGN.md "Command line": no command overwrites
 * a file it did not create without --force). STORAGE_EXISTS names the file and the flag.
 */
export function refuseExistingFile(file: string, force: boolean, flag: string): void {
  if (force || !existsSync(file)) return
  throw new KinError(
    'STORAGE_EXISTS',
    `${file} already exists: choose another ${flag}, or give --force to replace it`,
    { detail: { path: file } },
  )
}

/** The file a simulator run leaves in its --keep folder, so a later run with --force knows which homes it may replace. */
export const SIM_KEEP_MARKER = 'kin-sim.json'

/**
 * Makes `dir` ready to keep a simulator run's homes. A folder that already holds files is refused (STORAGE_EXISTS)
 * unless `force`; with `force`, the homes an earlier run left there (sub-folders holding a config.json, and its
 * scratch folder — only where that run's marker file says a simulator wrote them) are removed so the fleet starts
 * anew, and other files stay. Writes the marker for the next run.
 */
export function prepareKeepDir(dir: string, force: boolean, command: string): void {
  const existing = statSync(dir, { throwIfNoEntry: false })
  const entries = existing?.isDirectory() === true ? readdirSync(dir) : []
  if (entries.length > 0 && !force) {
    const listed = entries.slice(0, 3).join(', ') + (entries.length > 3 ? `, … (${entries.length} entries)` : '')
    throw new KinError(
      'STORAGE_EXISTS',
      `${dir} already holds ${listed}: give --keep an empty or new folder, or --force to replace an earlier run's homes there`,
      { detail: { path: dir, entries: entries.length } },
    )
  }
  if (entries.includes(SIM_KEEP_MARKER)) {
    for (const name of entries) {
      const path = join(dir, name)
      if (name === 'scratch' || existsSync(join(path, 'config.json'))) rmSync(path, { recursive: true, force: true })
    }
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  writeFileSync(join(dir, SIM_KEEP_MARKER), JSON.stringify({ command, startedAt: new Date().toISOString() }) + '\n')
}
