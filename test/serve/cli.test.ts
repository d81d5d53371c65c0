// kin serve, kin access and kin check as child processes on homes written to disk: the guest's phone at the lock.
import t from 'tap'
import { kin } from '../enroll/_harness.ts'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { signedRevoke } from '../../agent/ledger/revoke.ts'
import { appendToHome } from '../helpers/home-fleet.ts'
import { commandHelp } from '../../cli/args.ts'
import { check } from '../../cli/commands/check.ts'
import { makeServeHouse } from './_house.ts'

const KIN = fileURLToPath(new URL('../../bin/kin.mjs', import.meta.url))
const house = await makeServeHouse()
const lock = house.cn['L3.3'],
  guest = house.cn['L3.4']
const lockHome = await house.home(lock)
const guestHome = await house.home(guest)
t.teardown(() => {
  lockHome.remove()
  guestHome.remove()
})

/** A long-running `kin serve --json`: its stdout lines as JSON, and a way to wait for the next one. */
class Server {
  readonly child: ChildProcessWithoutNullStreams
  readonly lines: Array<Record<string, unknown>> = []
  #waiters: Array<() => void> = []
  readonly exited: Promise<number | null>

  constructor(dir: string) {
    this.child = spawn(process.execPath, [KIN, 'serve', '--home', dir, '--json'], { stdio: ['pipe', 'pipe', 'pipe'] })
    createInterface({ input: this.child.stdout }).on('line', line => {
      this.lines.push(JSON.parse(line) as Record<string, unknown>)
      for (const w of this.#waiters.splice(0)) w()
    })
    this.exited = new Promise(resolve => this.child.on('close', status => resolve(status)))
  }

  /** Waits until `count` lines have arrived and returns line number `count - 1`. */
  async line(count: number): Promise<Record<string, unknown>> {
    while (this.lines.length < count) await new Promise<void>(resolve => this.#waiters.push(resolve))
    return this.lines[count - 1]!
  }
}

function json(stdout: string): Record<string, unknown> {
  return JSON.parse(stdout) as Record<string, unknown>
}

function auditLines(dir: string): Array<Record<string, unknown>> {
  return readFileSync(`${dir}/audit.log`, 'utf8')
    .trim()
    .split('\n')
    .map(l => JSON.parse(l) as Record<string, unknown>)
}

t.test(
  'kin serve (the lock) and kin access (the guest phone): allow, deny, a revocation seen while serving, clean stop',
  async t => {
    const server = new Server(lockHome.dir)
    t.teardown(() => {
      server.child.kill('SIGKILL')
    })
    const listening = await server.line(1)
    t.equal(listening['listening'], true)
    t.equal(listening['cn'], lock)
    t.equal(listening['host'], '127.0.0.1')
    const target = `127.0.0.1:${listening['port']}`

    const unlock = await kin(['access', '--home', guestHome.dir, '--target', target, '--action', 'unlock', '--json'])
    t.equal(unlock.status, 0, unlock.stderr)
    const allowed = json(unlock.stdout)
    t.equal(allowed['allow'], true)
    t.equal(allowed['code'], 'ALLOW')
    t.equal(allowed['stage'], 'answer')
    t.equal(allowed['server'], lock)
    t.same(allowed['path'], [guest, house.cn['L2.2'], house.cn.L1, house.cn['L2.1'], lock])
    t.equal(allowed['hops'], 4)
    t.equal(allowed['commonAncestor'], house.cn.L1)
    const logged = await server.line(2)
    t.equal((logged['decision'] as Record<string, unknown>)['code'], 'ALLOW', 'the server logged the decision')

    const configure = await kin([
      'access',
      '--home',
      guestHome.dir,
      '--target',
      target,
      '--action',
      'configure',
      '--json',
    ])
    t.equal(configure.status, 1)
    t.equal(json(configure.stdout)['code'], 'POLICY_ACTION')

    const wrongPeer = await kin([
      'access',
      '--home',
      guestHome.dir,
      '--target',
      target,
      '--expect',
      house.cn['L2.1'],
      '--json',
    ])
    t.equal(wrongPeer.status, 1)
    t.equal(json(wrongPeer.stdout)['code'], 'ACCESS_WRONG_PEER')
    t.equal(json(wrongPeer.stdout)['stage'], 'server', 'refused before asking')

    // The guest's parent revokes it; the event lands in the lock's ledger file while the lock serves.
    const ledger = house.fleet.l0Ledger.state
    const parent = house.fleet.device(house.cn['L2.2'])
    const now = Math.floor(Date.now() / 1000)
    const revoke = signedRevoke(
      nodeCrypto,
      ledger,
      { cn: parent.cn, ledgerSeed: parent.secrets.ledgerSeed },
      guest,
      { reason: 'lost', effective: now, subtree: false },
      now,
    )
    await appendToHome(lockHome.home, [revoke])
    const revoked = await kin(['access', '--home', guestHome.dir, '--target', target, '--action', 'view'])
    t.equal(revoked.status, 1)
    t.match(
      revoked.stdout,
      /DENY ACCESS_REVOKED "view"/,
      'the next decision saw the new event; readable output names the code',
    )

    server.child.kill('SIGTERM')
    t.equal(await server.exited, 0, 'clean shutdown on SIGTERM')
    t.same(server.lines.at(-1), { stopped: true, signal: 'SIGTERM' })
    const decisions = server.lines
      .filter(l => l['decision'] !== undefined)
      .map(l => (l['decision'] as Record<string, unknown>)['code'])
    t.same(
      decisions,
      ['ALLOW', 'POLICY_ACTION', 'ACCESS_REVOKED'],
      'one log line per decision; the refused --expect asked nothing',
    )
    const audit = auditLines(lockHome.dir)
    t.same(
      audit.map(a => a['code']),
      decisions,
      'and one audit line each',
    )
    t.same(
      audit.map(a => a['peer']),
      [guest, guest, guest],
    )
    t.same(
      audit.map(a => a['action']),
      ['unlock', 'configure', 'view'],
    )
  },
)

t.test(
  'a fake lock served by kin serve (Eve-CA certificate for the lock CN) gets no request from kin access',
  async t => {
    const fake = await house.home(lock)
    t.teardown(fake.remove)
    fake.home.writePublic('cert', (await house.forge('eve-ca', lock, house.cn['L2.1'])).pem)
    fake.home.writeSecret('tlsKey', house.eve.keys.privateKeyPem)
    const server = new Server(fake.dir)
    t.teardown(() => {
      server.child.kill('SIGKILL')
    })
    const listening = await server.line(1)
    const r = await kin([
      'access',
      '--home',
      guestHome.dir,
      '--target',
      `127.0.0.1:${listening['port']}`,
      '--action',
      'unlock',
      '--json',
    ])
    t.equal(r.status, 1, 'exit 1: refused')
    const out = json(r.stdout)
    t.equal(out['stage'], 'server')
    t.equal(out['code'], 'CERT_CHAIN')
    t.equal(out['allow'], false)
    server.child.kill('SIGINT')
    t.equal(await server.exited, 0, 'clean shutdown on SIGINT')
    t.same(
      server.lines.filter(l => l['decision'] !== undefined),
      [],
      'the fake lock never saw an action to decide on',
    )
  },
)

t.test('kin check: exit 0 allow, 1 deny, an audit line for each', async t => {
  const home = await house.home(lock)
  t.teardown(home.remove)
  const peer = house.file(home.dir, 'guest.pem', house.fleet.device(guest).certificate.pem)
  const der = `${home.dir}/guest.der`
  writeFileSync(der, house.fleet.device(guest).certificate.der)
  const eve = house.file(home.dir, 'eve.pem', (await house.forge('eve-ca', guest, house.cn['L2.2'])).pem)

  // Three processes at once; audit lines then come in any order.
  const [allow, fromDer, rogue] = await Promise.all([
    kin(['check', '--home', home.dir, '--peer', peer, '--action', 'unlock', '--json']),
    kin(['check', '--home', home.dir, '--peer', der, '--action', 'view']),
    kin(['check', '--home', home.dir, '--peer', eve, '--json']),
  ])
  t.equal(allow.status, 0, allow.stderr)
  t.equal(json(allow.stdout)['code'], 'ALLOW')
  t.same(json(allow.stdout)['path'], [guest, house.cn['L2.2'], house.cn.L1, house.cn['L2.1'], lock])
  t.equal(fromDer.status, 0, 'DER works too')
  t.match(fromDer.stdout, /^ALLOW "view"/)
  t.equal(rogue.status, 1)
  t.equal(json(rogue.stdout)['code'], 'CERT_CHAIN')
  const audit = auditLines(home.dir).sort(
    (a, b) =>
      String(a['action']).localeCompare(String(b['action'])) || String(a['code']).localeCompare(String(b['code'])),
  )
  t.same(
    audit.map(a => [a['code'], a['action'], a['allow'], a['peer']]),
    [
      ['ALLOW', 'unlock', true, guest],
      ['CERT_CHAIN', 'unlock', false, null],
      ['ALLOW', 'view', true, guest],
    ],
    'one audit line per decision; a certificate that fails the chain check names no peer',
  )
})

// Without the bundle this home denies ACCESS_MISSING_PROOF (test/serve/session.test.ts).
t.test('kin check --bundle: the guest carries its proof bundle to a lock whose ledger predates it', async t => {
  const own = await house.home(lock, { ledger: 'own' })
  t.teardown(own.remove)
  const peer = house.file(own.dir, 'guest.pem', house.fleet.device(guest).certificate.pem)
  const bundleFile = `${own.dir}/guest.bundle`
  writeFileSync(bundleFile, await house.bundle(guest))
  const r = await kin(['check', '--home', own.dir, '--peer', peer, '--bundle', bundleFile, '--json'])
  t.equal(r.status, 0, r.stdout + r.stderr)
  const out = json(r.stdout)
  t.equal(out['code'], 'ALLOW')
  t.equal((out['bundle'] as Record<string, unknown>)['anchoring'], 'unanchored')
  t.same(
    auditLines(own.dir).map(a => a['code']),
    ['ALLOW'],
  )
})

t.test(
  'an unreachable target is an error (exit 2), not a deny; kin check --help says there is no proof of possession',
  async t => {
    const unreachable = await kin(['access', '--home', guestHome.dir, '--target', '127.0.0.1:1', '--json'])
    t.equal(unreachable.status, 2)
    t.equal(json(unreachable.stdout)['code'], 'ACCESS_TRANSPORT')
    t.match(commandHelp(check), /no proof of possession/)
  },
)

// DESIGN.md "Command line": a flag a command cannot honour is refused, never ignored.
t.test('kin access --bundle refuses, before connecting, a file that is not a bundle of this device', async t => {
  const garbage = `${guestHome.dir}/garbage.bin`
  writeFileSync(garbage, 'not a bundle at all')
  const r = await kin(['access', '--home', guestHome.dir, '--target', '127.0.0.1:9', '--bundle', garbage, '--json'])
  t.equal(r.status, 2, 'exit 2')
  const out = json(r.stdout)
  t.match(String(out['code']), /^DECODE_/, 'the decoding code')
  t.match(String(out['message']), /is not a proof bundle this device can send/)
  t.match(String(out['message']), /kin ledger bundle/, 'the message says how to make one')
  const others = `${guestHome.dir}/lock.bundle`
  writeFileSync(others, await house.bundle(lock))
  const r2 = await kin(['access', '--home', guestHome.dir, '--target', '127.0.0.1:9', '--bundle', others, '--json'])
  t.equal(r2.status, 2, "another device's bundle: exit 2")
  t.equal(json(r2.stdout)['code'], 'BUNDLE_INCOMPLETE')
  t.match(String(json(r2.stdout)['message']), /another device's bundle/)
})
