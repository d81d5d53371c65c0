import t from 'tap'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { formatPairingCode } from '../../agent/enroll/pairing.ts'
import { enrollThroughBroker } from '../../agent/gossip/enroll-session.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { kin, lastJson, startFleet } from './_harness.ts'

const now = () => Math.floor(Date.now() / 1000)

// Refusals that need no invite: the CLI checks its arguments and the code's form before it talks to L0.
t.test('kin enroll and kin invite: malformed codes, existing homes and bad arguments are refused (exit 2)', async t => {
  const l0 = await startFleet(t, 'args')

  t.test('a malformed code is PAIR_CODE_FORMAT before anything is sent', async t => {
    const logins = l0.logs.filter(r => String(r.event).startsWith('login.')).length
    const bads = ['abcd-efgh', 'abcd-efgh-ijkl-mno9', '']
    const runs = await Promise.all(
      bads.map((bad, i) =>
        kin(['enroll', '--home', join(l0.dir, `malformed-${i}`), '--code', bad, '--broker', l0.url, '--json']),
      ),
    )
    bads.forEach((bad, i) => {
      t.equal(runs[i]!.status, 2, `"${bad}": exit 2`)
      t.equal(lastJson(runs[i]!.stdout).code, bad === '' ? 'USAGE' : 'PAIR_CODE_FORMAT', `"${bad}"`)
      t.notOk(existsSync(join(l0.dir, `malformed-${i}`)), 'no home is written')
    })
    t.equal(l0.logs.filter(r => String(r.event).startsWith('login.')).length, logins, 'L0 saw no login attempt')
    // In-process the same refusal comes before key generation.
    await t.rejects(
      enrollThroughBroker(nodeCrypto, nodePki, nodeTransport, {
        code: 'not a code',
        url: l0.url,
        kind: 'x',
        name: '',
        stepTimeoutMs: 1000,
        now,
      }),
      { code: 'PAIR_CODE_FORMAT' },
    )
  })

  t.test('kin enroll refuses an existing home and bad arguments (exit 2)', async t => {
    const someCode = () => formatPairingCode(nodeCrypto.randomBytes(10))
    const [existing, plain, missing, down] = await Promise.all([
      kin(['enroll', '--home', l0.home, '--code', someCode(), '--broker', l0.url, '--json']),
      kin(['enroll', '--home', join(l0.dir, 'x'), '--code', someCode(), '--broker', 'mqtt://127.0.0.1:1883', '--json']),
      kin(['enroll', '--home', join(l0.dir, 'x'), '--json']),
      kin(['enroll', '--home', join(l0.dir, 'y'), '--code', someCode(), '--broker', 'mqtts://127.0.0.1:1', '--json']),
    ])
    t.equal(existing!.status, 2)
    t.equal(lastJson(existing!.stdout).code, 'HOME_EXISTS')
    t.equal(plain!.status, 2, 'a broker address without TLS is a usage error')
    t.equal(lastJson(plain!.stdout).code, 'USAGE')
    t.equal(missing!.status, 2)
    t.match(lastJson(missing!.stdout).message, /--code is required/)
    t.equal(down!.status, 2, 'nobody listening: exit 2')
    t.equal(lastJson(down!.stdout).code, 'BROKER_UNREACHABLE')
  })

  t.test('kin invite: usage errors and L0 without --broker', async t => {
    const [noBroker, badRole] = await Promise.all([
      kin(['invite', '--home', l0.home, '--json']),
      kin(['invite', '--home', l0.home, '--broker', l0.url, '--role', 'owner', '--json']),
    ])
    t.equal(noBroker!.status, 2)
    t.match(lastJson(noBroker!.stdout).message, /--broker/)
    t.equal(badRole!.status, 2)
    t.match(lastJson(badRole!.stdout).message, /--role must be one of admin, member, device, guest/)
  })
})
