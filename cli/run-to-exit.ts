/** @module How a `kin` process ends: with its command's exit status, and never 0 for a command that did not finish. */
import { KinError } from '../agent/errors.ts'
import { reportError } from './output.ts'

/**
 * Runs `main` and ends the process with the status it returns. When the process runs out of work first (the
 * command awaits something nothing can settle any more: a defect), Node would end it with status 0 or 13 and no
 * word, and a script would take an unfinished revocation for a done one. Then this reports INTERNAL and ends the
 * process with 2, in JSON when `--json` was given.
 */
export async function runToExit(main: () => Promise<number>, argv: readonly string[]): Promise<void> {
  let finished = false
  const unfinished = (): void => {
    if (finished) return
    finished = true
    const status = reportError(
      new KinError(
        'INTERNAL',
        `kin ${argv[0] ?? ''} stopped before it finished: it was left waiting for something that can no longer happen. This is a defect in kinship: run it again, and report it with KIN_DEBUG=1. What it recorded before stays (an event recorded here and not yet sealed goes out with the next 'kin sync')`,
      ),
      argv.includes('--json'),
    )
    process.exit(status)
  }
  // 'beforeExit' comes only once nothing is left to run: a command still unfinished then never finishes.
  process.on('beforeExit', unfinished)
  try {
    process.exitCode = await main()
  } finally {
    finished = true
    process.off('beforeExit', unfinished)
  }
}
