/** @module The fleet CA's CRL number (RFC 5280 §5.2.3): kept in L0's home, one more for every CRL the CA signs. */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { KinError } from '../agent/errors.ts'
import { writeFileDurable } from '../runtime/home.ts'

/** File in L0's home holding the number of the last CRL signed (decimal), next to the CA key. */
export const CRL_NUMBER_FILE = 'ca/crl-number'

/**
 * Takes the number for the next CRL of L0's home `homeDir` and records it durably before the CRL exists, so no two
 * CRLs ever share a number, whatever the clock does. The first number is `now` (seconds): CRLs exported before the
 * counter was kept were numbered by their second of issue, and the counter must start above all of them.
 * STORAGE_DAMAGED when the file holds anything but a number; STORAGE_IO when it cannot be written.
 */
export function takeCrlNumber(homeDir: string, now: number): number {
  const path = join(homeDir, CRL_NUMBER_FILE)
  let next = Math.max(1, Math.floor(now))
  if (existsSync(path)) {
    const text = readFileSync(path, 'utf8').trim()
    const last = /^[0-9]{1,15}$/.test(text) ? Number(text) : NaN
    if (!Number.isSafeInteger(last)) {
      throw new KinError(
        'STORAGE_DAMAGED',
        `${path} does not hold a CRL number (${JSON.stringify(text.slice(0, 40))}); restore it from a backup, or write a number above the last CRL's`,
        { detail: { path } },
      )
    }
    next = last + 1
  }
  try {
    writeFileDurable(path, `${next}\n`, 0o600)
  } catch (err) {
    throw new KinError('STORAGE_IO', `cannot write ${path}: ${(err as Error).message}`, {
      cause: err,
      detail: { path },
    })
  }
  return next
}
