/** @module What `kin` prints: JSON with --json, short readable lines otherwise; errors name the fix. */
import { KinError } from '../agent/errors.ts'
import { systemErrorAsKinError } from '../runtime/system-errors.ts'

/** Prints a result: JSON (one document) or the text lines. */
export function emit(json: boolean, value: unknown, text: () => string): void {
  if (json) process.stdout.write(JSON.stringify(value, jsonReplacer, 2) + '\n')
  else process.stdout.write(text() + '\n')
}

/** JSON replacer: byte arrays as hex. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex')
  return value
}

/**
 * Prints an error and returns the exit status: 2 for usage and operational errors. A person never sees a stack
 * trace: errors of the operating system become coded errors that say what to do, and a defect prints its message
 * with the code INTERNAL (its stack only when KIN_DEBUG is set).
 */
export function reportError(thrown: unknown, json: boolean): number {
  const err = systemErrorAsKinError(thrown) ?? thrown
  const code = err instanceof KinError ? err.code : 'INTERNAL'
  const message = err instanceof Error ? err.message : String(err)
  if (json) {
    process.stdout.write(
      JSON.stringify(
        { ok: false, code, message, detail: err instanceof KinError ? err.detail : undefined },
        jsonReplacer,
        2,
      ) + '\n',
    )
  } else {
    process.stderr.write(`kin: ${message} [${code}]\n`)
    if (!(err instanceof KinError)) {
      const debug = process.env.KIN_DEBUG !== undefined && process.env.KIN_DEBUG !== ''
      process.stderr.write(
        debug
          ? ((err as Error)?.stack ?? '') + '\n'
          : 'kin: this is a defect in kinship; run again with KIN_DEBUG=1 for the details to report\n',
      )
    }
  }
  return 2
}

/** ISO-8601 form of a time in seconds. */
export function isoTime(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace('.000Z', 'Z')
}

/**
 * Exit status of `kin serve` and `kin sync` on a device whose own identity is revoked (IDENTITY_REVOKED): apart from
 * 0-2, so a supervisor tells it from a crash, and in deploy/kin.service's RestartPreventExitStatus: never restarted.
 */
export const EXIT_REVOKED = 3

/**
 * Exit status of `kin revoke` and `kin policy set` when the event is recorded in the device's own ledger (in force
 * there) but no head of L0's miner covers it yet (EVENT_PENDING): not a success, and not a failure to retry from scratch.
 */
export const EXIT_PENDING = 4
