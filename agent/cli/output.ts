/** @module What `kin` prints: JSON with --json, short readable lines otherwise; errors name the fix. */
import { KinError } from '../errors.ts'

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

/** Prints an error and returns the exit status: 2 for usage and operational errors. */
export function reportError(err: unknown, json: boolean): number {
  const code = err instanceof KinError ? err.code : 'INTERNAL'
  const message = err instanceof Error ? err.message : String(err)
  if (json) {
    process.stdout.write(JSON.stringify({ ok: false, code, message, detail: err instanceof KinError ? err.detail : undefined }, jsonReplacer, 2) + '\n')
  } else {
    process.stderr.write(`kin: ${message} [${code}]\n`)
    if (!(err instanceof KinError)) process.stderr.write(((err as Error)?.stack ?? '') + '\n')
  }
  return 2
}

/** ISO-8601 form of a time in seconds. */
export function isoTime(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace('.000Z', 'Z')
}
