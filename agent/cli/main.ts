/** @module `kin`: the command-line entry point; dispatches to one command, maps outcomes to exit codes. */
import { KinError } from '../errors.ts'
import { commandHelp, parseCommandArgs, type CommandSpec } from './args.ts'
import { reportError } from './output.ts'
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
import { ledgerBundle } from './commands/bundle.ts'

const COMMANDS: CommandSpec[] = [init, ledgerShow, ledgerVerify, ledgerBundle, simHouse, simAttacks, simFleet, invite, enroll, broker, serve, access, check, sync, revoke]

function topHelp(): string {
  const lines = ['usage: kin <command> [options]', '', 'commands:']
  const width = Math.max(...COMMANDS.map(c => c.name.length)) + 4
  for (const c of COMMANDS) lines.push(`  ${c.name.padEnd(width)}${c.summary.split('. ')[0]!.replace(/\.$/, '')}`)
  lines.push('', "Every command takes --json and --help. Exit status: 0 ok/allow, 1 deny or failed verification, 2 usage or error.")
  return lines.join('\n')
}

/** Runs `kin` with the given arguments (without `node` and the script) and returns the exit status. */
export async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json')
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(topHelp() + '\n')
    return argv.length === 0 ? 2 : 0
  }
  const spec = COMMANDS.find(c => {
    const words = c.name.split(' ')
    return words.every((w, i) => argv[i] === w)
  })
  if (spec === undefined) {
    return reportError(new KinError('USAGE', `unknown command "${argv.slice(0, 2).join(' ')}". Run 'kin --help' for the list.`), json)
  }
  const rest = argv.slice(spec.name.split(' ').length)
  try {
    const args = parseCommandArgs(spec, rest)
    if (args.values.help === true) {
      process.stdout.write(commandHelp(spec) + '\n')
      return 0
    }
    return await spec.run(args)
  } catch (err) {
    return reportError(err, json)
  }
}
