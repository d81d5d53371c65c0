import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

// DESIGN.md "Command line": `kin --version` says what is installed; KIN_HOME stands in for --home.
const REPO = fileURLToPath(new URL('../..', import.meta.url))
const KIN = join(REPO, 'bin/kin.mjs')
const dir = mkdtempSync(join(tmpdir(), 'kin-cli-global-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

function kin(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [KIN, ...args], {
    encoding: 'utf8',
    cwd: REPO,
    env: { ...process.env, ...env },
    timeout: 120_000,
  })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

t.test('kin --version prints the package version, as text and as JSON', async t => {
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }
  const text = kin(['--version'])
  t.equal(text.status, 0)
  t.equal(text.stdout.trim(), `kin ${pkg.version} (node ${process.versions.node})`)
  const json = kin(['--version', '--json'])
  t.same(JSON.parse(json.stdout), { version: pkg.version, node: process.versions.node })
  t.match(kin(['--help']).stdout, /kin --version/, 'the top help mentions it')
})

t.test('KIN_HOME stands in for --home, and --home wins over it', async t => {
  const home = join(dir, 'from-env')
  const made = kin(['init', '--fleet', 'env.home.arpa', '--json'], { KIN_HOME: home })
  t.equal(made.status, 0, 'kin init with KIN_HOME only', { stderr: made.stderr })
  t.equal(JSON.parse(made.stdout).home, home)
  t.ok(existsSync(join(home, 'ledger.cbor')), 'the home is where KIN_HOME points')
  const verified = kin(['ledger', 'verify', '--json'], { KIN_HOME: home })
  t.equal(verified.status, 0, 'kin ledger verify finds the home through KIN_HOME', { stderr: verified.stderr })
  const explicit = join(dir, 'explicit')
  const both = kin(['init', '--home', explicit, '--fleet', 'env.home.arpa', '--json'], {
    KIN_HOME: join(dir, 'not-this'),
  })
  t.equal(both.status, 0)
  t.ok(existsSync(join(explicit, 'ledger.cbor')), '--home on the command line wins')
  t.notOk(existsSync(join(dir, 'not-this')), 'KIN_HOME is left alone when --home is given')
  const none = kin(['ledger', 'verify', '--json'], { KIN_HOME: '' })
  t.equal(none.status, 2, 'no --home and no KIN_HOME is a usage error')
})

t.test('every command shows examples in its --help, and every example runs a command that exists', async t => {
  const top = kin(['--help'])
  const names = [...top.stdout.matchAll(/^ {2}(\S+(?: (?:show|verify|bundle|house|attacks|fleet))?) {2,}/gm)].map(
    m => m[1]!,
  )
  t.ok(names.length >= 15, `the top help lists the commands (${names.length})`)
  for (const name of names) {
    const help = kin([...name.split(' '), '--help'])
    t.equal(help.status, 0, `kin ${name} --help`)
    const examples = help.stdout.split('\nexamples:\n')[1]
    t.ok(examples !== undefined && examples.trim().length > 0, `kin ${name} --help shows examples`)
    for (const line of (examples ?? '').split('\n').filter(l => l.startsWith('  kin '))) {
      t.ok(
        line.trim().startsWith(`kin ${name} `) || line.trim().startsWith(`kin ${name}`),
        `"${line.trim()}" runs kin ${name}`,
      )
    }
  }
})

t.test('a group of commands (kin ledger, kin sim) lists its members on --help', async t => {
  for (const [group, members] of [
    ['ledger', ['show', 'verify', 'bundle']],
    ['sim', ['house', 'attacks', 'fleet']],
  ] as const) {
    const help = kin([group, '--help'])
    t.equal(help.status, 0, `kin ${group} --help exits 0`)
    for (const m of members) t.match(help.stdout, new RegExp(`^  ${group} ${m} `, 'm'), `it lists kin ${group} ${m}`)
    t.equal(kin([group]).status, 2, `kin ${group} alone is a usage error (and shows the list)`)
  }
})
