/** @module `kin` on a device: the commands a device runs, without L0's services or the simulator; dist/kin-device.mjs starts here. */
import type { CommandSpec } from './args.ts'
import { runCommands } from './dispatch.ts'
import { ledgerShow, ledgerVerify } from './commands/ledger.ts'
import { ledgerBundle } from './commands/bundle.ts'
import { invite } from './commands/invite.ts'
import { enroll } from './commands/enroll.ts'
import { serve } from './commands/serve.ts'
import { access } from './commands/access.ts'
import { check } from './commands/check.ts'
import { sync } from './commands/sync.ts'
import { revoke } from './commands/revoke.ts'

/**
 * Commands of the device bundle, in cli/main.ts's order. `kin init` and `kin broker` stay out: they make and
 * run L0, whose services (broker/) the bundle does not carry; so do the `kin sim` commands (sim/).
 * rollup.config.mjs fails the build if broker/, sim/ or aedes get in through any of these.
 */
export const DEVICE_COMMANDS: readonly CommandSpec[] = [
  ledgerShow,
  ledgerVerify,
  ledgerBundle,
  invite,
  enroll,
  serve,
  access,
  check,
  sync,
  revoke,
]

/** Runs the device's `kin` with the given arguments and returns the exit status. */
export function main(argv: string[]): Promise<number> {
  return runCommands(DEVICE_COMMANDS, argv)
}
