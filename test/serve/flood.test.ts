// A device's access endpoint under floods: half-open sockets closed at the deadline and capped, certificate-less requests summarised in audit.log.
import t from 'tap'
import { eventually } from '../enroll/_harness.ts'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { connect } from 'node:tls'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { requestAccess, startAccessEndpoint } from '../../runtime/node/tls-endpoint.ts'
import type { Decision } from '../../agent/access/types.ts'
import { openHalfOpen } from '../../sim/attacks/half-open.ts'
import { makeServeHouse } from './_house.ts'

const KIN = fileURLToPath(new URL('../../bin/kin.mjs', import.meta.url))
const house = await makeServeHouse()
const lock = house.cn['L3.3'],
  guest = house.cn['L3.4']

/** One request without a client certificate over a completed TLS handshake; resolves with the answer line. */
function certificateLess(port: number): Promise<string> {
  return new Promise(resolve => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false })
    let got = ''
    socket.setEncoding('utf8')
    socket.on('secureConnect', () => socket.write('{"action":"unlock"}\n'))
    socket.on('data', (d: string) => {
      got += d
    })
    socket.on('close', () => resolve(got))
    socket.on('error', () => undefined)
  })
}

t.test(
  'the guest gets its decision while half-open sockets fill the pending cap; every flood socket is closed',
  async t => {
    const decisions: Decision[] = []
    const closedReasons: string[] = []
    const endpoint = await startAccessEndpoint({
      ...house.identity(lock),
      session: house.session(lock),
      host: '127.0.0.1',
      port: 0,
      requestTimeoutMs: 1500,
      maxPendingConnections: 16,
      onDecision: d => decisions.push(d),
      onPendingClosed: reason => closedReasons.push(reason),
    })
    t.teardown(() => endpoint.close())
    const count = 80
    const flood = await openHalfOpen({ host: endpoint.host, port: endpoint.port, count, kind: 'mixed' })
    t.teardown(() => flood.stop())
    t.ok(
      await eventually(() => {
        const p = endpoint.pending()
        return p.open + p.evicted + p.deadline + p.handshake >= count
      }, 30_000),
      'the device accepted the flood',
    )
    t.ok(endpoint.pending().open <= 16, `at most 16 wait (${endpoint.pending().open})`)

    const session = house.session(guest)
    const outcome = await requestAccess({
      ...house.identity(guest),
      host: endpoint.host,
      port: endpoint.port,
      action: 'unlock',
      checkServer: der => session.checkServer(der),
      timeoutMs: 30_000,
    })
    t.equal(outcome.answer?.code, 'ALLOW', 'the guest was decided on while the flood held its sockets')
    t.same(
      decisions.map(d => d.code),
      ['ALLOW'],
      'the flood got no decision: it never asked',
    )

    t.ok(await flood.allClosed(60_000), 'every flood socket was closed by the device')
    const p = endpoint.pending()
    t.equal(p.deadline + p.evicted + p.handshake, count, 'by its deadline, by the cap, or at its failed handshake')
    t.ok(p.evicted >= count - 16, `the cap closed the oldest (${p.evicted})`)
    t.equal(closedReasons.length, count, 'each closure reported')
    t.equal(p.open, 0)
  },
)

t.test(
  'kin serve: a flood of certificate-less requests is one summary line in audit.log, beside the real decision',
  async t => {
    const home = await house.home(lock)
    t.teardown(home.remove)
    const guestHome = await house.home(guest)
    t.teardown(guestHome.remove)
    const child = spawn(process.execPath, [KIN, 'serve', '--home', home.dir, '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    t.teardown(() => {
      child.kill('SIGKILL')
    })
    const exited = new Promise<number | null>(resolve => child.on('close', status => resolve(status)))
    const lines: Array<Record<string, unknown>> = []
    createInterface({ input: child.stdout }).on('line', l => lines.push(JSON.parse(l) as Record<string, unknown>))
    t.ok(await eventually(() => lines.length > 0, 60_000), 'kin serve is listening')
    const port = lines[0]!['port'] as number

    const count = 200
    const answers: string[] = []
    for (let i = 0; i < count; i += 10)
      answers.push(...(await Promise.all(Array.from({ length: Math.min(10, count - i) }, () => certificateLess(port)))))
    t.equal(
      answers.filter(a => a.includes('"ACCESS_NO_CERTIFICATE"')).length,
      count,
      'each certificate-less request was refused ACCESS_NO_CERTIFICATE',
    )

    const access = await new Promise<{ status: number | null; stdout: string }>(resolve => {
      const c = spawn(
        process.execPath,
        [KIN, 'access', '--home', guestHome.dir, '--target', `127.0.0.1:${port}`, '--action', 'unlock', '--json'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      )
      let stdout = ''
      c.stdout.on('data', d => {
        stdout += d
      })
      c.on('close', status => resolve({ status, stdout }))
    })
    t.equal(access.status, 0, 'the guest is allowed')
    child.kill('SIGTERM')
    t.equal(await exited, 0, 'clean stop')

    const audit = readFileSync(`${home.dir}/audit.log`, 'utf8')
      .trim()
      .split('\n')
      .map(l => JSON.parse(l) as Record<string, unknown>)
    t.ok(audit.length <= 3, `a few lines, not one per refusal (${audit.length})`)
    const real = audit.find(a => a['peer'] === guest)
    t.equal(real?.['code'], 'ALLOW', "the guest's decision is in the audit log")
    t.equal(real?.['action'], 'unlock')
    const summary = audit.find(a => a['summary'] !== undefined)
    t.equal(summary?.['code'], 'ACCESS_NO_CERTIFICATE')
    t.equal(summary?.['peer'], null)
    t.same(
      summary?.['summary'],
      { remote: '127.0.0.1', since: (summary?.['summary'] as { since: number } | undefined)?.since, count },
      'with the count of the flood, from its address',
    )
  },
)

t.test(
  '--max-pending is checked: kin serve and kin broker refuse a bad value, and kin broker one it cannot honour',
  async t => {
    const run = (args: string[]) =>
      new Promise<{ status: number | null; out: string }>(resolve => {
        const c = spawn(process.execPath, [KIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
        let out = ''
        c.stdout.on('data', d => {
          out += d
        })
        c.stderr.on('data', d => {
          out += d
        })
        c.on('close', status => resolve({ status, out }))
      })
    const home = await house.home(lock)
    t.teardown(home.remove)
    for (const bad of ['0', '-1', 'many', '70000']) {
      const r = await run(['serve', '--home', home.dir, '--max-pending', bad])
      t.equal(r.status, 2, `kin serve --max-pending ${bad}`)
      t.match(r.out, /--max-pending/)
    }
    const r = await run([
      'broker',
      '--home',
      home.dir,
      '--no-broker',
      '--broker',
      'mqtts://127.0.0.1:1',
      '--max-pending',
      '8',
    ])
    t.equal(r.status, 2)
    t.match(r.out, /--max-pending applies to the broker L0 runs itself/)
  },
)
