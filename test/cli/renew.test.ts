// kin renew as a person types it, on homes of a fleet whose L0 runs in this process over real MQTT/TLS: a fresh
// certificate for the same key, recorded in the ledger so peers accept it; a revoked device cannot renew.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { kin } from '../enroll/_harness.ts'
import { gossipFleet } from '../gossip/_fleet.ts'

const json = (s: string): Record<string, any> => JSON.parse(s) as Record<string, any>
const certOf = (home: string): DeviceCertificate => DeviceCertificate.from(readFileSync(join(home, 'cert.pem'), 'utf8'))

t.test(
  'kin renew replaces cert.pem with a fresh certificate for the same key, which peers accept once synced',
  async t => {
    const fleet = await gossipFleet(t, ['admin', 'member'])
    const [admin, member] = fleet.devices as [(typeof fleet.devices)[0], (typeof fleet.devices)[0]]
    const before = certOf(member.home)

    const r = await kin(['renew', '--home', member.home, '--json'], { timeoutMs: 120_000 })
    t.equal(r.status, 0, { stderr: r.stderr, stdout: r.stdout })
    const out = json(r.stdout)
    const after = certOf(member.home)
    t.match(
      out,
      {
        ok: true,
        cn: member.cn,
        serial: after.serialHex,
        certHash: after.certHashHex,
        previous: { serial: before.serialHex },
      },
      'says what it put in place',
    )
    t.not(after.serialHex, before.serialHex, 'a new certificate')
    t.equal(after.cn, before.cn, 'for the same name')
    t.equal(after.parentCn, before.parentCn, 'under the same parent')
    t.same([...after.spkiHash], [...before.spkiHash], 'for the same key')
    t.ok(after.notBefore >= before.notBefore, 'issued now')
    t.ok(out.head !== null && out.head.height >= 1, 'its certified event is covered by a head of L0')
    t.ok(
      fleet.logs.some(l => l.event === 'ca.renewed' && l.cn === member.cn && l.serial === after.serialHex),
      'L0 logged the renewal with the serial',
    )

    const synced = await kin(['sync', '--home', admin.home, '--json'], { timeoutMs: 120_000 })
    t.equal(synced.status, 0, { stderr: synced.stderr })
    const check = json(
      (
        await kin([
          'check',
          '--home',
          admin.home,
          '--peer',
          join(member.home, 'cert.pem'),
          '--action',
          'view',
          '--json',
        ])
      ).stdout,
    )
    t.match(
      check,
      { allow: true },
      'a peer that synced accepts the renewed certificate (its certified event is in the ledger)',
    )

    // The renewed home works as before: it renews again, in words this time.
    const text = await kin(['renew', '--home', member.home], { timeoutMs: 120_000 })
    t.equal(text.status, 0, { stderr: text.stderr })
    t.match(
      text.stdout,
      new RegExp(
        `^renewed ${member.cn}: certificate [0-9a-f]+ valid until \\d{4}-\\d{2}-\\d{2}T.* recorded in head \\d+`,
      ),
    )
  },
)

t.test('a revoked device cannot renew: RENEW_REVOKED from its own ledger, before any broker is asked', async t => {
  const fleet = await gossipFleet(t, ['admin', 'member'])
  const member = fleet.devices[1]!
  const revoked = await kin(['revoke', '--home', member.home, member.cn, '--reason', 'retired', '--json'], {
    timeoutMs: 120_000,
  })
  t.equal(revoked.status, 0, { stderr: revoked.stderr, stdout: revoked.stdout })
  const before = readFileSync(join(member.home, 'cert.pem'), 'utf8')
  const r = await kin(['renew', '--home', member.home, '--json'], { timeoutMs: 120_000 })
  t.equal(r.status, 1, 'refused')
  t.equal(json(r.stdout).code, 'RENEW_REVOKED')
  t.equal(readFileSync(join(member.home, 'cert.pem'), 'utf8'), before, 'cert.pem untouched')
  t.notOk(
    fleet.logs.some(l => l.event === 'ca.renewed'),
    'L0 issued nothing',
  )
})

t.test(
  'a device revoked by its parent while away cannot renew: L0 refuses its login (the CA refuses it too: test/ca/renew.test.ts)',
  async t => {
    const fleet = await gossipFleet(t, ['admin', 'member'])
    const [admin, member] = fleet.devices as [(typeof fleet.devices)[0], (typeof fleet.devices)[0]]
    const revoked = await kin(['revoke', '--home', admin.home, member.cn, '--json'], { timeoutMs: 120_000 })
    t.equal(revoked.status, 0, { stderr: revoked.stderr, stdout: revoked.stdout })
    const before = readFileSync(join(member.home, 'cert.pem'), 'utf8')
    const r = await kin(['renew', '--home', member.home, '--timeout', '20s', '--json'], { timeoutMs: 120_000 })
    t.equal(r.status, 2)
    t.match(json(r.stdout), { code: 'BROKER_REFUSED', message: /cannot renew/ }, 'says why it could not renew')
    t.equal(readFileSync(join(member.home, 'cert.pem'), 'utf8'), before, 'cert.pem untouched')
    t.notOk(
      fleet.logs.some(l => l.event === 'ca.renewed'),
      'L0 issued nothing',
    )
  },
)

t.test('kin renew refuses what it cannot do as a usage error', async t => {
  const fleet = await gossipFleet(t, ['admin'])
  const onL0 = await kin(['renew', '--home', fleet.l0.dir, '--json'])
  t.equal(onL0.status, 2)
  t.equal(json(onL0.stdout).code, 'USAGE', "L0's home renews nothing")
  const extra = await kin(['renew', '--home', fleet.devices[0]!.home, 'oops', '--json'])
  t.equal(json(extra.stdout).code, 'USAGE', 'a stray argument is not ignored')
})
