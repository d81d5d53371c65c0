import t from 'tap'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { formatPairingCode } from '../../agent/enroll/pairing.ts'
import { enrollThroughBroker } from '../../agent/gossip/enroll-session.ts'
import { completeInvite, openInvite } from '../../agent/gossip/invite-session.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { inviterOf, kin, lastJson, startFleet, startKin } from './_harness.ts'

const now = () => Math.floor(Date.now() / 1000)
const choices = { role: 'device' as const, name: '', ttlSeconds: 120, guestValidSeconds: 86400 }

// docs/PAIRING.md step 2: a code works once, until it expires; L0 answers with CONNACK 4/2/5, kin enroll with PAIR_CODE_*.
t.test('pairing codes: used, expired and wrong codes are refused with their codes and leave no home', async t => {
  const l0 = await startFleet(t, 'codes')

  t.test('a code works once: a second enroll with it is PAIR_CODE_USED', async t => {
    const { inviter, client } = await inviterOf(l0.home, l0.url)
    t.teardown(() => client.close())
    const opened = await openInvite(nodeCrypto, client, inviter, choices, { now: now(), timeoutMs: 10_000 })
    const parent = completeInvite(nodeCrypto, nodePki, client, inviter, opened, {
      keep: async () => undefined,
      now,
      stepTimeoutMs: 20_000,
    })
    const first = await enrollThroughBroker(nodeCrypto, nodePki, nodeTransport, {
      code: opened.code,
      url: l0.url,
      kind: 'camera',
      name: 'porch camera',
      stepTimeoutMs: 20_000,
      now,
    })
    t.equal((await parent).childCn, first.cn, 'the first enrollment with the code succeeds')
    const dir = join(l0.dir, 'second')
    const again = await kin(['enroll', '--home', dir, '--code', opened.code, '--broker', l0.url, '--json'])
    t.equal(again.status, 1, 'kin enroll exits 1')
    const out = lastJson(again.stdout)
    t.equal(out.code, 'PAIR_CODE_USED')
    t.match(out.message, /ask the inviter for a new code/)
    t.notOk(existsSync(dir), 'no home is written')
    t.ok(
      l0.logs.some(r => r.event === 'login.refused' && r.code === 'PAIR_CODE_USED' && r.connack === 2),
      'L0 refused the login with CONNACK 2',
    )
  })

  t.test('an expired code is PAIR_CODE_EXPIRED for the enrolling device, and kin invite ends with it too', async t => {
    const invite = startKin(['invite', '--home', l0.home, '--broker', l0.url, '--ttl', '5s', '--json'])
    const { code, expires } = JSON.parse(await invite.firstLine) as { code: string; expires: number }
    // Wait until the code's expiry second has passed on L0's clock.
    while (Date.now() / 1000 < expires + 1) await new Promise(r => setTimeout(r, 200))
    const dir = join(l0.dir, 'late')
    const late = await kin(['enroll', '--home', dir, '--code', code, '--broker', l0.url, '--json'])
    t.equal(late.status, 1, 'kin enroll exits 1')
    t.equal(lastJson(late.stdout).code, 'PAIR_CODE_EXPIRED')
    t.notOk(existsSync(dir), 'no home is written')
    const inviter = await invite.done
    t.equal(inviter.status, 1, 'kin invite exits 1 when its code expired unused')
    t.equal(lastJson(inviter.stdout).code, 'PAIR_CODE_EXPIRED')
    t.equal(inviter.stdout.trim().split('\n').length, 2, '--json: the code line, then one result line')
  })

  t.test('a well-formed code L0 never issued is PAIR_CODE_WRONG', async t => {
    const dir = join(l0.dir, 'wrong')
    const code = formatPairingCode(nodeCrypto.randomBytes(10))
    const wrong = await kin(['enroll', '--home', dir, '--code', code, '--broker', l0.url])
    t.equal(wrong.status, 1, 'kin enroll exits 1')
    t.match(wrong.stderr, /PAIR_CODE_WRONG/)
    t.match(wrong.stderr, /check it for a typo, or ask the inviter for a new code/, 'the message says what to do')
    t.notOk(existsSync(dir), 'no home is written')
  })
})
