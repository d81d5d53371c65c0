/** @module `kin` on a device: the commands a device runs, without L0's services or the simulator; dist/kin-device.mjs starts here. */
import { KinError } from '../errors.ts'
import { commandHelp, parseCommandArgs, type CommandSpec } from './args.ts'
import { reportError } from './output.ts'
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
 * Commands of the device bundle, in agent/cli/main.ts's order. `kin init` and `kin broker` stay out: they make and
 * run L0, whose services (broker/) the bundle does not carry; so do the `kin sim` commands (sim/).
 * rollup.config.mjs fails the build if broker/, sim/ or aedes get in through any of these.
 */
export const DEVICE_COMMANDS: readonly CommandSpec[] = [ledgerShow, ledgerVerify, ledgerBundle, invite, enroll, serve, access, check, sync, revoke]

function topHelp(commands: readonly CommandSpec[]): string {
  const lines = ['usage: kin <command> [options]', '', 'commands:']
  const width = Math.max(...commands.map(c => c.name.length)) + 4
  for (const c of commands) lines.push(`  ${c.name.padEnd(width)}${c.summary.split('. ')[0]!.replace(/\.$/, '')}`)
  lines.push('', "Every command takes --json and --help. Exit status: 0 ok/allow, 1 deny or failed verification, 2 usage or error.")
  return lines.join('\n')
}

/** Runs one of `commands` with `argv` (without `node` and the script) as agent/cli/main.ts does, and returns the exit status. */
export async function runCommands(commands: readonly CommandSpec[], argv: string[]): Promise<number> {
  const json = argv.includes('--json')
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(topHelp(commands) + '\n')
    return argv.length === 0 ? 2 : 0
  }
  const spec = commands.find(c => c.name.split(' ').every((w, i) => argv[i] === w))
  if (spec === undefined) {
    return reportError(new KinError('USAGE', `unknown command "${argv.slice(0, 2).join(' ')}". Run 'kin --help' for the list.`), json)
  }
  try {
    const args = parseCommandArgs(spec, argv.slice(spec.name.split(' ').length))
    if (args.values.help === true) {
      process.stdout.write(commandHelp(spec) + '\n')
      return 0
    }
    return await spec.run(args)
  } catch (err) {
    return reportError(err, json)
  }
}

/** Runs the device's `kin` with the given arguments and returns the exit status. */
export function main(argv: string[]): Promise<number> {
  return runCommands(DEVICE_COMMANDS, argv)
}
