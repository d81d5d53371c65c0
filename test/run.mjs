#!/usr/bin/env node
// Runs the tap suite and closes with the line CI reads: "N passed, N failed".
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const tapBin = fileURLToPath(new URL('../node_modules/tap/dist/esm/run.mjs', import.meta.url))
const args = process.argv.slice(2)
if (process.env.KIN_TEST_RUNNER) throw new Error('test/run.mjs must not run inside its own tap run')
const child = spawn(process.execPath, [tapBin, '--reporter=tap', ...args], {
  stdio: ['ignore', 'pipe', 'inherit'],
  env: { ...process.env, FORCE_COLOR: '0', KIN_TEST_RUNNER: '1' },
})
let tail = ''
child.stdout.on('data', chunk => {
  process.stdout.write(chunk)
  tail = (tail + chunk.toString('utf8')).slice(-4096)
})
child.on('close', code => {
  const m = /#\s*\{\s*total:\s*(\d+)([^}]*)\}/.exec(tail)
  let pass = 0, fail = 0, skip = 0
  if (m) {
    const field = name => Number((new RegExp(name + ':\\s*(\\d+)').exec(m[2]) ?? [0, 0])[1])
    pass = field('pass'); fail = field('fail'); skip = field('skip') + field('todo')
  }
  if (code !== 0 && fail === 0) fail = 1
  process.stdout.write(`\n${pass} passed, ${fail} failed${skip ? `, ${skip} skipped` : ''}\n`)
  process.exit(code ?? 1)
})
