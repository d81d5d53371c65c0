// `kin broker --name HOST --address IP`: L0's server certificates name them beside the defaults; a later start with
// another set issues them anew and says so on stderr; a name or address that is none is refused before anything runs.
import t from 'tap'
import { spawn } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { serverCertificatePaths } from '../../broker/server-certificates.ts'
import { makeL0Home } from './_fleet.ts'

const kin = fileURLToPath(new URL('../../bin/kin.mjs', import.meta.url))

interface Ran {
  status: number | null
  printed: Record<string, unknown> | undefined
  logs: Array<Record<string, unknown>>
  stderr: string
}

/** Runs `kin broker … --json`; once it prints where it listens, stops it with SIGTERM (a one-shot command just ends). */
function kinBroker(args: string[]): Promise<Ran> {
  return new Promise(resolve => {
    const child = spawn(process.execPath, [kin, 'broker', ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
    t.teardown(() => {
      if (child.exitCode === null) child.kill('SIGKILL')
    })
    let out = '',
      err = ''
    child.stdout.on('data', d => {
      out += d
      // Listening: one line of JSON with ok true. A refusal spans several lines and ends the command by itself.
      if (out.startsWith('{"ok":true') && out.includes('\n') && child.exitCode === null) child.kill('SIGTERM')
    })
    child.stderr.on('data', d => {
      err += d
    })
    child.on('close', status => {
      const logs: Array<Record<string, unknown>> = []
      for (const line of err.split('\n')) {
        try {
          logs.push(JSON.parse(line) as Record<string, unknown>)
        } catch {
          // not a log line
        }
      }
      // A listening broker prints one line; a refusal one JSON object over several.
      const text = status === 0 ? out.split('\n')[0]! : out
      resolve({
        status,
        printed: text.trim() === '' ? undefined : (JSON.parse(text) as Record<string, unknown>),
        logs,
        stderr: err,
      })
    })
  })
}

const l0 = await makeL0Home()
const base = ['--home', l0.dir, '--port', '0']

t.test('--name and --address go into both certificates; a changed set is issued anew and said on stderr', async t => {
  const first = await kinBroker([...base, '--name', 'L0.Smith.Lan', '--address', '192.0.2.7'])
  t.equal(first.status, 0, first.stderr)
  const names = first.printed!.serverNames as { dns: string[]; ips: string[] }
  t.ok(names.dns.includes('l0.smith.lan') && names.dns.includes('localhost'), 'the name, lowercase, and the defaults')
  t.ok(names.ips.includes('192.0.2.7') && names.ips.includes('127.0.0.1') && names.ips.includes('::1'))
  t.same(
    first.logs.filter(r => r.event === 'server.certificate').map(r => r.reason),
    ['missing', 'missing'],
    'the first start makes both',
  )
  for (const keyType of ['p256', 'rsa2048'] as const) {
    const x = new X509Certificate(readFileSync(serverCertificatePaths(l0.dir, keyType).cert))
    t.ok(x.checkHost('l0.smith.lan') && x.checkIP('192.0.2.7'), `${keyType}: names what was given`)
  }

  const same = await kinBroker([...base, '--name', 'l0.smith.lan', '--address', '192.0.2.7'])
  t.equal(same.status, 0)
  t.same(
    same.logs.filter(r => r.event === 'server.certificate'),
    [],
    'the same set: nothing issued',
  )

  const moved = await kinBroker([...base, '--name', 'l0.smith.lan', '--address', '192.0.2.8'])
  t.equal(moved.status, 0)
  const said = moved.logs.filter(r => r.event === 'server.certificate')
  t.same(
    said.map(r => r.reason),
    ['names', 'names'],
    'another address: both issued anew',
  )
  t.match(String(said[0]?.message), /issued anew/, 'and the log line says so on stderr')
  const x = new X509Certificate(readFileSync(serverCertificatePaths(l0.dir, 'p256').cert))
  t.ok(x.checkIP('192.0.2.8') && !x.checkIP('192.0.2.7'), 'the certificate served now names the new address only')
})

t.test(
  'a name or address that is none is refused before the broker starts; the flags are refused where unused',
  async t => {
    for (const [args, code] of [
      [['--name', '*.smith.lan'], 'SERVER_NAME'],
      [['--name', 'under_score'], 'SERVER_NAME'],
      [['--address', '192.0.2.300'], 'SERVER_ADDRESS'],
      [['--address', 'l0.smith.lan'], 'SERVER_ADDRESS'],
      [['--no-broker', '--broker', 'mqtts://127.0.0.1:1', '--name', 'l0.lan'], 'USAGE'],
      [['--rsa-port', '8884'], 'USAGE'],
    ] as Array<[string[], string]>) {
      const r = await kinBroker([...base, ...args])
      t.equal(r.status, 2, `${args.join(' ')}: exit 2`)
      t.equal(r.printed?.code, code, `${args.join(' ')}: ${code}`)
    }
  },
)
