// DESIGN.md "The device runtime: one agent per home": while `kin serve` runs, invite (with a device enrolling), revoke,
// access, sync, status and ledger verify on its home are carried out through its control socket — together, round
// after round, with the agent SIGKILLed and started again in between — and the ledger verifies every time: no
// DUPLICATE_EVENT, no STORAGE_BUSY, no STORAGE_DAMAGED. The real CLI as a person runs it, against a real `kin broker`.
import t from 'tap'
import { lstatSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { expectExit, kin, lastJson, tempDir, type KinRun } from '../enroll/_harness.ts'
import { startKinLines } from '../gossip/_fleet.ts'

/** Rounds of the agent being started, used from several commands at once, and SIGKILLed. */
const ROUNDS = 3
/** Every wait below gives up after this long (a loaded machine is slow, never wrong). */
const WAIT_MS = 90_000

// One test around all of it: the homes and the broker last from the first step to the last.
t.test('an agent used by many commands at once, SIGKILLed between rounds', async t => {
  const dir = tempDir(t, 'agent')
  const l0 = join(dir, 'l0'),
    phone = join(dir, 'phone')
  const runs: Array<{ what: string; run: KinRun }> = []
  /** Runs `kin …args` and keeps its output for the check that nothing anywhere said DUPLICATE_EVENT or STORAGE_BUSY. */
  async function run(what: string, args: string[]): Promise<KinRun> {
    const r = await kin(args, { timeoutMs: WAIT_MS })
    runs.push({ what, run: r })
    return r
  }
  const cnOf = (home: string): string =>
    (JSON.parse(readFileSync(join(home, 'config.json'), 'utf8')) as { cn: string }).cn

  expectExit(t, await run('init', ['init', '--home', l0, '--fleet', 'agent.home.arpa']), 0, 'kin init makes L0')
  const broker = startKinLines(t, ['broker', '--home', l0, '--port', '0', '--json'])
  const up = await broker.waitJson(d => typeof d['port'] === 'number', WAIT_MS)
  const url = `mqtts://127.0.0.1:${String(up['port'])}`

  /** `kin invite` on `parent` and `kin enroll` of `child` with the code it prints, as two people would. */
  async function enrollUnder(
    parent: string,
    child: string,
    role: string,
    name: string,
  ): Promise<{ invite: KinRun; enroll: KinRun }> {
    const invite = startKinLines(t, [
      'invite',
      '--home',
      parent,
      '--role',
      role,
      '--name',
      name,
      '--ttl',
      '2m',
      '--json',
    ])
    const code = await invite.waitJson(d => typeof d['code'] === 'string', WAIT_MS)
    const enroll = await run(`enroll ${name}`, [
      'enroll',
      '--home',
      child,
      '--code',
      String(code['code']),
      '--broker',
      url,
      '--kind',
      'phone',
      '--json',
    ])
    const done = await invite.done
    runs.push({ what: `invite ${name}`, run: done })
    return { invite: done, enroll }
  }

  /** Asks `target` for unlock from `home` until the exit status is `status` (gossip takes a moment); the last run. */
  async function accessUntil(home: string, target: string, status: number): Promise<KinRun> {
    const end = Date.now() + WAIT_MS
    for (;;) {
      const r = await run(`access from ${home}`, [
        'access',
        '--home',
        home,
        '--target',
        target,
        '--action',
        'unlock',
        '--json',
      ])
      if (r.status === status || Date.now() > end) return r
      await new Promise(resolve => setTimeout(resolve, 500))
    }
  }

  const first = await enrollUnder(l0, phone, 'member', "owner's phone")
  expectExit(t, first.enroll, 0, "the owner's phone enrolls under L0")
  expectExit(t, first.invite, 0, "L0's invite sees it certified")

  for (let round = 0; round < ROUNDS; round++) {
    await t.test(`round ${round + 1} of ${ROUNDS}: commands through the agent, then SIGKILL`, async t => {
      const agent = startKinLines(t, ['serve', '--home', phone, '--port', '0', '--json'])
      const listening = await agent.waitJson(d => d['listening'] === true, WAIT_MS)
      t.equal(listening['control'], join(phone, 'agent.sock'), 'the agent listens on its control socket')
      t.equal(lstatSync(join(phone, 'agent.sock')).mode & 0o777, 0o600, 'mode 0600')
      await agent.waitJson(d => d['broker'] === 'online', WAIT_MS)
      const target = `127.0.0.1:${String(listening['port'])}`
      const guest = join(dir, `guest${round}`)

      // Together: a guest invited and enrolling, the status, a sync and a verify of the home the agent owns.
      const [enrolled, status, synced, verified] = await Promise.all([
        enrollUnder(phone, guest, 'guest', `guest ${round}`),
        run('status', ['status', '--home', phone, '--json']),
        run('sync', ['sync', '--home', phone, '--json']),
        run('verify', ['ledger', 'verify', '--home', phone, '--json']),
      ])
      expectExit(t, enrolled.enroll, 0, 'the guest enrolls')
      expectExit(t, enrolled.invite, 0, "the phone's invite, carried out by its agent, sees it certified")
      expectExit(t, status, 0, 'kin status')
      t.match(JSON.parse(status.stdout), { agent: { what: /kin serve/ } }, 'status, carried out by the agent, names it')
      expectExit(t, synced, 0, "kin sync, on the agent's own session")
      // One JSON document, as the direct path prints: the heads the agent adopts meanwhile are the agent's lines, not the client's.
      t.match(JSON.parse(synced.stdout), { ok: true, cn: cnOf(phone) }, 'kin sync --json prints its one report')
      expectExit(t, verified, 0, 'kin ledger verify')

      const guestCn = cnOf(guest)
      expectExit(t, await accessUntil(guest, target, 0), 0, 'the guest is let in by the phone')
      const self = await run('access to itself', [
        'access',
        '--home',
        phone,
        '--target',
        target,
        '--action',
        'unlock',
        '--json',
      ])
      t.not(self.status, 2, `the phone's own kin access runs through its agent (exit ${self.status})`)

      const revoked = await run('revoke', ['revoke', '--home', phone, guestCn, '--reason', 'retired', '--json'])
      expectExit(t, revoked, 0, 'the phone revokes the guest through its agent')
      t.match(lastJson(revoked.stdout), { ok: true, delivered: true })
      const refused = await accessUntil(guest, target, 1)
      expectExit(t, refused, 1, 'and the phone refuses the guest')
      t.match(lastJson(refused.stdout), { code: 'ACCESS_REVOKED' })

      agent.signal('SIGKILL')
      t.equal((await agent.done).status, null, 'the agent is killed')
      const after = await run('verify after SIGKILL', ['ledger', 'verify', '--home', phone, '--json'])
      expectExit(t, after, 0, 'the ledger verifies after the SIGKILL')
      t.match(lastJson(after.stdout), { ok: true })
    })
  }

  t.test('nothing said DUPLICATE_EVENT, STORAGE_BUSY or STORAGE_DAMAGED', async t => {
    t.ok(runs.length > ROUNDS * 8, `${runs.length} commands ran`)
    for (const { what, run } of runs)
      t.notMatch(run.stdout + run.stderr, /DUPLICATE_EVENT|STORAGE_BUSY|STORAGE_DAMAGED|AGENT_LOST/, what)
    const shown = await run('show', ['ledger', 'show', '--home', phone, '--json'])
    const events = (JSON.parse(shown.stdout) as { events: Array<{ id: string }> }).events
    t.equal(
      new Set(events.map(e => e.id)).size,
      events.length,
      `each of the ${events.length} events is in the ledger once`,
    )
    t.equal(
      events.filter(e => (e as unknown as { type: string }).type === 'revoke').length,
      ROUNDS,
      'one revocation per round',
    )
    broker.signal('SIGTERM')
    await broker.done
  })
})
