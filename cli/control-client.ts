/** @module The client of the agent's control socket: a command on a home that an agent owns is carried out by that agent. */
import { existsSync, lstatSync, realpathSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { isAbsolute, join, resolve } from 'node:path'
import { KinError, type KinErrorCode } from '../agent/errors.ts'
import type { CommandSpec, ParsedArgs } from './args.ts'
import {
  AGENT_COMMANDS,
  CONTROL_SOCKET_FILE,
  CONTROL_VERSION,
  currentAgentRequest,
  type ControlRequest,
} from './control-socket.ts'
import { pidLockHolder } from '../runtime/pid-lock.ts'

/** Commands that print the home's ledger file as the --home given joined with ledger.cbor. */
const LEDGER_FILE_AS_GIVEN = new Set(['ledger show', 'ledger verify'])
/** Options whose value is a path: resolved against this process's directory before the agent sees them. */
const PATH_OPTIONS = new Set(['home', 'out', 'bundle', 'peer'])
/** While a live process holds the home's lock but its socket does not answer yet (an agent starting), how long to wait for it. */
export const AGENT_START_WAIT_MS = 10_000
/** While a live process holds the home's lock and no socket file is there, how long to wait for one to appear. */
export const AGENT_NO_SOCKET_WAIT_MS = 2_000
/** Largest answer line read from the agent (a `kin ledger show --json` of a big fleet is one line). */
const MAX_ANSWER_LINE_BYTES = 64 * 1024 * 1024
// Same name as cli/commands/sync.ts LEDGER_LOCK_FILE (not imported: that module imports this one's callers).
const LEDGER_LOCK = 'ledger.lock'

/** Connects to a socket file; undefined when nothing listens there (no file, or a socket left by an agent that died). */
function connectControl(path: string): Promise<Socket | undefined> {
  return new Promise(resolve => {
    const socket = connect(path)
    socket.once('connect', () => resolve(socket))
    socket.once('error', () => {
      socket.destroy()
      resolve(undefined)
    })
  })
}

/** The command line as the agent parses it again: every option named, paths absolute, positionals after `--`. */
function requestArgv(spec: CommandSpec, args: ParsedArgs, home: string): string[] {
  const argv = spec.name.split(' ')
  for (const [name, value] of Object.entries(args.values)) {
    if (value === undefined || value === false || name === 'help') continue
    if (value === true) argv.push(`--${name}`)
    else if (Array.isArray(value)) for (const v of value) argv.push(`--${name}=${v}`)
    else argv.push(`--${name}=${name === 'home' ? home : PATH_OPTIONS.has(name) ? resolve(value) : value}`)
  }
  if (args.positionals.length > 0) argv.push('--', ...args.positionals)
  return argv
}

/**
 * The agent's socket for `home`. While a live process holds the home's lock and the socket does not answer, that may
 * be an agent still starting: waited for up to AGENT_START_WAIT_MS when a socket file is there (one left by an agent
 * that is being restarted), AGENT_NO_SOCKET_WAIT_MS when none is (the holder may be a command run directly).
 */
async function agentSocket(home: string): Promise<Socket | undefined> {
  const path = join(home, CONTROL_SOCKET_FILE)
  const start = Date.now()
  for (;;) {
    const present = existsSync(path) && lstatSync(path).isSocket()
    const socket = present ? await connectControl(path) : undefined
    if (socket !== undefined) return socket
    const waited = Date.now() - start
    if (
      pidLockHolder(join(home, LEDGER_LOCK)) === undefined ||
      waited > (present ? AGENT_START_WAIT_MS : AGENT_NO_SOCKET_WAIT_MS)
    )
      return undefined
    await new Promise(r => setTimeout(r, 100))
  }
}

/**
 * Carries out `kin <spec.name> …` through the agent that owns the home named by --home, if one runs: the agent runs
 * the command, its output is written here as it comes, and its exit status is returned. Undefined when the command
 * is to run here: no agent runs on that home, the command is not one the agent carries, or this already is the agent.
 * SIGINT and SIGTERM received meanwhile are handed to the agent's command (a `kin invite` withdraws its code).
 */
export async function runThroughAgent(spec: CommandSpec, args: ParsedArgs): Promise<number | undefined> {
  if (currentAgentRequest() !== undefined || !AGENT_COMMANDS.has(spec.name)) return undefined
  const given = args.values.home
  if (typeof given !== 'string' || given.length === 0) return undefined
  let home: string
  try {
    home = realpathSync(resolve(given))
  } catch {
    return undefined
  }
  const socket = await agentSocket(home)
  if (socket === undefined) return undefined
  // The agent gets absolute paths. `kin ledger show|verify` print the file as DIR/ledger.cbor with DIR as given: their
  // output names it so again, as the direct path would (every other command prints absolute paths either way).
  const absolute = resolve(given)
  const shown =
    LEDGER_FILE_AS_GIVEN.has(spec.name) && !isAbsolute(given)
      ? (text: string): string => text.split(join(absolute, 'ledger.cbor')).join(join(given, 'ledger.cbor'))
      : (text: string): string => text
  // `home` (its real path) says which home is meant; argv carries the path as this process resolves it, so what the
  // command prints of it is what it would print here.
  const request: ControlRequest = {
    v: CONTROL_VERSION,
    home,
    argv: requestArgv(spec, args, absolute),
    cwd: process.cwd(),
  }
  return await new Promise<number>((resolveExit, reject) => {
    let buffered = ''
    let settled = false
    const forward = (signal: 'SIGINT' | 'SIGTERM') => (): void => {
      if (!socket.destroyed) socket.write(JSON.stringify({ signal }) + '\n')
    }
    const onInt = forward('SIGINT'),
      onTerm = forward('SIGTERM')
    process.on('SIGINT', onInt)
    process.on('SIGTERM', onTerm)
    const finish = (status: number | undefined, err?: KinError): void => {
      if (settled) return
      settled = true
      process.off('SIGINT', onInt)
      process.off('SIGTERM', onTerm)
      socket.destroy()
      if (err !== undefined) reject(err)
      else resolveExit(status!)
    }
    const onLine = (text: string): void => {
      let answer: Record<string, unknown>
      try {
        answer = JSON.parse(text) as Record<string, unknown>
      } catch {
        return finish(
          undefined,
          new KinError('AGENT_LOST', `the agent on ${home} answered with a line that is not JSON`),
        )
      }
      if (typeof answer['out'] === 'string') process.stdout.write(shown(answer['out']))
      else if (typeof answer['err'] === 'string') process.stderr.write(shown(answer['err']))
      else if (typeof answer['out64'] === 'string') process.stdout.write(Buffer.from(answer['out64'], 'base64'))
      else if (typeof answer['err64'] === 'string') process.stderr.write(Buffer.from(answer['err64'], 'base64'))
      else if (typeof answer['exit'] === 'number') finish(answer['exit'])
      else if (typeof answer['error'] === 'object' && answer['error'] !== null) {
        const e = answer['error'] as { code?: string; message?: string }
        finish(
          undefined,
          new KinError(
            (e.code ?? 'INTERNAL') as KinErrorCode,
            `the agent on ${home} refused the command: ${e.message ?? ''}`,
          ),
        )
      }
    }
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8')
      let nl: number
      while (!settled && (nl = buffered.indexOf('\n')) >= 0) {
        const text = buffered.slice(0, nl)
        buffered = buffered.slice(nl + 1)
        onLine(text)
      }
      if (buffered.length > MAX_ANSWER_LINE_BYTES)
        finish(
          undefined,
          new KinError('AGENT_LOST', `the agent on ${home} sent a line over ${MAX_ANSWER_LINE_BYTES} bytes`),
        )
    })
    socket.on('error', () => undefined)
    socket.on('close', () =>
      finish(
        undefined,
        new KinError(
          'AGENT_LOST',
          `the agent on ${home} (kin serve or kin sync --follow) ended while carrying out 'kin ${spec.name}': its outcome is unknown; see 'kin status --home ${home}' and run the command again`,
        ),
      ),
    )
    socket.write(JSON.stringify(request) + '\n')
  })
}
