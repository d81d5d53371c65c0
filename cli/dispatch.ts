/** @module Dispatch for `kin`: finds the command named by argv, parses its options, maps outcomes to exit codes. */
import { KinError } from '../agent/errors.ts'
import { commandHelp, parseCommandArgs, type CommandSpec } from './args.ts'
import { reportError } from './output.ts'
import { kinVersion } from './version.ts'
import { runThroughAgent } from './control-client.ts'

function topHelp(commands: readonly CommandSpec[]): string {
  const lines = ['usage: kin <command> [options]', '', 'commands:']
  const width = Math.max(...commands.map(c => c.name.length)) + 4
  for (const c of commands) lines.push(`  ${c.name.padEnd(width)}${c.summary.split('. ')[0]!.replace(/\.$/, '')}`)
  lines.push(
    '',
    'Every command takes --json and --help; KIN_HOME stands in for --home. Exit status: 0 ok/allow, 1 deny or failed',
    'verification, 2 usage or error, 3 this device is revoked (serve, sync), 4 recorded here but not yet sealed by L0',
    "(revoke, policy set). 'kin --version' says what is installed.",
  )
  return lines.join('\n')
}

// The command table this process started with: an agent carries out its clients' commands from the same one (the
// device bundle's agent, the device commands; a dynamic import of main.ts would pull L0 and the simulator into it).
let startedWith: readonly CommandSpec[] | undefined

/** Runs `argv` with the command table this process started with (an agent, for a command one of its clients asked). */
export function runStartedCommand(argv: string[]): Promise<number> {
  if (startedWith === undefined)
    return Promise.resolve(
      reportError(new KinError('INTERNAL', 'this process was not started through runCommands'), false),
    )
  return runCommands(startedWith, argv)
}

/** Runs one of `commands` with `argv` (without `node` and the script) and returns the exit status. */
export async function runCommands(commands: readonly CommandSpec[], argv: string[]): Promise<number> {
  startedWith ??= commands
  const json = argv.includes('--json')
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(topHelp(commands) + '\n')
    return argv.length === 0 ? 2 : 0
  }
  if (argv[0] === '--version' || argv[0] === '-V' || argv[0] === 'version') {
    const version = kinVersion()
    process.stdout.write(json ? JSON.stringify(version) + '\n' : `kin ${version.version} (node ${version.node})\n`)
    return 0
  }
  const spec = commands.find(c => c.name.split(' ').every((w, i) => argv[i] === w))
  // `kin ledger --help`, `kin sim`: a group of commands lists its members.
  const group = commands.filter(c => c.name.includes(' ') && c.name.split(' ')[0] === argv[0])
  if (spec === undefined && group.length > 0 && (argv.length === 1 || argv[1] === '--help' || argv[1] === '-h')) {
    process.stdout.write(
      topHelp(group).replace('usage: kin <command> [options]', `usage: kin ${argv[0]} <command> [options]`) + '\n',
    )
    return argv.length === 1 ? 2 : 0
  }
  if (spec === undefined) {
    return reportError(
      new KinError('USAGE', `unknown command "${argv.slice(0, 2).join(' ')}". Run 'kin --help' for the list.`),
      json,
    )
  }
  try {
    const args = parseCommandArgs(spec, argv.slice(spec.name.split(' ').length))
    if (args.values.help === true) {
      process.stdout.write(commandHelp(spec) + '\n')
      return 0
    }
    // DESIGN.md "The device runtime": while an agent owns the home, it carries the command out; else it runs here.
    return (await runThroughAgent(spec, args)) ?? (await spec.run(args))
  } catch (err) {
    return reportError(err, json)
  }
}
