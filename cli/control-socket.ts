/** @module The device agent's control socket: other `kin` commands on its home are carried out inside the agent, their output streamed back. */
import { AsyncLocalStorage } from 'node:async_hooks'
import { EventEmitter } from 'node:events'
import { chmodSync, lstatSync, realpathSync, unlinkSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { KinError } from '../agent/errors.ts'

/** The control socket's file in a home (DESIGN.md "The device runtime"): mode 0600 in the home's 0700 directory. */
export const CONTROL_SOCKET_FILE = 'agent.sock'
/** Largest request line the agent reads (argv and home); a longer one is AGENT_REQUEST_BAD. */
export const MAX_REQUEST_BYTES = 64 * 1024
/** Most arguments a request carries. */
export const MAX_REQUEST_ARGS = 64
/** How long a connection has to send its whole request line. */
export const REQUEST_WAIT_MS = 5_000
/** How long a stopping agent lets commands in progress finish (after telling them SIGTERM) before it cuts them off. */
export const DRAIN_MS = 5_000
/** Version of the request line. */
export const CONTROL_VERSION = 1
// sockaddr_un.sun_path holds 108 bytes with the terminating NUL on Linux.
const MAX_SOCKET_PATH_BYTES = 107

/**
 * The commands a running agent carries out for its home (`kin <name> …`). Another command can ask to be carried
 * too with `registerAgentCommand`; it then runs in the agent, where `openFollowingHome` lends it the agent's follower.
 */
export const AGENT_COMMANDS: Set<string> = new Set([
  'invite',
  'revoke',
  'renew',
  'rekey',
  'policy set',
  'access',
  'check',
  'sync',
  'status',
  'ledger show',
  'ledger verify',
  'ledger bundle',
])

/** Routes `kin <name>` through a running agent from now on (a command that writes the ledger or uses the broker session). */
export function registerAgentCommand(name: string): void {
  AGENT_COMMANDS.add(name)
}

/** The request line a client sends: `{"v":1,"home":"/abs/home","argv":["revoke","--home",…],"cwd":"/abs"}`. */
export interface ControlRequest {
  v: number
  home: string
  argv: string[]
  cwd: string
}

/** One command carried out in the agent for a client: where its output goes, the signals the client forwards. */
export interface AgentRequest {
  /** The client's working directory: relative paths of the command are its. */
  cwd: string
  /** SIGINT / SIGTERM the client received (or SIGTERM when it went away or the agent stops). */
  signals: EventEmitter
  write(stream: 'out' | 'err', chunk: string | Uint8Array): void
}

const requestContext = new AsyncLocalStorage<AgentRequest>()

/** The request this code runs for, when it runs inside the agent for a client; undefined in a command run directly. */
export function currentAgentRequest(): AgentRequest | undefined {
  return requestContext.getStore()
}

/** The working directory relative paths are resolved against: the client's inside the agent, else this process's. */
export function clientCwd(): string {
  return requestContext.getStore()?.cwd ?? process.cwd()
}

/**
 * Where a command hears SIGINT and SIGTERM: the client's forwarded signals inside the agent (so a client's Ctrl-C
 * withdraws its invite and not the agent's), the process's otherwise.
 */
export function stopSignals(): {
  on(name: 'SIGINT' | 'SIGTERM', f: () => void): void
  off(name: 'SIGINT' | 'SIGTERM', f: () => void): void
} {
  const request = requestContext.getStore()
  if (request === undefined)
    return {
      on: (n, f) => {
        process.on(n, f)
      },
      off: (n, f) => {
        process.off(n, f)
      },
    }
  return {
    on: (n, f) => {
      request.signals.on(n, f)
    },
    off: (n, f) => {
      request.signals.off(n, f)
    },
  }
}

type Write = typeof process.stdout.write

/** Sends what a command inside a request writes to stdout/stderr to its client; the agent's own lines stay on its streams. */
function captureOutput(): () => void {
  const originals: Array<[NodeJS.WriteStream, Write]> = []
  for (const [stream, name] of [
    [process.stdout, 'out'],
    [process.stderr, 'err'],
  ] as const) {
    const original = stream.write
    originals.push([stream, original])
    stream.write = function (this: NodeJS.WriteStream, chunk: string | Uint8Array, ...rest: unknown[]): boolean {
      const request = requestContext.getStore()
      if (request === undefined) return (original as (...a: unknown[]) => boolean).call(stream, chunk, ...rest)
      request.write(name, chunk)
      const done = rest.find(r => typeof r === 'function') as (() => void) | undefined
      if (done !== undefined) queueMicrotask(done)
      return true
    } as Write
  }
  return () => {
    for (const [stream, original] of originals) stream.write = original
  }
}

function refused(code: 'AGENT_REQUEST_BAD' | 'AGENT_REQUEST_REFUSED', message: string): KinError {
  return new KinError(code, message)
}

/** Checks a request line cheapest-first; returns the request or throws the coded refusal. */
export function parseControlRequest(line: string, home: string): ControlRequest {
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch {
    throw refused('AGENT_REQUEST_BAD', 'the request is not one line of JSON')
  }
  const r = value as Partial<ControlRequest>
  if (typeof r !== 'object' || r === null || Array.isArray(r))
    throw refused('AGENT_REQUEST_BAD', 'the request is not a JSON object')
  if (r.v !== CONTROL_VERSION)
    throw refused(
      'AGENT_REQUEST_BAD',
      `the request has version ${String(r.v)}; this agent speaks ${CONTROL_VERSION} (same kin on both sides?)`,
    )
  if (
    !Array.isArray(r.argv) ||
    r.argv.length === 0 ||
    r.argv.length > MAX_REQUEST_ARGS ||
    !r.argv.every(a => typeof a === 'string')
  ) {
    throw refused('AGENT_REQUEST_BAD', `"argv" must list 1..${MAX_REQUEST_ARGS} strings`)
  }
  if (typeof r.cwd !== 'string' || !r.cwd.startsWith('/'))
    throw refused('AGENT_REQUEST_BAD', '"cwd" must be an absolute path')
  if (typeof r.home !== 'string' || r.home !== home)
    throw refused('AGENT_REQUEST_REFUSED', `this agent owns ${home}, not ${String(r.home)}`)
  const name = [...AGENT_COMMANDS].find(c => c.split(' ').every((w, i) => r.argv![i] === w))
  if (name === undefined)
    throw refused('AGENT_REQUEST_REFUSED', `the agent does not carry out "kin ${r.argv.slice(0, 2).join(' ')}"`)
  return r as ControlRequest
}

/** A running control socket. */
export interface ControlSocket {
  path: string
  /** Requests being carried out now. */
  readonly active: number
  /** Stops accepting, tells commands in progress SIGTERM, waits up to DRAIN_MS for them, removes the socket file. */
  close(): Promise<void>
}

/**
 * Listens on DIR/agent.sock for commands on the home this process owns (it holds the home's ledger lock, so a socket
 * file already there is left from an agent that died and is removed). Each connection sends one request line
 * (ControlRequest) and then only signal lines `{"signal":"SIGINT"|"SIGTERM"}`; the agent answers with output lines
 * `{"out":TEXT}`, `{"err":TEXT}` (or `out64`/`err64` for bytes), and one last line `{"exit":N}` — or
 * `{"error":{code,message}}` for a refused request. `run` carries out the command (argv as a person typed it, without
 * `kin`) and returns its exit status; what it writes to stdout and stderr goes to the client.
 * Only the same user reaches the socket: Node has no SO_PEERCRED, so this rests on the home directory being 0700
 * (checked by every command that opens the home) and the socket file being 0600.
 */
export async function startControlSocket(
  dir: string,
  run: (argv: string[]) => Promise<number>,
): Promise<ControlSocket> {
  const home = realpathSync(dir)
  const path = join(home, CONTROL_SOCKET_FILE)
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new KinError(
      'AGENT_SOCKET_PATH',
      `the control socket ${path} is ${Buffer.byteLength(path)} bytes long, over the ${MAX_SOCKET_PATH_BYTES} a Unix socket address holds: move the home to a shorter path`,
    )
  }
  try {
    const st = lstatSync(path)
    // Only a socket is ours to remove; anything else in its place is not this agent's to delete.
    if (!st.isSocket())
      throw new KinError('FILE_NOT_REGULAR', `${path} exists and is not a socket: remove it to run the agent`)
    unlinkSync(path)
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw err
  }
  const running = new Map<Socket, AgentRequest>()
  const finished = new Set<Promise<void>>()
  const restore = captureOutput()
  const server: Server = createServer({ allowHalfOpen: false }, socket => {
    const work = serveConnection(socket, home, run, running).catch(() => undefined)
    finished.add(work)
    void work.finally(() => finished.delete(work))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, () => {
      server.off('error', reject)
      resolve()
    })
  }).catch(err => {
    restore()
    throw err
  })
  chmodSync(path, 0o600)
  let closing: Promise<void> | undefined
  return {
    path,
    get active() {
      return running.size
    },
    close: () =>
      (closing ??= (async () => {
        const stopped = new Promise<void>(resolve => server.close(() => resolve()))
        for (const r of running.values()) r.signals.emit('SIGTERM')
        const deadline = new Promise<void>(resolve => setTimeout(resolve, DRAIN_MS).unref())
        await Promise.race([Promise.allSettled([...finished]), deadline])
        for (const socket of running.keys()) socket.destroy()
        await stopped
        restore()
        try {
          unlinkSync(path)
        } catch {
          /* already gone */
        }
      })()),
  }
}

function send(socket: Socket, value: object): void {
  if (!socket.destroyed && socket.writable) socket.write(JSON.stringify(value) + '\n')
}

/** Reads the request line within REQUEST_WAIT_MS and MAX_REQUEST_BYTES; the rest of the buffer is signal lines. */
function readRequestLine(socket: Socket): Promise<{ line: string; rest: string }> {
  return new Promise((resolve, reject) => {
    let buffered = ''
    const timer = setTimeout(
      () => finish(refused('AGENT_REQUEST_BAD', `no complete request within ${REQUEST_WAIT_MS} ms`)),
      REQUEST_WAIT_MS,
    )
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString('utf8')
      const nl = buffered.indexOf('\n')
      if (nl >= 0 && nl <= MAX_REQUEST_BYTES)
        return finish(undefined, { line: buffered.slice(0, nl), rest: buffered.slice(nl + 1) })
      if (buffered.length > MAX_REQUEST_BYTES)
        finish(refused('AGENT_REQUEST_BAD', `the request is over ${MAX_REQUEST_BYTES} bytes`))
    }
    const onEnd = (): void => finish(refused('AGENT_REQUEST_BAD', 'the connection closed before a complete request'))
    const finish = (err: KinError | undefined, value?: { line: string; rest: string }): void => {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('end', onEnd)
      socket.off('close', onEnd)
      if (err !== undefined) reject(err)
      else resolve(value!)
    }
    socket.on('data', onData)
    socket.on('end', onEnd)
    socket.on('close', onEnd)
  })
}

async function serveConnection(
  socket: Socket,
  home: string,
  run: (argv: string[]) => Promise<number>,
  running: Map<Socket, AgentRequest>,
): Promise<void> {
  socket.on('error', () => undefined)
  let request: ControlRequest
  let rest: string
  try {
    const read = await readRequestLine(socket)
    request = parseControlRequest(read.line, home)
    rest = read.rest
  } catch (err) {
    const e = err instanceof KinError ? err : refused('AGENT_REQUEST_BAD', (err as Error).message)
    send(socket, { error: { code: e.code, message: e.message } })
    socket.end()
    return
  }
  // Once the client stopped listening (it went away, or a signal no command handles let it exit), output is dropped.
  let detached = false
  const signals = new EventEmitter()
  const agentRequest: AgentRequest = {
    cwd: request.cwd,
    signals,
    write: (stream, chunk) => {
      if (detached) return
      if (typeof chunk === 'string') send(socket, { [stream]: chunk })
      else send(socket, { [`${stream}64`]: Buffer.from(chunk).toString('base64') })
    },
  }
  const onSignal = (name: 'SIGINT' | 'SIGTERM'): void => {
    if (signals.listenerCount(name) > 0) {
      signals.emit(name)
      return
    }
    // A command that does not handle the signal stops for the person as a direct one would (exit 130/143); in the
    // agent it runs to its end, since it may be half way through the ledger.
    if (!detached) send(socket, { exit: name === 'SIGINT' ? 130 : 143, detached: true })
    detached = true
  }
  let pending = rest
  const onData = (chunk: Buffer): void => {
    pending += chunk.toString('utf8')
    if (pending.length > MAX_REQUEST_BYTES) {
      socket.destroy()
      return
    }
    let nl: number
    while ((nl = pending.indexOf('\n')) >= 0) {
      const text = pending.slice(0, nl)
      pending = pending.slice(nl + 1)
      try {
        const signal = (JSON.parse(text) as { signal?: unknown }).signal
        if (signal === 'SIGINT' || signal === 'SIGTERM') onSignal(signal)
      } catch {
        /* not a signal line: ignored */
      }
    }
  }
  socket.on('data', onData)
  socket.on('close', () => {
    if (!detached) {
      detached = true
      if (signals.listenerCount('SIGTERM') > 0) signals.emit('SIGTERM')
    }
  })
  running.set(socket, agentRequest)
  if (pending.length > 0) onData(Buffer.alloc(0))
  let status: number
  try {
    status = await requestContext.run(agentRequest, () => run(request.argv))
  } catch (err) {
    const e = err instanceof KinError ? err : new KinError('INTERNAL', (err as Error)?.message ?? String(err))
    if (!detached) send(socket, { error: { code: e.code, message: e.message } })
    detached = true
    status = 2
  } finally {
    running.delete(socket)
  }
  if (!detached) send(socket, { exit: status })
  socket.end()
}
