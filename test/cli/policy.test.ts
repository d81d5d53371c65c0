// kin policy show|set as a person types them, on homes of a fleet whose L0 runs in this process over real MQTT/TLS:
// the admin signs a policy for the lock, L0 seals it, the lock picks it up and decides by it; the schema's refusals.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { kin } from '../enroll/_harness.ts'
import { gossipFleet } from '../gossip/_fleet.ts'

const json = (s: string): Record<string, any> => JSON.parse(s) as Record<string, any>

t.test('kin policy set by an ancestor reaches the lock and narrows its decisions; show lists the layers', async t => {
  const fleet = await gossipFleet(t, ['admin', 'member', 'device'])
  const [admin, member, lock] = fleet.devices as [
    (typeof fleet.devices)[0],
    (typeof fleet.devices)[0],
    (typeof fleet.devices)[0],
  ]
  const check = async () =>
    json(
      (await kin(['check', '--home', lock.home, '--peer', join(member.home, 'cert.pem'), '--action', 'view', '--json']))
        .stdout,
    )

  const before = await kin(['policy', 'show', '--home', lock.home, '--json'])
  t.equal(before.status, 0, { stderr: before.stderr })
  t.same(
    json(before.stdout).layers.map((l: { source: string }) => l.source),
    ['default'],
    'the default policy alone',
  )
  t.equal(json(before.stdout).limits.maxHops, 8)
  t.match(await check(), { allow: true }, 'a member may view the lock by default')

  const dir = join(fleet.l0.dir, '..')
  const good = join(dir, 'lock-policy.json')
  writeFileSync(
    good,
    JSON.stringify({
      maxHops: 3,
      maxHeadAge: '1h',
      rules: [{ action: 'view', roles: ['admin'], from: '00:00', to: '24:00' }],
    }),
  )

  const notAncestor = await kin(['policy', 'set', '--home', member.home, lock.cn, '--file', good, '--json'])
  t.equal(notAncestor.status, 1, 'a member beside the lock may not set its policy')
  t.equal(json(notAncestor.stdout).code, 'POLICY_NOT_ANCESTOR')

  for (const [doc, why] of [
    [{ rules: [{ action: 'view', roles: ['owner'] }] }, 'an unknown role'],
    [{ rules: [{ action: 'view', roles: ['admin'], from: '25:00' }] }, 'a time of day that is not one'],
    [{ maxHop: 3 }, 'a misspelt field'],
    [{ anchors: ['no such device'] }, 'an anchor the ledger does not know'],
  ] as const) {
    const bad = join(dir, 'bad-policy.json')
    writeFileSync(bad, JSON.stringify(doc))
    const r = await kin(['policy', 'set', '--home', admin.home, lock.cn, '--file', bad, '--json'])
    t.equal(r.status, 2, why)
    t.equal(json(r.stdout).code, 'POLICY_INVALID', `${why}: POLICY_INVALID`)
  }
  writeFileSync(join(dir, 'not.json'), '{"rules": [')
  t.equal(
    json(
      (await kin(['policy', 'set', '--home', admin.home, lock.cn, '--file', join(dir, 'not.json'), '--json'])).stdout,
    ).code,
    'POLICY_INVALID',
    'a file that is not JSON',
  )

  const set = await kin(['policy', 'set', '--home', admin.home, 'device 2', '--file', good, '--json'], {
    timeoutMs: 120_000,
  })
  t.equal(set.status, 0, { stderr: set.stderr, stdout: set.stdout })
  const out = json(set.stdout)
  t.match(
    out,
    { ok: true, cn: lock.cn, by: admin.cn, delivered: true },
    'signed by the admin for the lock (named by its name), sealed by L0',
  )
  t.match(
    out.policy,
    { maxHops: 3, maxHeadAge: 3600, rules: [{ action: 'view', roles: ['admin'], from: 0, to: 86400 }] },
    'the file as the event carries it',
  )

  const synced = await kin(['sync', '--home', lock.home, '--json'], { timeoutMs: 120_000 })
  t.equal(synced.status, 0, { stderr: synced.stderr })
  const after = json((await kin(['policy', 'show', '--home', lock.home, '--json'])).stdout)
  t.match(
    after.layers[0],
    { source: new RegExp(`^policy ${out.id.slice(0, 16)} by ${admin.cn} on ${lock.cn}$`), maxHops: 3 },
    'the event is the highest layer',
  )
  t.equal(after.layers.at(-1).source, 'default', 'above the default')
  t.same(after.limits, { maxHops: 3, maxHeadAge: 3600, anchors: [] }, 'and sets the limits')
  t.match(await check(), { allow: false, code: 'POLICY_ROLE' }, 'the lock now lets only admins view it')

  const text = await kin(['policy', 'show', '--home', lock.home])
  t.match(text.stdout, /at most 3 hops .* ledger head at most 3600 s old/)
  t.match(text.stdout, /view: admin, all day/)
})
