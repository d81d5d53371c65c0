/** @module Command-line parsing for `kin`: named options, --help and --json everywhere, usage errors exit 2. */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { KinError } from '../agent/errors.ts'
import { labelOfCn } from '../agent/ledger/names.ts'
import { COMMAND_EXAMPLES } from './examples.ts'

/** One option of a command, as shown in its --help. */
export interface OptionSpec {
  type: 'string' | 'boolean'
  help: string
  short?: string
  default?: string | boolean
  multiple?: boolean
}

/** A command: its usage line, summary, options and handler. */
export interface CommandSpec {
  name: string
  usage: string
  summary: string
  options: Record<string, OptionSpec>
  run(args: ParsedArgs): Promise<number>
}

/** Parsed options and positional arguments. */
export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | undefined>
  positionals: string[]
  json: boolean
}

/** A usage error: wrong or missing arguments (exit status 2). */
export function usageError(message: string): KinError {
  return new KinError('USAGE', message)
}

/** A CN given on the command line must name a device of `fleet`; a usage error otherwise. */
export function requireFleetCn(cn: string, fleet: string): void {
  try {
    labelOfCn(cn, fleet)
  } catch {
    throw usageError(`${cn} is not a device name of fleet ${fleet}`)
  }
}

/** Parses argv for a command; throws a USAGE KinError naming the problem. */
export function parseCommandArgs(spec: CommandSpec, argv: string[]): ParsedArgs {
  const options: NonNullable<ParseArgsConfig['options']> = {
    help: { type: 'boolean', short: 'h' },
    json: { type: 'boolean' },
  }
  for (const [name, o] of Object.entries(spec.options)) {
    options[name] = { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) }
  }
  let parsed
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true })
  } catch (err) {
    throw usageError(`${(err as Error).message.replace(/^.*?: /, '')}. See 'kin ${spec.name} --help'.`)
  }
  const values = parsed.values as ParsedArgs['values']
  for (const [name, o] of Object.entries(spec.options))
    if (values[name] === undefined && o.default !== undefined) values[name] = o.default
  // DESIGN.md "Command line": KIN_HOME stands in for --home; a --home on the command line wins.
  const envHome = process.env.KIN_HOME
  if ('home' in spec.options && values.home === undefined && envHome !== undefined && envHome !== '')
    values.home = envHome
  return { values, positionals: parsed.positionals, json: values.json === true }
}

/** The text of `kin <command> --help`. */
export function commandHelp(spec: CommandSpec): string {
  const lines = [`usage: ${spec.usage}`, '', spec.summary, '', 'options:']
  const rows: Array<[string, string]> = Object.entries(spec.options).map(([name, o]) => [
    `  --${name}${o.type === 'string' ? ' VALUE' : ''}${o.short ? `, -${o.short}` : ''}`,
    o.help + (o.default !== undefined && o.default !== false ? ` (default: ${o.default})` : ''),
  ])
  rows.push(['  --json', 'machine-readable output'], ['  --help, -h', 'this help'])
  const width = Math.max(...rows.map(r => r[0].length)) + 2
  for (const [a, b] of rows) lines.push(a.padEnd(width) + b)
  const examples = COMMAND_EXAMPLES[spec.name] ?? []
  if (examples.length > 0) {
    lines.push('', 'examples:')
    for (const [line, what] of examples) lines.push(`  ${line}`, `      ${what}`)
  }
  return lines.join('\n')
}

/** A required string option, or a usage error that says how to give it. */
export function requireString(args: ParsedArgs, name: string, hint: string): string {
  const v = args.values[name]
  if (typeof v !== 'string' || v.length === 0) throw usageError(`--${name} is required: ${hint}`)
  return v
}

const DURATION_UNITS_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const

/**
 * Parses the one duration syntax of every flag — a whole number and a unit: 500ms, 90s, 10m, 2h, 7d — into
 * milliseconds. A number without a unit is refused with the syntax (never guessed as seconds or milliseconds).
 */
export function parseDurationMs(text: string, name: string): number {
  const m = /^(\d{1,9})(ms|s|m|h|d)$/.exec(text)
  if (m === null) {
    const bare = /^\d+$/.test(text) ? ` (a unit is required: ${text}ms or ${text}s)` : ''
    throw usageError(`--${name} expects a duration such as 500ms, 90s, 10m, 2h or 7d, got "${text}"${bare}`)
  }
  const ms = Number(m[1]) * DURATION_UNITS_MS[m[2] as keyof typeof DURATION_UNITS_MS]
  if (ms < 1) throw usageError(`--${name} expects a duration of at least 1ms, got "${text}"`)
  return ms
}

/** A duration (parseDurationMs's syntax) in whole seconds, for flags that count seconds; usage error otherwise. */
export function parseDuration(text: string, name: string): number {
  const ms = parseDurationMs(text, name)
  if (ms % 1000 !== 0) throw usageError(`--${name} counts whole seconds, got "${text}"`)
  return ms / 1000
}

/** `--max-pending N`: connections a listener keeps before they authenticate, 1..65536; USAGE otherwise. */
export function parseMaxPending(text: string): number {
  const n = Number(text)
  if (!/^\d+$/.test(text) || n < 1 || n > 65536)
    throw usageError(`--max-pending expects a number of connections 1..65536, got "${text}"`)
  return n
}
