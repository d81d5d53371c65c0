// Commands carried out by a running agent (DESIGN.md "The device runtime"): Ctrl-C of a `kin invite` it carries
// withdraws the code at L0 as the direct path does, the client exits 130 with one line, and the agent keeps serving;
// `kin check` on the agent's home decides on the agent's own replica and asks the miner through the agent's session.
import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { kin } from '../enroll/_harness.ts'
import { gossipFleet, startKinLines, until } from '../gossip/_fleet.ts'

const WAIT_MS = 120_000
const json = (s: string): Record<string, any> => JSON.parse(s) as Record<string, any>

t.test(
  'Ctrl-C of a kin invite carried by the agent: the code is withdrawn at L0, exit 130, the agent serves on',
  async t => {
    const fleet = await gossipFleet(t, ['admin'])
    const admin = fleet.devices[0]!
    const agent = startKinLines(t, ['serve', '--home', admin.home, '--port', '0', '--json'])
    await agent.waitJson(d => d['listening'] === true, WAIT_MS)

    const invite = startKinLines(t, ['invite', '--home', admin.home, '--role', 'guest', '--ttl', '5m'])
    const code = await until(() => invite.lines.some(l => /[a-z2-7]{4}-[a-z2-7]{4}/.test(l)), WAIT_MS)
    t.ok(code, 'the agent printed a code through the client')
    const registered = fleet.logs.find(l => l.event === 'invite.registered' && l.parentCn === admin.cn)
    t.ok(registered, 'L0 registered the invite')
    invite.signal('SIGINT')
    const done = await invite.done
    t.equal(done.status, 130, { stderr: done.stderr, stdout: done.stdout })
    const said = done.stderr.trim().split('\n')
    t.equal(said.length, 1, 'one line')
    t.match(
      said[0],
      /stopped by SIGINT: invite [0-9a-f]+ withdrawn; .*\[PAIR_WITHDRAWN\]$/,
      'says the code is withdrawn',
    )
    t.ok(
      fleet.logs.some(l => l.event === 'invite.withdrawn' && l.inviteId === registered!.inviteId),
      'L0 withdrew the invite: its code no longer works',
    )
    t.equal(fleet.services.invites.get(String(registered!.inviteId))?.state, 'withdrawn', "L0's record says so")

    const status = await kin(['status', '--home', admin.home, '--json'], { timeoutMs: WAIT_MS })
    t.equal(status.status, 0, { stderr: status.stderr })
    t.match(json(status.stdout), { cn: admin.cn }, 'the agent still answers kin status')
    agent.signal('SIGTERM')
    await agent.done
  },
)

t.test("kin check carried by the agent decides on the agent's replica, not a file swapped behind it", async t => {
  const fleet = await gossipFleet(t, ['admin', 'member'])
  const [admin, member] = fleet.devices as [(typeof fleet.devices)[0], (typeof fleet.devices)[0]]
  // The admin's home as enrolled: its ledger file does not hold the member, who enrolled after it.
  const asEnrolled = readFileSync(join(admin.home, 'ledger.cbor'))
  const agent = startKinLines(t, ['serve', '--home', admin.home, '--port', '0', '--json'])
  await agent.waitJson(d => d['listening'] === true, WAIT_MS)
  const synced = await kin(['sync', '--home', admin.home, '--json'], { timeoutMs: WAIT_MS })
  t.equal(synced.status, 0, { stderr: synced.stderr })
  t.ok(readFileSync(join(admin.home, 'ledger.cbor')).length > asEnrolled.length, 'the agent wrote the member in')

  // A file put back behind the agent (what a direct kin check would read) changes nothing for the agent's decisions.
  writeFileSync(join(admin.home, 'ledger.cbor'), asEnrolled)
  const r = await kin(
    ['check', '--home', admin.home, '--peer', join(member.home, 'cert.pem'), '--action', 'view', '--json'],
    { timeoutMs: WAIT_MS },
  )
  t.equal(r.status, 0, { stdout: r.stdout, stderr: r.stderr })
  t.match(json(r.stdout), { allow: true, peer: member.cn }, "decided on the agent's replica")
  const audit = readFileSync(join(admin.home, 'audit.log'), 'utf8')
  t.match(audit, member.cn, 'the decision is in audit.log')
  agent.signal('SIGTERM')
  await agent.done
})
