#!/usr/bin/env node
// Runs the tap suite, shows progress (test files done of total) on stderr, and closes with the line CI reads:
// "N passed, N failed".
import { spawn } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { delimiter, join, relative } from 'node:path'

const root = fileURLToPath(new URL('..', import.meta.url))
const tapBin = join(root, 'node_modules/tap/dist/esm/run.mjs')
const args = process.argv.slice(2)
if (process.env.KIN_TEST_RUNNER) throw new Error('test/run.mjs must not run inside its own tap run')

function testFiles(dir) {
  const out = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...testFiles(path))
    else if (entry.name.endsWith('.test.ts')) out.push(relative(root, path))
  }
  return out
}
// The files tap will run: those named, those under named folders, or every test file.
const named = args.filter(a => !a.startsWith('-')).map(a => join(process.cwd(), a))
const total =
  named.length === 0
    ? testFiles(join(root, 'test')).length
    : named.reduce((n, path) => n + (existsSync(path) && statSync(path).isDirectory() ? testFiles(path).length : 1), 0)
const started = Date.now()

// The whole suite needs third-party tools the interop tests use; say in one line what to install, instead of
// failing files one by one (a single named file runs without this check).
const TOOLS = [
  ['openssl', 'openssl'],
  ['mosquitto', 'mosquitto'],
  ['mosquitto_sub', 'mosquitto-clients'],
  ['chromium', 'chromium'],
  ['certtool', 'gnutls-bin'],
  ['go', 'golang-go'],
  ['nats-server', 'nats-server'],
]
if (named.length === 0) {
  const onPath = tool =>
    (process.env.PATH ?? '').split(delimiter).some(dir => dir !== '' && existsSync(join(dir, tool)))
  // Debian puts mosquitto in /usr/sbin, which a user's PATH may lack: the tests spawn it by name, so it must be on PATH.
  const missing = TOOLS.filter(([tool]) => !onPath(tool)).map(([, pkg]) => pkg)
  if (missing.length > 0) {
    process.stdout.write(
      `the test suite needs: sudo apt-get install -y ${missing.join(' ')}   (.ci/run installs them)\n0 passed, 1 failed\n`,
    )
    process.exit(1)
  }
}

const child = spawn(process.execPath, [tapBin, '--reporter=tap', ...args], {
  stdio: ['ignore', 'pipe', 'inherit'],
  env: { ...process.env, FORCE_COLOR: '0', KIN_TEST_RUNNER: '1' },
})
let tail = ''
let partial = ''
let done = 0
let failedFiles = 0
child.stdout.on('data', chunk => {
  process.stdout.write(chunk)
  const text = chunk.toString('utf8')
  tail = (tail + text).slice(-4096)
  // A test file's result is a top-level (unindented) "ok N - FILE" or "not ok N - FILE" line.
  const lines = (partial + text).split('\n')
  partial = lines.pop() ?? ''
  for (const line of lines) {
    const m = /^(not ok|ok) \d+ - (\S+\.test\.ts)/.exec(line)
    if (m === null) continue
    done++
    if (m[1] === 'not ok') failedFiles++
    const minutes = ((Date.now() - started) / 60000).toFixed(1)
    process.stderr.write(
      `[${done}/${total} files, ${minutes} min${failedFiles ? `, ${failedFiles} failing` : ''}] ${m[1]} ${m[2]}\n`,
    )
  }
})
child.on('close', code => {
  const m = /#\s*\{\s*total:\s*(\d+)([^}]*)\}/.exec(tail)
  let pass = 0,
    fail = 0,
    skip = 0
  if (m) {
    const field = name => Number((new RegExp(name + ':\\s*(\\d+)').exec(m[2]) ?? [0, 0])[1])
    pass = field('pass')
    fail = field('fail')
    skip = field('skip') + field('todo')
  }
  if (code !== 0 && fail === 0) fail = 1
  process.stdout.write(`\n${pass} passed, ${fail} failed${skip ? `, ${skip} skipped` : ''}\n`)
  process.exit(code ?? 1)
})
