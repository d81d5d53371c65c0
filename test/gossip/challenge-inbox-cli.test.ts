// `kin serve` answers challenges on its inbox, `kin access --inbox CN` asks there (PROTOCOL.md §12.4): as a user runs them.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { Home } from '../../runtime/home.ts'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { expectExit, kin, lastJson } from '../enroll/_harness.ts'
import { gossipFleet, startKinLines, until } from './_fleet.ts'

t.test(
  'kin access --inbox: allowed, denied by policy, refused usage, timed out; kin serve audits what it answered',
  async t => {
    const fleet = await gossipFleet(t, ['admin', 'member', 'device', 'device'], { start: 'all' })
    const [, member, lock, camera] = fleet.devices
    const serve = startKinLines(t, ['serve', '--home', lock!.home, '--port', '0', '--json'])
    const listening = await serve.waitJson(d => d['listening'] === true, 20_000)
    t.equal(
      listening['inbox'],
      fleetTopics(fleet.l0.domain).inboxAll(lock!.cn),
      'the first line names the inbox it answers on',
    )
    await serve.waitJson(d => d['inbox'] === 'listening', 20_000)

    const ask = (home: string, extra: string[]) =>
      kin(['access', '--home', home, '--inbox', lock!.cn, '--json', ...extra])
    const allowed = await ask(member!.home, ['--action', 'unlock'])
    expectExit(t, allowed, 0, 'the member may unlock')
    const answer = lastJson(allowed.stdout)
    t.equal(answer['code'], 'ALLOW')
    t.equal(answer['via'], 'inbox')
    t.equal(answer['server'], lock!.cn, 'the verdict was signed by the lock')
    t.equal(answer['peer'], member!.cn)

    const denied = await ask(camera!.home, ['--action', 'unlock'])
    expectExit(t, denied, 1, 'a device may not unlock another')
    t.equal(lastJson(denied.stdout)['code'], 'POLICY_ACTION')

    const text = await kin(['access', '--home', member!.home, '--inbox', lock!.cn, '--action', 'view'])
    expectExit(t, text, 0, 'without --json')
    t.match(text.stdout, new RegExp(`${lock!.cn} answered over its inbox: ALLOW "view"`))

    const both = await kin(['access', '--home', member!.home, '--inbox', lock!.cn, '--target', '127.0.0.1:1', '--json'])
    expectExit(t, both, 2, '--inbox and --target together')
    t.equal(lastJson(both.stdout)['code'], 'USAGE')
    t.match(String(lastJson(both.stdout)['message']), /either --target/)
    const neither = await kin(['access', '--home', member!.home])
    expectExit(t, neither, 2, 'neither')
    t.match(neither.stderr, /--target HOST:PORT .* or --inbox CN/)
    const notCn = await kin(['access', '--home', member!.home, '--inbox', 'kin/+/#', '--json'])
    expectExit(t, notCn, 2, 'a CN that is no device of the fleet')
    t.equal(lastJson(notCn.stdout)['code'], 'USAGE')

    const silent = await kin([
      'access',
      '--home',
      member!.home,
      '--inbox',
      camera!.cn,
      '--action',
      'view',
      '--timeout',
      '500ms',
      '--json',
    ])
    expectExit(t, silent, 2, 'a device that does not serve')
    t.equal(lastJson(silent.stdout)['code'], 'ACCESS_TIMEOUT')

    t.ok(
      await until(() => serve.lines.filter(l => l.includes('"via":"inbox"')).length === 3, 5000),
      'kin serve printed the three decisions',
    )
    const printed = serve.lines.map(l => JSON.parse(l) as Record<string, unknown>).filter(d => d['via'] === 'inbox')
    t.same(
      printed.map(d => (d['decision'] as Record<string, unknown>)['code']),
      ['ALLOW', 'POLICY_ACTION', 'ALLOW'],
    )
    t.same(
      printed.map(d => d['from']),
      [member!.cn, camera!.cn, member!.cn],
    )
    const audit = readFileSync(new Home(lock!.home).path('audit'), 'utf8')
      .trim()
      .split('\n')
      .map(l => JSON.parse(l) as Record<string, unknown>)
    t.same(
      audit.map(r => [r['peer'], r['action'], r['code']]),
      [
        [member!.cn, 'unlock', 'ALLOW'],
        [camera!.cn, 'unlock', 'POLICY_ACTION'],
        [member!.cn, 'view', 'ALLOW'],
      ],
      'audited like a TLS decision',
    )

    // Asked from a home whose own kin serve runs: carried out by that agent, on its broker session (not pushing it off).
    const memberServe = startKinLines(t, ['serve', '--home', member!.home, '--port', '0', '--json'])
    await memberServe.waitJson(d => d['broker'] === 'online', 30_000)
    const viaAgent = await ask(member!.home, ['--action', 'unlock'])
    expectExit(t, viaAgent, 0, 'the member, through its own agent, may unlock')
    t.equal(lastJson(viaAgent.stdout)['server'], lock!.cn)
    t.notOk(
      memberServe.lines.some(l => l.includes('"broker":"offline"')),
      "the member's agent kept its broker session",
    )
    memberServe.signal('SIGTERM')
    t.equal((await memberServe.done).status, 0)

    serve.signal('SIGTERM')
    const done = await serve.done
    t.equal(done.status, 0, 'stops cleanly')
  },
)
