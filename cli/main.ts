/** @module `kin`: the command-line entry point; dispatches to one command, maps outcomes to exit codes. */
import type { CommandSpec } from './args.ts'
import { runCommands } from './dispatch.ts'
import { ledgerShow, ledgerVerify } from './commands/ledger.ts'
import { init } from './commands/init.ts'
import { simHouse } from './commands/sim.ts'
import { simAttacks } from './commands/sim-attacks.ts'
import { simFleet } from './commands/sim-fleet.ts'
import { broker } from './commands/broker.ts'
import { invite } from './commands/invite.ts'
import { enroll } from './commands/enroll.ts'
import { serve } from './commands/serve.ts'
import { access } from './commands/access.ts'
import { check } from './commands/check.ts'
import { sync } from './commands/sync.ts'
import { revoke } from './commands/revoke.ts'
import { renew } from './commands/renew.ts'
import { rekey } from './commands/rekey.ts'
import { ledgerBundle } from './commands/bundle.ts'
import { status } from './commands/status.ts'
import { devices } from './commands/devices.ts'
import { show } from './commands/show.ts'
import { report } from './commands/report.ts'
import { policySet, policyShow } from './commands/policy.ts'
import { repair } from './commands/repair.ts'
import { delegate } from './commands/delegate.ts'

const COMMANDS: CommandSpec[] = [
  init,
  ledgerShow,
  ledgerVerify,
  ledgerBundle,
  simHouse,
  simAttacks,
  simFleet,
  invite,
  enroll,
  broker,
  serve,
  access,
  check,
  sync,
  revoke,
  renew,
  rekey,
  repair,
  status,
  devices,
  show,
  report,
  policyShow,
  policySet,
  delegate,
]

/** Runs `kin` with the given arguments (without `node` and the script) and returns the exit status. */
export function main(argv: string[]): Promise<number> {
  return runCommands(COMMANDS, argv)
}
