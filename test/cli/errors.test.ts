import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

// DESIGN.md "Command line": messages name the problem and what to do about it, never a stack trace.
const REPO = fileURLToPath(new URL('../..', import.meta.url))
const KIN = join(REPO, 'bin/kin.mjs')
const dir = mkdtempSync(join(tmpdir(), 'kin-cli-errors-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

function kin(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise(resolve => {
    const child = spawn(process.execPath, [KIN, ...args], {
      cwd: REPO,
      env: { ...process.env, KIN_DEBUG: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = '',
      stderr = ''
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString('utf8')
    })
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString('utf8')
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000)
    child.on('close', status => {
      clearTimeout(timer)
      resolve({ status, stdout, stderr })
    })
  })
}

const noStack = (t: { notMatch(found: string, pattern: RegExp, message: string): unknown }, stderr: string): void => {
  t.notMatch(stderr, /^\s+at /m, 'no stack trace')
}

t.test('a home that is a file: PATH_NOT_DIRECTORY with what to do, as text and as JSON', async t => {
  const file = join(dir, 'a-file')
  writeFileSync(file, 'not a home')
  const text = await kin(['init', '--home', file, '--fleet', 'err.home.arpa'])
  t.equal(text.status, 2)
  t.match(text.stderr, /is a file, not a directory: give a directory.*\[PATH_NOT_DIRECTORY\]/)
  noStack(t, text.stderr)
  const json = await kin(['init', '--home', file, '--fleet', 'err.home.arpa', '--json'])
  t.equal(json.status, 2)
  t.equal(JSON.parse(json.stdout).code, 'PATH_NOT_DIRECTORY')
})

t.test('kin broker on a port another program holds: PORT_IN_USE naming the address', async t => {
  const home = join(dir, 'l0')
  const made = await kin(['init', '--home', home, '--fleet', 'err.home.arpa', '--json'])
  t.equal(made.status, 0, 'kin init', { stderr: made.stderr })
  const holder = createServer()
  await new Promise<void>(resolve => holder.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => holder.close(() => resolve())))
  const port = (holder.address() as AddressInfo).port
  const run = await kin(['broker', '--home', home, '--host', '127.0.0.1', '--port', String(port)])
  t.equal(run.status, 2)
  t.match(
    run.stderr,
    new RegExp(
      `127\\.0\\.0\\.1:${port} is already in use by another program: choose another --port.*\\[PORT_IN_USE\\]`,
    ),
  )
  noStack(t, run.stderr)
})

t.test('kin sim house with a report path it cannot write refuses before the run, not after it', async t => {
  const file = join(dir, 'report-parent')
  writeFileSync(file, 'a file where a folder should be')
  const run = await kin(['sim', 'house', '--report', join(file, 'house.html')])
  t.equal(run.status, 2)
  t.match(run.stderr, /\[PATH_NOT_DIRECTORY\]/)
  t.notMatch(run.stdout, /enrolled|expectations/, 'no house was played')
  noStack(t, run.stderr)
})
