import t from 'tap'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { INVITES_FILE, InviteBook, readInvites } from '../../broker/invites.ts'
import { derivePairingSecrets } from '../../agent/enroll/pairing.ts'
import { awaitAuthorization, fleetOfBroker } from '../../agent/gossip/enroll-session.ts'
import { connectPairing } from '../../agent/gossip/login.ts'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { expectExit, kin, lastJson, startFleet, startKin, tempDir, type TestL0 } from './_harness.ts'

// docs/PAIRING.md "Withdrawal": a stopped `kin invite` withdraws its invite — the device waiting with the code is
// told PAIR_WITHDRAWN at once (not after its 60 s timeout), and L0 refuses the code from then on.

const WAIT_MS = 60_000

function inviteState(l0: TestL0, inviteId: string): string | undefined {
  return readInvites(join(l0.home, INVITES_FILE)).find(i => i.inviteId === inviteId)?.state
}

t.test('Ctrl-C on kin invite withdraws the invite', async t => {
  const l0 = await startFleet(t, 'withdraw')

  t.test('a device waiting with the code is told PAIR_WITHDRAWN at once', async t => {
    const invite = startKin(['invite', '--home', l0.home, '--broker', l0.url, '--json'], { timeoutMs: 2 * WAIT_MS })
    const { code, inviteId } = JSON.parse(await invite.firstLine) as { code: string; inviteId: string }
    // The enrolling device's own session and wait (enroll-session.ts), logged in with the code, before it sends
    // its request: the moment a person gives up on the inviting side.
    const secrets = derivePairingSecrets(code)
    const child = await connectPairing(nodeTransport, l0.url, secrets, { timeoutMs: WAIT_MS })
    t.teardown(() => child.close())
    const topics = fleetTopics(fleetOfBroker(child, nodeCrypto.sha256))
    await child.subscribe([topics.pair(inviteId, 'authorize')])
    t.equal(inviteState(l0, inviteId), 'used', 'the device logged in with the code')
    // A wait far above anything the test allows for: PAIR_TIMEOUT would mean the device was never told.
    const answer = awaitAuthorization(child, secrets, topics, 10 * WAIT_MS)
    const toldAt = answer.then(
      () => NaN,
      () => Date.now(),
    )
    const stoppedAt = Date.now()
    process.kill(invite.pid!, 'SIGINT')
    const parent = await invite.done
    expectExit(t, parent, 130, 'kin invite exits 130 on SIGINT')
    const said = lastJson(parent.stdout)
    t.equal(said.code, 'PAIR_WITHDRAWN')
    t.match(said.detail, { signal: 'SIGINT', inviteId, withdrawn: true }, 'L0 confirmed the withdrawal')
    t.match(said.message, /no longer works/)
    await t.rejects(
      answer,
      { code: 'PAIR_WITHDRAWN', message: /withdrew the invite.*kin invite/ },
      'the device is told with a code, not left to time out',
    )
    t.comment(`the waiting device was told ${(await toldAt) - stoppedAt} ms after the SIGINT`)
    t.equal(inviteState(l0, inviteId), 'withdrawn', "L0's invite book says withdrawn")
    t.ok(
      l0.logs.some(r => r.event === 'invite.withdrawn' && r.inviteId === inviteId),
      'L0 logs the withdrawal',
    )
  })

  t.test('a code withdrawn before anyone used it no longer logs in', async t => {
    const invite = startKin(['invite', '--home', l0.home, '--broker', l0.url], { timeoutMs: 2 * WAIT_MS })
    const code = /pairing code: (\S+)/.exec(await invite.firstLine)![1]!
    invite.kill()
    const parent = await invite.done
    expectExit(t, parent, 143, 'kin invite exits 143 on SIGTERM')
    t.match(parent.stderr, /withdrawn; code .* no longer works.*\[PAIR_WITHDRAWN\]/, 'the person is told plainly')
    const dir = join(l0.dir, 'late')
    const late = await kin(['enroll', '--home', dir, '--code', code, '--broker', l0.url, '--json'])
    expectExit(t, late, 1, 'kin enroll exits 1')
    const out = lastJson(late.stdout)
    t.equal(out.code, 'PAIR_CODE_EXPIRED', 'CONNACK 5, as for an expired code')
    t.match(out.message, /withdrew it/)
    t.ok(
      l0.logs.some(r => r.event === 'login.refused' && r.code === 'PAIR_WITHDRAWN'),
      'L0 refused the login as withdrawn',
    )
    t.notOk(existsSync(dir), 'no home is written')
  })
})

t.test('InviteBook.withdraw: durable, idempotent, refused once a certificate was issued', async t => {
  const path = join(tempDir(t, 'book'), 'invites.json')
  const book = InviteBook.open(path)
  const base = {
    loginVerifier: 'a'.repeat(64),
    parentCn: 'p.example.home.arpa',
    role: 'device' as const,
    name: '',
    expires: 2000,
    time: 1000,
  }
  book.register({ ...base, inviteId: '0123456789abcdef' }, 1000)
  book.register({ ...base, inviteId: 'fedcba9876543210' }, 1000)
  book.withdraw('0123456789abcdef', 1100)
  book.withdraw('0123456789abcdef', 1200)
  t.equal(InviteBook.open(path).get('0123456789abcdef')?.state, 'withdrawn', 'the withdrawal is on disk')
  t.equal(InviteBook.open(path).get('0123456789abcdef')?.withdrawnAt, 1100, 'withdrawing twice changes nothing')
  book.markDone('fedcba9876543210', 'child.example.home.arpa')
  t.throws(
    () => book.withdraw('fedcba9876543210', 1300),
    { code: 'ENROLL_STATE' },
    'an invite a certificate was issued under cannot be withdrawn',
  )
  t.throws(
    () => book.withdraw('00000000000000ff', 1300),
    { code: 'INVITE_REFUSED' },
    'an unknown invite cannot be withdrawn',
  )
})
