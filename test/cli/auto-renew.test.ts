// kin serve's renewal before expiry, with its clock injected: nothing while most of the validity is left; past the
// fraction, a fresh certificate over the follower's own session, recorded in the ledger, in cert.pem.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import type { TransportSession } from '../../agent/ports/transport.ts'
import { renewIfDue } from '../../cli/auto-renew.ts'
import { openFollowingHome } from '../../runtime/following-home.ts'
import { renewalDue } from '../../agent/gossip/renew-session.ts'
import { gossipFleet, homeLedger } from '../gossip/_fleet.ts'

const certOf = (home: string): DeviceCertificate => DeviceCertificate.from(readFileSync(join(home, 'cert.pem'), 'utf8'))

t.test('renewalDue: less than the fraction of the validity left', async t => {
  const cert = { notBefore: 1000, notAfter: 2000 }
  t.notOk(renewalDue(cert, 1000, 0.2), 'just issued')
  t.notOk(renewalDue(cert, 1800, 0.2), 'exactly a fifth left')
  t.ok(renewalDue(cert, 1801, 0.2), 'less than a fifth left')
  t.ok(renewalDue(cert, 2500, 0.2), 'expired')
  t.ok(renewalDue({ notBefore: 5, notAfter: 5 }, 0, 0.2), 'an empty validity')
})

t.test(
  'the running agent renews once the injected clock passes the fraction, on the session its follower holds',
  async t => {
    const fleet = await gossipFleet(t, ['admin', 'member'])
    const member = fleet.devices[1]!
    let session: TransportSession | undefined
    const opened = await openFollowingHome(member.home, {}, s => {
      session = s
    })
    t.teardown(() => opened.close())
    opened.follower.start()
    const end = Date.now() + 60_000
    while (session?.connected !== true && Date.now() < end) await new Promise(r => setTimeout(r, 50))
    t.ok(session?.connected, 'the follower is online')

    const before = certOf(member.home)
    const life = before.notAfter - before.notBefore
    let clock = before.notBefore + Math.floor(life / 2)
    const renewed: DeviceCertificate[] = []
    const errors: string[] = []
    const options = {
      home: opened.home,
      config: opened.config,
      follower: opened.follower,
      session: () => session,
      fraction: 0.2,
      now: () => clock,
      timeoutMs: 60_000,
      onRenewed: (c: DeviceCertificate) => renewed.push(c),
      onError: (e: { code: string }) => errors.push(e.code),
    }
    t.equal(await renewIfDue(options), undefined, 'half the validity left: not due')
    t.equal(certOf(member.home).serialHex, before.serialHex, 'cert.pem untouched')

    clock = before.notAfter - Math.floor(life / 10)
    const fresh = await renewIfDue(options)
    t.ok(fresh, 'a tenth left: renewed')
    t.equal(renewed.length, 1, 'the endpoint is told')
    const after = certOf(member.home)
    t.equal(after.serialHex, fresh!.serialHex, 'cert.pem holds the new certificate')
    t.not(after.serialHex, before.serialHex)
    t.same([...after.spkiHash], [...before.spkiHash], 'for the same key')
    t.ok(
      homeLedger(member.home).state.currentBinding(member.cn)!.certHashes.includes(after.certHashHex),
      "the home's ledger records it",
    )
    t.ok(
      fleet.logs.some(l => l.event === 'ca.renewed' && l.serial === after.serialHex),
      'issued by L0',
    )
    t.same(errors, [])
  },
)
