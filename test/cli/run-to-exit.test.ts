// How a kin process ends (cli/run-to-exit.ts, what bin/kin.mjs and the device bundle run): with the command's own
// status, and with 2 and a coded INTERNAL error, never 0, when the command is left awaiting something nothing can
// settle any more. Node alone ends such a process silently (a kin revoke did, with status 0, when its broker session
// lost a SUBACK). Each case is a real node process.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const MODULE = fileURLToPath(new URL('../../cli/run-to-exit.ts', import.meta.url))

/** Runs `runToExit(() => <body>, ['revoke', ...extra])` in a fresh node process. */
function run(body: string, extra: string[] = []): { status: number | null; stdout: string; stderr: string } {
  const code = `import { runToExit } from ${JSON.stringify(MODULE)}; await runToExit(() => ${body}, ['revoke', ...process.argv.slice(1)])`
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code, '--', ...extra], {
    encoding: 'utf8',
    timeout: 60_000,
  })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

t.test('a command left waiting on nothing ends with 2 and INTERNAL, not 0', async t => {
  const r = run('new Promise(() => {})')
  t.equal(r.status, 2)
  t.match(r.stderr, /kin revoke stopped before it finished: .* \[INTERNAL\]/)
  t.equal(r.stdout, '')
})

t.test('with --json the same refusal is a JSON error on stdout', async t => {
  const r = run('new Promise(() => {})', ['--json'])
  t.equal(r.status, 2)
  t.match(JSON.parse(r.stdout), { ok: false, code: 'INTERNAL', message: /stopped before it finished/ })
})

t.test("a command's own status is the process's, also after work that keeps the process busy", async t => {
  t.equal(run('Promise.resolve(4)').status, 4)
  t.equal(run('new Promise(r => setTimeout(() => r(0), 300))').status, 0)
  const late = run('new Promise(r => setTimeout(() => r(1), 300))')
  t.equal(late.status, 1)
  t.equal(late.stderr, '', 'nothing said when the command finished')
})

t.test('a command that throws still ends with a failure status', async t => {
  const r = run("Promise.reject(new Error('boom'))")
  t.not(r.status, 0)
  t.match(r.stderr, /boom/)
})
