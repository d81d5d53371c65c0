/** @module `kin delegate` typed as a person would on L0's home: the secret file (0600, never replaced without --force), the registration L0's running broker answers with a head MACed under the key derived from that secret, and each refusal's code. */
import t from 'tap'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fromHex } from '../../agent/codec/bytes.ts'
import { decodeDelegatedHead, delegatedKeys } from '../../broker/delegated-wire.ts'
import { DELEGATED_FILE } from '../../broker/delegated.ts'
import {
  connectDevice,
  end,
  enrollDirect,
  makeL0Home,
  nextMessage,
  revocation,
  startTestL0,
  subscribeGranted,
  withHomeLedger,
} from '../broker/_fleet.ts'
import { writeDeviceHome } from '../gossip/_fleet.ts'
import { expectExit, kin, lastJson } from '../enroll/_harness.ts'

const l0 = await makeL0Home()
const { phone, gate, oldLock } = await withHomeLedger(l0, async ledger => {
  const phone = await enrollDirect(l0, ledger, l0.self, { role: 'member', kind: 'phone', name: "owner's phone" })
  const gate = await enrollDirect(l0, ledger, phone, { role: 'device', kind: 'gate', name: 'garden gate' })
  const oldLock = await enrollDirect(l0, ledger, phone, { role: 'device', kind: 'lock', name: 'old lock' })
  await ledger.append(revocation(ledger, phone, oldLock, { reason: 'retired' }))
  return { phone, gate, oldLock }
})
const out = join(l0.dir, '..', 'gate.secret')
const registry = join(l0.dir, DELEGATED_FILE)

/** The code a failed run printed with --json. */
function codeOf(run: { stdout: string }): unknown {
  return lastJson(run.stdout)['code']
}

t.test('refusals, cheapest first, each with its code; nothing is written', async t => {
  const deviceHome = join(l0.dir, '..', 'phone-home')
  writeDeviceHome(l0, phone, deviceHome, readFileSync(join(l0.dir, 'ledger.cbor')), 'mqtts://127.0.0.1:1')
  const notL0 = await kin(['delegate', 'garden gate', '--home', deviceHome, '--out', out, '--json'])
  expectExit(t, notL0, 2, "a device's home is refused")
  t.equal(codeOf(notL0), 'HOME_NOT_L0')

  const unknown = await kin(['delegate', 'no such gate', '--home', l0.dir, '--out', out, '--json'])
  expectExit(t, unknown, 2, 'an unknown device is refused')
  t.equal(codeOf(unknown), 'IDENTITY_UNKNOWN')

  const revoked = await kin(['delegate', oldLock.cn, '--home', l0.dir, '--out', out, '--json'])
  expectExit(t, revoked, 2, 'a revoked device is refused')
  t.equal(codeOf(revoked), 'DELEGATED_REVOKED')

  const self = await kin(['delegate', l0.cn, '--home', l0.dir, '--out', out, '--json'])
  expectExit(t, self, 2, 'L0 itself is refused')
  t.equal(codeOf(self), 'USAGE')

  const noOut = await kin(['delegate', 'garden gate', '--home', l0.dir, '--json'])
  expectExit(t, noOut, 2, 'the file for the flasher must be named')
  t.equal(codeOf(noOut), 'USAGE')

  t.notOk(existsSync(out), 'no secret file was written')
  t.notOk(existsSync(registry), 'no registration was written')
})

t.test('a registered gate gets a head from the running L0, MACed under the key of the secret in the file', async t => {
  const { services } = await startTestL0(l0)
  t.teardown(() => services.close())
  await services.seal()

  const run = await kin(['delegate', 'garden gate', '--home', l0.dir, '--out', out, '--json'])
  expectExit(t, run, 0, 'the gate is registered while L0 runs')
  const result = lastJson(run.stdout)
  t.match(result, { registered: gate.cn, name: 'garden gate', kind: 'gate', out, replaced: false })
  t.equal(result['brokerPid'], process.pid, "it names L0's running broker")

  t.equal(statSync(out).mode & 0o777, 0o600, 'the secret file is 0600')
  const file = JSON.parse(readFileSync(out, 'utf8')) as {
    cn: string
    secret: string
    secretBase64: string
    verdictKey: string
  }
  t.equal(file.cn, gate.cn)
  const secret = fromHex(file.secret)
  t.equal(secret.length, 32, 'a 32-byte secret')
  t.equal(Buffer.from(file.secretBase64, 'base64').toString('hex'), file.secret, 'the same secret in base64')
  const { ledgerKey, verdictKey } = delegatedKeys(secret)
  t.equal(file.verdictKey, Buffer.from(verdictKey).toString('hex'), "the verifier's key, derived from it")
  const registered = JSON.parse(readFileSync(registry, 'utf8')) as { devices: Record<string, string> }
  t.same(
    registered.devices,
    { [gate.cn]: Buffer.from(ledgerKey).toString('hex') },
    'L0 holds the ledger key only, not the secret',
  )
  t.notMatch(readFileSync(registry, 'utf8'), file.secret, 'the secret itself is not in L0')

  // The board boots: it asks for its head and L0 answers, though it never restarted.
  const client = await connectDevice(services, gate)
  t.teardown(() => end(client))
  await subscribeGranted(client, [services.topics.delegatedHead(gate.cn)])
  const message = nextMessage(client, services.topics.delegatedHead(gate.cn))
  await client.publishAsync(services.topics.delegatedReq(gate.cn), Buffer.from('kin-ledger-req-1 0'), { qos: 1 })
  const head = decodeDelegatedHead(ledgerKey, new Uint8Array(await message))
  t.equal(head.treeSize, services.miner.miner.latestHead()!.treeSize, "L0's latest head, its MAC checked with the key")
  t.ok(head.entries.length >= 2, `with the gate's lineage (${head.entries.length} events)`)
})

t.test('the file and the registration are never replaced without --force', async t => {
  const before = readFileSync(out, 'utf8')
  const again = await kin(['delegate', gate.cn, '--home', l0.dir, '--out', out, '--json'])
  expectExit(t, again, 2, 'an existing file is refused')
  t.equal(codeOf(again), 'STORAGE_EXISTS')
  const other = join(l0.dir, '..', 'gate2.secret')
  const registered = await kin(['delegate', gate.cn, '--home', l0.dir, '--out', other, '--json'])
  expectExit(t, registered, 2, 'a device already registered is refused')
  t.equal(codeOf(registered), 'DELEGATED_REGISTERED')
  t.notOk(existsSync(other), 'and no file is left for it')
  t.equal(readFileSync(out, 'utf8'), before, 'the first secret is untouched')

  const reflash = await kin(['delegate', gate.cn, '--home', l0.dir, '--out', out, '--force'])
  expectExit(t, reflash, 0, '--force flashes it again')
  t.match(reflash.stdout, /^registered \S+ \("garden gate", gate\) as a delegated-tier device .*earlier secret/m)
  t.match(reflash.stdout, /start 'kin broker --home /, 'L0 is stopped: the output says to start it')
  const secret = (JSON.parse(readFileSync(out, 'utf8')) as { secret: string }).secret
  t.not(secret, (JSON.parse(before) as { secret: string }).secret, 'a new secret')
  t.equal(statSync(out).mode & 0o777, 0o600, 'still 0600')
  const { ledgerKey } = delegatedKeys(fromHex(secret))
  t.same(
    (JSON.parse(readFileSync(registry, 'utf8')) as { devices: Record<string, string> }).devices,
    { [gate.cn]: Buffer.from(ledgerKey).toString('hex') },
    'the registration follows the new secret',
  )
})

t.test('kin delegate --help shows its examples', async t => {
  const help = await kin(['delegate', '--help'])
  expectExit(t, help, 0, 'help')
  t.match(help.stdout, /kin delegate "garden gate" --home \.\/l0 --out gate\.secret/)
  t.match(help.stdout, /DELEGATED_REVOKED/)
})
