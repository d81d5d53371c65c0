// deploy/kin.service: a well-formed unit whose ExecStart the device bundle accepts, option for option, and whose
// paths agree with each other, and that systemd-analyze verify reads without a warning.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { ROOT, ensureBuilt } from './_build.ts'
import { EXIT_REVOKED } from '../../cli/output.ts'

type Unit = Record<string, Record<string, string[]>>

/** systemd.syntax(7): [Section] headers, Key=Value lines, # and ; comments; a key may repeat. */
function parseUnit(text: string): Unit {
  const unit: Unit = {}
  let section: Record<string, string[]> | undefined
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    const header = /^\[([A-Za-z]+)\]$/.exec(line)
    if (header !== null) {
      section = unit[header[1]!] = {}
      continue
    }
    const pair = /^([A-Za-z]+)=(.*)$/.exec(line)
    if (pair === null || section === undefined) throw new Error(`not a unit line: ${raw}`)
    ;(section[pair[1]!] ??= []).push(pair[2]!)
  }
  return unit
}

const unitText = readFileSync(join(ROOT, 'deploy/kin.service'), 'utf8')
const unit = parseUnit(unitText)
const one = (section: string, key: string): string => {
  const values = unit[section]?.[key]
  if (values === undefined || values.length !== 1) throw new Error(`[${section}] ${key} should be set once`)
  return values[0]!
}

t.test('the unit has its sections and runs the device bundle with node as an unprivileged user', async t => {
  t.same(Object.keys(unit).sort(), ['Install', 'Service', 'Unit'])
  t.equal(one('Install', 'WantedBy'), 'multi-user.target')
  t.equal(one('Service', 'User'), 'kinship')
  t.equal(one('Service', 'NoNewPrivileges'), 'yes')
  t.equal(one('Service', 'CapabilityBoundingSet'), '', 'no capabilities: the port is above 1024')
  const argv = one('Service', 'ExecStart').split(/\s+/)
  t.equal(argv[0], '/usr/bin/node')
  t.equal(argv[1], '/opt/kinship/kin-device.mjs')
  t.equal(argv[2], 'serve')
  const home = argv[argv.indexOf('--home') + 1]
  t.equal(home, `/var/lib/${one('Service', 'StateDirectory')}`, 'the home is the state directory systemd creates')
  t.same(unit['Service']!['ReadWritePaths'], [home], 'and the only path it may write')
  t.same(
    one('Service', 'RestartPreventExitStatus').split(/\s+/),
    ['2', String(EXIT_REVOKED)],
    'usage errors (exit 2) and a revoked device (IDENTITY_REVOKED) are not restarted in a loop',
  )
})

t.test('kin-device.mjs accepts ExecStart as written', async t => {
  const bundle = await ensureBuilt('kin-device.mjs')
  const argv = one('Service', 'ExecStart').split(/\s+/).slice(2)
  // --help after the real options: the options are parsed (strictly; an unknown one exits 2), then help is printed.
  const run = spawnSync(process.execPath, [bundle, ...argv, '--help'], { encoding: 'utf8' })
  t.equal(run.status, 0, run.stderr)
  t.match(run.stdout, /kin serve --home DIR/)
  const typo = spawnSync(process.execPath, [bundle, ...argv, '--prot', '1', '--help'], { encoding: 'utf8' })
  t.equal(typo.status, 2, 'a misspelt option would be refused, so the check above means something')
})

t.test('systemd.unit(5): the start limit is a [Unit] setting, so a crashing agent stops being restarted', async t => {
  t.equal(one('Unit', 'StartLimitIntervalSec'), '300')
  t.equal(one('Unit', 'StartLimitBurst'), '5')
  t.notOk(
    unit['Service']!['StartLimitIntervalSec'] ?? unit['Service']!['StartLimitBurst'],
    'none left in [Service], where systemd ignores them',
  )
  t.equal(one('Service', 'Restart'), 'on-failure')
})

/**
 * `systemd-analyze verify` of a copy of the unit whose user and node binary exist on this machine (the unit names
 * the device's, which do not exist here); returns its stderr lines. The copy keeps every section and key.
 */
function verifyUnit(text: string): { status: number | null; warnings: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'kin-unit-'))
  try {
    const me = userInfo().username
    const local = text
      .replace(/^ExecStart=\/usr\/bin\/node /m, `ExecStart=${process.execPath} `)
      .replace(/^(User|Group)=kinship$/gm, `$1=${me}`)
    const path = join(dir, 'kin.service')
    writeFileSync(path, local)
    const run = spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8' })
    return { status: run.status, warnings: run.stderr.split('\n').filter(l => l.trim() !== '') }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const analyzer = spawnSync('sh', ['-c', 'command -v systemd-analyze']).status === 0
t.test(
  'systemd-analyze verify reads the unit without a warning',
  { skip: analyzer ? false : 'systemd-analyze is not installed here' },
  async t => {
    const clean = verifyUnit(unitText)
    t.equal(clean.status, 0)
    t.same(clean.warnings, [], 'no unknown key, misplaced setting or bad value')
    // The same check on the unit as it was, the start limit under [Service]: systemd-analyze names the misplaced key.
    const misplaced = unitText
      .replace(/^StartLimit(IntervalSec|Burst)=.*\n/gm, '')
      .replace(
        /^RestartPreventExitStatus=2 3$/m,
        'RestartPreventExitStatus=2 3\nStartLimitIntervalSec=300\nStartLimitBurst=5',
      )
    const old = verifyUnit(misplaced)
    t.match(
      old.warnings.join('\n'),
      /Unknown key 'StartLimitIntervalSec' in section \[Service\]/,
      'the check would catch the misplacement',
    )
  },
)
