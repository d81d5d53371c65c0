import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import { EXIT_REVOKED } from '../../cli/output.ts'
import { expectExit, kin, lastJson } from '../enroll/_harness.ts'
import { enrollThroughL0, gossipFleet, startKinLines, type KinLines } from '../gossip/_fleet.ts'

// DESIGN.md "The device runtime": a device whose identity was revoked is told so plainly and stops serving. A real
// L0 (aedes over mutual TLS), real `kin serve` processes following it, revocations made with `kin revoke`.
const fleet = await gossipFleet(t, ['admin', 'member', 'device', 'member'])
const [admin, phone, lock, tablet] = fleet.devices as [
  (typeof fleet.devices)[0],
  (typeof fleet.devices)[0],
  (typeof fleet.devices)[0],
  (typeof fleet.devices)[0],
]

/** `kin serve --json` on a home, once it listens and its follower is online (subscribed to the ledger's topics). */
async function serving(t: Test, home: string): Promise<KinLines & { exited: () => boolean }> {
  const serve = startKinLines(t, ['serve', '--home', home, '--json'])
  let exited = false
  void serve.done.then(() => {
    exited = true
  })
  await serve.waitJson(d => d['listening'] === true && d['following'] === true, 30_000)
  await serve.waitJson(d => d['broker'] === 'online', 30_000)
  return { ...serve, exited: () => exited }
}

function auditLines(home: string): Array<Record<string, unknown>> {
  return readFileSync(join(home, 'audit.log'), 'utf8')
    .split('\n')
    .filter(l => l !== '')
    .map(l => JSON.parse(l) as Record<string, unknown>)
}

t.test(
  'the lock revoked by its parent while kin serve runs: told plainly, audited, stops with EXIT_REVOKED; its sibling serves on',
  async t => {
    const [lockServe, tabletServe] = await Promise.all([serving(t, lock.home), serving(t, tablet.home)])
    const revoked = await kin(['revoke', '--home', admin.home, lock.cn, '--reason', 'lost', '--json'])
    expectExit(t, revoked, 0, 'the admin revokes the lock')

    const told = await lockServe.waitJson(d => d['revoked'] === true, 30_000)
    const message = told['message'] as string
    t.equal(told['code'], 'IDENTITY_REVOKED')
    t.match(
      message,
      `this device (${lock.cn}, "device 2") was revoked (lost) by ${admin.cn} ("device 0"), effective `,
      'it names itself, the reason and who revoked it',
    )
    t.match(
      message,
      /effective \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: it stops serving; enroll it again to bring it back$/,
      'from when, and what to do',
    )
    const exit = await lockServe.done
    t.equal(exit.status, EXIT_REVOKED, `kin serve exits ${EXIT_REVOKED}`)
    t.match(
      JSON.parse(exit.stdout.trim().split('\n').at(-1)!),
      { stopped: true, code: 'IDENTITY_REVOKED', status: EXIT_REVOKED },
      'its last line says why it stopped',
    )
    t.ok(
      auditLines(lock.home).some(r => r['alarm'] === 'IDENTITY_REVOKED' && r['message'] === message),
      'audit.log holds the same line',
    )
    t.notOk(
      exit.stdout.split('\n').some(l => l.includes('BROKER_REFUSED')),
      'it never looped on a refused login',
    )

    t.notOk(tabletServe.exited(), "the tablet, the lock's sibling, still serves")
    t.notOk(
      tabletServe.lines.some(l => l.includes('IDENTITY_REVOKED')),
      'and was told nothing of the kind',
    )

    // Started again afterwards: it refuses to serve, with the same message, and never listens.
    const again = await kin(['serve', '--home', lock.home, '--json'])
    expectExit(t, again, EXIT_REVOKED, 'a revoked device started again exits at once')
    t.match(lastJson(again.stdout), { revoked: true, code: 'IDENTITY_REVOKED', message }, 'with the same message')
    t.notOk(again.stdout.includes('"listening"'), 'without listening')
    t.equal(auditLines(lock.home).filter(r => r['alarm'] === 'IDENTITY_REVOKED').length, 2, 'and audits it again')
    const sync = await kin(['sync', '--home', lock.home, '--json'])
    expectExit(t, sync, EXIT_REVOKED, 'kin sync on the revoked lock (L0 refuses its login) says so too')
    t.match(lastJson(sync.stdout), { code: 'IDENTITY_REVOKED', message })

    tabletServe.signal('SIGTERM')
    t.equal((await tabletServe.done).status, 0, 'the tablet stops cleanly when asked')
  },
)

t.test(
  'a planned retirement (effective later) is served up to its effective time, then told and stopped like any revocation',
  async t => {
    const tabletServe = await serving(t, tablet.home)
    const effective = Math.floor(Date.now() / 1000) + 6
    const revoked = await kin([
      'revoke',
      '--home',
      admin.home,
      tablet.cn,
      '--reason',
      'retired',
      '--effective',
      new Date(effective * 1000).toISOString(),
      '--json',
    ])
    expectExit(t, revoked, 0, 'the admin retires the tablet from a time to come')
    const id = (lastJson(revoked.stdout) as { id: string }).id
    const told = await tabletServe.waitJson(d => d['revoked'] === true, 30_000)
    t.match(
      told['message'],
      `this device (${tablet.cn}, "device 3") was revoked (retired) by ${admin.cn} ("device 0"), effective ${new Date(effective * 1000).toISOString().replace('.000Z', 'Z')}`,
    )
    t.equal((await tabletServe.done).status, EXIT_REVOKED)
    const audited = auditLines(tablet.home).find(r => r['alarm'] === 'IDENTITY_REVOKED')
    t.ok(
      audited !== undefined && (audited['time'] as number) >= effective,
      'it stopped at the effective time, not when the revoke arrived',
    )
    t.equal((audited?.['notice'] as { eventId?: string } | undefined)?.eventId, id, 'the audit names the revoke event')
  },
)

t.test('a subtree revocation of an ancestor stops its descendants, not a device under another parent', async t => {
  const neighbour = await enrollThroughL0(fleet, 'member', 'neighbour')
  const [phoneServe, neighbourServe] = await Promise.all([serving(t, phone.home), serving(t, neighbour.home)])
  // The admin's home is followed by 'kin sync --follow'; its 'kin serve' then serves from the file that process writes.
  const adminFollow = startKinLines(t, ['sync', '--home', admin.home, '--follow', '--json'])
  await adminFollow.waitJson(d => d['status'] === 'online', 30_000)
  const adminServe = startKinLines(t, ['serve', '--home', admin.home, '--json'])
  await adminServe.waitJson(d => d['listening'] === true && d['following'] === false, 30_000)
  const revoked = await kin([
    'revoke',
    '--home',
    fleet.l0.dir,
    admin.cn,
    '--subtree',
    '--reason',
    'compromised',
    '--broker',
    fleet.url,
    '--json',
  ])
  expectExit(t, revoked, 0, 'L0 revokes the admin with its subtree')

  const told = await phoneServe.waitJson(d => d['revoked'] === true, 30_000)
  const message = told['message'] as string
  t.match(
    message,
    `this device (${phone.cn}, "device 1") falls with its ancestor ${admin.cn}, revoked with its subtree (compromised) by ${fleet.l0.cn}`,
  )
  t.equal((await phoneServe.done).status, EXIT_REVOKED, `the phone's kin serve exits ${EXIT_REVOKED}`)
  t.ok(
    auditLines(phone.home).some(r => r['alarm'] === 'IDENTITY_REVOKED' && r['message'] === message),
    'its audit.log holds the line',
  )

  const again = await kin(['serve', '--home', phone.home, '--json'])
  expectExit(t, again, EXIT_REVOKED, 'started again, it refuses to serve')
  t.match(lastJson(again.stdout), { code: 'IDENTITY_REVOKED', message })

  const followed = await adminFollow.waitJson(d => d['revoked'] === true, 30_000)
  t.match(
    followed,
    {
      code: 'IDENTITY_REVOKED',
      message: `this device (${admin.cn}, "device 0") was revoked (compromised) by ${fleet.l0.cn}`,
    },
    'kin sync --follow on the admin says so',
  )
  t.equal((await adminFollow.done).status, EXIT_REVOKED, `and exits ${EXIT_REVOKED}`)
  const fromFile = await adminServe.waitJson(d => d['revoked'] === true, 30_000)
  t.equal(
    fromFile['message'],
    followed['message'],
    "the admin's kin serve, reading the file the follower wrote, stops with the same line",
  )
  t.equal((await adminServe.done).status, EXIT_REVOKED)

  t.notOk(neighbourServe.exited(), 'the neighbour, under L0, still serves')
  neighbourServe.signal('SIGTERM')
  t.equal((await neighbourServe.done).status, 0)
})
