// PROTOCOL.md §10.1: the agent's control socket over a real Unix socket in a real home — its mode, a stale socket
// replaced, each refusal with its own code, output and exit status carried back, signals handed to the command.
import t from 'tap'
import { lstatSync, mkdirSync, writeFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { join } from 'node:path'
import {
  CONTROL_SOCKET_FILE,
  MAX_REQUEST_BYTES,
  startControlSocket,
  stopSignals,
  type ControlSocket,
} from '../../cli/control-socket.ts'
import { runThroughAgent } from '../../cli/control-client.ts'
import type { CommandSpec, ParsedArgs } from '../../cli/args.ts'
import { tempDir } from '../enroll/_harness.ts'

/** Sends `text` on a fresh connection and collects the answer lines until the agent closes it. */
function exchange(
  path: string,
  text: string,
  after?: (send: (line: string) => void) => void,
): Promise<Array<Record<string, unknown>>> {
  return new Promise(resolve => {
    const socket = connect(path)
    let buffered = ''
    socket.on('data', c => {
      buffered += c.toString('utf8')
    })
    // An agent that refuses an oversized request closes while the rest is still being written (EPIPE): the answer counts.
    socket.on('error', () => undefined)
    socket.on('close', () =>
      resolve(
        buffered
          .split('\n')
          .filter(l => l.length > 0)
          .map(l => JSON.parse(l) as Record<string, unknown>),
      ),
    )
    socket.on('connect', () => {
      socket.write(text)
      after?.(line => socket.write(line + '\n'))
    })
  })
}

const home = tempDir(t, 'control')
const request = (argv: string[], extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ v: 1, home, argv, cwd: '/', ...extra }) + '\n'

t.test('the socket: mode 0600, a stale one replaced, something else in its place refused', async t => {
  const path = join(home, CONTROL_SOCKET_FILE)
  // A socket file left by an agent that died (nothing listens on it any more).
  const stale = createServer()
  await new Promise<void>(r => stale.listen(path, r))
  stale.close()
  await new Promise(r => setTimeout(r, 50))
  const control = await startControlSocket(home, async () => 0)
  t.equal(control.path, path)
  t.equal(lstatSync(path).mode & 0o777, 0o600, 'the socket is 0600')
  await control.close()
  t.throws(() => lstatSync(path), 'removed when the agent stops')
  writeFileSync(path, 'not a socket')
  await t.rejects(
    startControlSocket(home, async () => 0),
    { code: 'FILE_NOT_REGULAR' },
  )
  await import('node:fs').then(fs => fs.unlinkSync(path))
  const deep = join(home, 'x'.repeat(120))
  mkdirSync(deep, { mode: 0o700 })
  await t.rejects(
    startControlSocket(deep, async () => 0),
    { code: 'AGENT_SOCKET_PATH' },
  )
})

t.test('requests: output and exit status carried back; each refusal coded', async t => {
  const ran: string[][] = []
  const control: ControlSocket = await startControlSocket(home, async argv => {
    ran.push(argv)
    process.stdout.write('line one\n')
    process.stderr.write('a warning\n')
    process.stdout.write(new Uint8Array([0, 1, 2]))
    return argv.includes('--deny') ? 1 : 0
  })
  t.teardown(() => control.close())
  const ok = await exchange(control.path, request(['status', '--home', home, '--deny']))
  t.same(
    ok,
    [{ out: 'line one\n' }, { err: 'a warning\n' }, { out64: 'AAEC' }, { exit: 1 }],
    'what the command wrote, then its exit status',
  )
  t.same(ran, [['status', '--home', home, '--deny']])

  const refusals: Array<[string, string, string]> = [
    ['not JSON', 'hello\n', 'AGENT_REQUEST_BAD'],
    ['not an object', '[1,2]\n', 'AGENT_REQUEST_BAD'],
    ['another version', request(['status'], { v: 2 }), 'AGENT_REQUEST_BAD'],
    ['no argv', request([]), 'AGENT_REQUEST_BAD'],
    ['a relative cwd', request(['status'], { cwd: 'here' }), 'AGENT_REQUEST_BAD'],
    ['over the size limit', 'x'.repeat(MAX_REQUEST_BYTES + 10), 'AGENT_REQUEST_BAD'],
    ['another home', request(['status'], { home: '/elsewhere' }), 'AGENT_REQUEST_REFUSED'],
    ['a command the agent does not carry', request(['enroll', '--home', home]), 'AGENT_REQUEST_REFUSED'],
  ]
  for (const [what, text, code] of refusals) {
    const answer = await exchange(control.path, text)
    t.match(answer, [{ error: { code } }], `${what}: ${code}`)
  }
  t.equal(ran.length, 1, 'no refused request ran a command')
})

t.test(
  "signals: a handler hears the client's; without one the client is let go (exit 130), the command finishes",
  async t => {
    let finished = false
    const control = await startControlSocket(home, async argv => {
      if (argv[0] === 'invite') {
        await new Promise<void>(resolve => stopSignals().on('SIGINT', () => resolve()))
        process.stdout.write('withdrawn\n')
        return 130
      }
      await new Promise(resolve => setTimeout(resolve, 300))
      finished = true
      return 0
    })
    t.teardown(() => control.close())
    const handled = await exchange(control.path, request(['invite', '--home', home]), send =>
      setTimeout(() => send('{"signal":"SIGINT"}'), 100),
    )
    t.same(handled, [{ out: 'withdrawn\n' }, { exit: 130 }], "the command's own handler ran and said so")
    const unhandled = await exchange(control.path, request(['revoke', '--home', home]), send =>
      send('{"signal":"SIGINT"}'),
    )
    t.same(unhandled, [{ exit: 130, detached: true }], 'no handler: the client exits 130 at once')
    await new Promise(resolve => setTimeout(resolve, 600))
    t.ok(finished, 'and the command ran to its end in the agent')
  },
)

t.test('the client: no agent means run here; an agent that goes away mid-command is AGENT_LOST', async t => {
  const spec = { name: 'status' } as CommandSpec
  const args: ParsedArgs = { values: { home }, positionals: [], json: false }
  t.equal(await runThroughAgent(spec, args), undefined, 'no socket: the command runs here')
  t.equal(
    await runThroughAgent({ name: 'enroll' } as CommandSpec, args),
    undefined,
    'a command the agent does not carry runs here',
  )
  const dying = createServer(socket => socket.once('data', () => socket.destroy()))
  await new Promise<void>(r => dying.listen(join(home, CONTROL_SOCKET_FILE), r))
  t.teardown(() => dying.close())
  await t.rejects(runThroughAgent(spec, args), { code: 'AGENT_LOST' })
})
