/** @module The README's walkthrough, typed as a person would: its block runs in bash with `kin` on PATH, and every step must end as the README says. */
import t from 'tap'
import { spawn } from 'node:child_process'
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { stepOutcomes, walkthroughBlock } from './_walkthrough.ts'

const root = fileURLToPath(new URL('../../', import.meta.url))
// Generous: the walkthrough takes under a minute alone; a loaded 2-core machine may take several.
const DEADLINE_MS = 10 * 60_000

/** True while any process of group `pgid` is alive. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false
    throw err
  }
}

t.test('the README walkthrough runs as written', async t => {
  const script = walkthroughBlock(readFileSync(join(root, 'README.md'), 'utf8'))
  const dir = mkdtempSync(join(tmpdir(), 'kin-walkthrough-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // `kin` on PATH is this checkout's bin/kin.mjs, as `npm link` would make it; the block makes its own directory under TMPDIR.
  mkdirSync(join(dir, 'bin'))
  mkdirSync(join(dir, 'tmp'))
  symlinkSync(join(root, 'bin/kin.mjs'), join(dir, 'bin/kin'))
  writeFileSync(join(dir, 'walkthrough.sh'), script)
  // stdout and stderr into one file, in the order a terminal shows them.
  const outFd = openSync(join(dir, 'output.txt'), 'w')
  // bash leads its own process group, so its background jobs (L0, the lock) can be found and, at worst, stopped.
  const bash = spawn('bash', ['walkthrough.sh'], {
    cwd: dir,
    detached: true,
    stdio: ['ignore', outFd, outFd],
    env: { ...process.env, PATH: `${join(dir, 'bin')}:${process.env.PATH ?? ''}`, TMPDIR: join(dir, 'tmp') },
  })
  closeSync(outFd)
  const pgid = bash.pid!
  t.teardown(() => {
    if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL')
  })
  const exit = await new Promise<number | string>(resolve => {
    const timer = setTimeout(() => {
      process.kill(-pgid, 'SIGKILL')
    }, DEADLINE_MS)
    bash.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve(code ?? String(signal))
    })
  })
  const output = readFileSync(join(dir, 'output.txt'), 'utf8')
  t.comment(output)
  t.equal(exit, 0, 'bash ran the block to its end within the deadline')
  t.notMatch(output, /gave up waiting/, 'no wait in the block ran out')
  t.notMatch(output, /command not found/, 'every command of the block exists')

  const steps = stepOutcomes(output)
  const expected: Array<[name: string, exit: number, verdict: RegExp]> = [
    ['phone-unlock', 0, /answered: ALLOW "unlock"/],
    ['phone-inbox', 0, /answered over its inbox: ALLOW "unlock"/],
    ['phone-renew', 0, /^renewed \S+: certificate \S+ valid until /m],
    ['guest-unlock', 0, /answered: ALLOW "unlock": \S+ \(guest\)/],
    ['revoke', 0, /^revoked \S+ \(retired, .*sealed by L0 in head \d+/m],
    ['guest-refused', 1, /answered: DENY ACCESS_REVOKED "unlock"/],
    ['guest-check', 1, /^DENY ACCESS_REVOKED "unlock"/m],
    ['lock-ledger', 0, /^ok: lock\/ledger\.cbor: \d+ events/m],
    // The ordinary offline case: a guest enrolled while the lock was cut off sends the proof of its events the lock
    // lacks, for the head the lock stated, and is decided on it.
    [
      'sitter-offline',
      0,
      /answered: ALLOW "unlock": \S+ \(guest\) .*\(sent (an offline proof|a bundle) of \d+ bytes for its head of \d+ events\)/,
    ],
    ['phone-offline', 0, /answered: ALLOW "unlock"/],
  ]
  t.same(
    steps.map(s => s.name),
    expected.map(([name]) => name),
    'every step ran, in order',
  )
  for (const [name, exit, verdict] of expected) {
    const step = steps.find(s => s.name === name)
    t.equal(step?.exit, exit, `${name} exits ${exit}`)
    t.match(step?.output ?? '', verdict, `${name} prints ${verdict}`)
  }
  const sitter = steps.find(s => s.name === 'sitter-offline')
  t.notMatch(
    sitter?.output ?? '',
    /asking again/,
    'the offline lock decided the sitter in one exchange, with no second ask',
  )
  t.match(output, /walkthrough done\s*$/, 'the block ends with its last line')
  t.notOk(groupAlive(pgid), 'no process of the block is left running (L0 and the lock were stopped)')
})
