// deploy/kin.service: a well-formed unit whose ExecStart the device bundle accepts, option for option, and whose
// paths agree with each other. (systemd itself is not run here.)
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT, ensureBuilt } from './_build.ts'

type Unit = Record<string, Record<string, string[]>>

/** systemd.syntax(7): [Section] headers, Key=Value lines, # and ; comments; a key may repeat. */
function parseUnit(text: string): Unit {
  const unit: Unit = {}
  let section: Record<string, string[]> | undefined
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    const header = /^\[([A-Za-z]+)\]$/.exec(line)
    if (header !== null) { section = unit[header[1]!] = {}; continue }
    const pair = /^([A-Za-z]+)=(.*)$/.exec(line)
    if (pair === null || section === undefined) throw new Error(`not a unit line: ${raw}`)
    ;(section[pair[1]!] ??= []).push(pair[2]!)
  }
  return unit
}

const unit = parseUnit(readFileSync(join(ROOT, 'deploy/kin.service'), 'utf8'))
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
  t.equal(one('Service', 'RestartPreventExitStatus'), '2', 'usage errors (exit 2) are not restarted in a loop')
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
