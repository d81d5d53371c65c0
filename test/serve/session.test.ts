// The access session (server identity check, certificate cache, action names) and a home's ledger followed on disk.
import t from 'tap'
import { appendFileSync, readFileSync, renameSync, truncateSync, writeFileSync } from 'node:fs'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { checkActionName, SERVE_ACTION } from '../../agent/access/session.ts'
import { signedRevoke } from '../../agent/ledger/revoke.ts'
import { HomeLedgerFollower, localPolicyOf, openAccessHome, sessionWithBundle } from '../../runtime/access-home.ts'
import { appendToHome } from '../helpers/home-fleet.ts'
import { isKinError } from '../../agent/errors.ts'
import type { HomeConfig } from '../../runtime/home.ts'
import { utf8 } from '../../agent/codec/bytes.ts'
import { makeServeHouse } from './_house.ts'

const house = await makeServeHouse()
const { cn } = house
const lock = cn['L3.3'],
  guest = cn['L3.4']

t.test(
  "server identity: any fleet device may serve any other, whatever its role; Eve's and unbound keys may not",
  async t => {
    const owner = house.session(cn['L2.1'])
    const asServer = owner.checkServer(house.fleet.device(guest).certificate.der)
    t.equal(
      asServer.code,
      'ALLOW',
      'a guest may act as a server, though the default policy lets it only unlock and view: ' + asServer.reason,
    )
    t.equal(asServer.action, SERVE_ACTION)
    t.same(asServer.path, [guest, cn['L2.2'], cn.L1, cn['L2.1']])
    t.equal(
      house.session(guest).checkServer(house.fleet.device(lock).certificate.der).code,
      'ALLOW',
      'a device (role device) serves a guest',
    )
    t.equal(
      house.session(guest).decide(house.fleet.device(lock).certificate.der, SERVE_ACTION).code,
      'POLICY_ACTION',
      'while under the policy a device may do nothing but view',
    )
    t.equal(owner.checkServer((await house.forge('eve-ca', lock, cn['L2.1'])).der).code, 'CERT_CHAIN')
    const unbound = owner.checkServer((await house.forge('fleet-ca', lock, cn['L2.1'])).der)
    t.equal(unbound.code, 'CERT_UNBOUND')
    t.equal(unbound.peer, lock)
    t.equal(unbound.allow, false)
    t.equal(owner.checkServer(utf8('garbage')).code, 'CERT_PARSE')
  },
)

t.test('the session parses a certificate once per DER, and garbage is a CERT_PARSE deny', async t => {
  const s = house.session(lock)
  const der = house.fleet.device(guest).certificate.der
  t.equal(s.certificate(der), s.certificate(der.slice()), 'same DER, same parsed object')
  const d = s.decide(new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00]), 'unlock')
  t.equal(d.code, 'CERT_PARSE')
  t.equal(d.peer, undefined)
  t.same(d.path, [])
  t.equal(s.decide(der, 'unlock').code, 'ALLOW')
  t.equal(s.chainCache.size, 1, 'the verified chain was cached')
})

t.test('action names: the characters of policy rules, never the wildcard', async t => {
  for (const ok of ['unlock', 'view', 'door.open', 'a', 'x'.repeat(32)]) t.equal(checkActionName(ok), ok)
  for (const bad of ['', '*', 'Unlock', '1up', 'x'.repeat(33), 'un lock', 'un\nlock', 7, null]) {
    t.throws(() => checkActionName(bad), { code: 'DECODE_FIELD' }, JSON.stringify(bad))
  }
})

t.test(
  'a home ledger followed on disk: appends read incrementally, torn tails waited for, replacements replayed, a rollback refused, damage reported',
  async t => {
    const { home, dir, remove } = await house.home(lock)
    t.teardown(remove)
    const path = home.path('ledger')
    const follower = new HomeLedgerFollower(path)
    const size = follower.state().log.length
    t.equal(follower.reloads, 1)
    t.equal(follower.refresh(), false, 'unchanged file: nothing to do')
    const ledger = house.fleet.l0Ledger.state
    const parent = house.fleet.device(cn['L2.2'])
    const now = Math.floor(Date.now() / 1000)
    const revoke = signedRevoke(
      nodeCrypto,
      ledger,
      { cn: parent.cn, ledgerSeed: parent.secrets.ledgerSeed },
      guest,
      { reason: 'lost', effective: now, subtree: false },
      now,
    )
    const original = readFileSync(path)
    // A writer caught halfway through its append: the complete records count, the torn one waits.
    appendFileSync(path, revoke.bytes.subarray(0, 40))
    t.equal(follower.refresh(), true)
    t.equal(follower.state().log.length, size, 'the torn record is not read yet')
    t.equal(follower.lastError, undefined)
    appendFileSync(path, revoke.bytes.subarray(40))
    t.equal(follower.state().log.length, size + 1, 'completed: read incrementally')
    t.equal(follower.reloads, 1, 'without a full replay')
    t.equal(follower.state().invalidAt(follower.state().currentBinding(guest)!, now)?.code, 'REVOKED')
    // An atomic replace (rename over the file) is replayed whole; holding every event verified so far, it is taken.
    const full = readFileSync(path)
    writeFileSync(`${path}.new`, full)
    renameSync(`${path}.new`, path)
    t.equal(follower.refresh(), true)
    t.equal(follower.reloads, 2, 'replayed whole')
    t.equal(follower.state().log.length, size + 1)
    // The copy from before the revocation put in its place goes back: an alarm, and the verified state stays.
    writeFileSync(`${path}.new`, original)
    renameSync(`${path}.new`, path)
    t.equal(follower.refresh(), false)
    t.match(follower.lastError, { code: 'LEDGER_ROLLBACK', message: /lacks 1 of the \d+ events/ })
    t.equal(follower.state().log.length, size + 1, 'the revocation stays in force')
    t.equal(follower.state().invalidAt(follower.state().currentBinding(guest)!, now)?.code, 'REVOKED')
    t.equal(follower.lastError?.code, 'LEDGER_ROLLBACK', 'still alarmed on the next look, without a new replay')
    t.equal(follower.reloads, 2)
    // Damage: a record that does not verify leaves the last verified state in force, with the reason.
    const damaged = Buffer.from(full)
    damaged[damaged.length - 10]! ^= 0xff
    writeFileSync(path, damaged)
    t.equal(follower.refresh(), false)
    t.match(follower.lastError?.code, /^STORAGE_DAMAGED$/)
    t.equal(follower.state().log.length, size + 1, 'still the last verified state')
    truncateSync(path, 0)
    writeFileSync(path, full)
    t.equal(follower.refresh(), true)
    t.equal(follower.lastError, undefined, 'recovered')
    t.throws(() => new HomeLedgerFollower(`${dir}/no-such-ledger.cbor`), { code: 'HOME_MISSING' })
  },
)

t.test('config.json policy: local overrides reach the decision; malformed ones are refused', async t => {
  const { dir, remove } = await house.home(lock, {
    policy: { rules: [{ action: 'unlock', roles: ['admin', 'member'] }], maxHops: 6 },
  })
  t.teardown(remove)
  const device = await openAccessHome(dir, { audit: false, needKey: false })
  t.teardown(() => device.close())
  const d = device.session.decide(house.fleet.device(guest).certificate.der, 'unlock')
  t.equal(d.code, 'POLICY_ROLE', 'the lock no longer lets guests unlock: ' + d.reason)
  t.equal(device.session.decide(house.fleet.device(cn['L2.2']).certificate.der, 'unlock').code, 'ALLOW')
  const base: HomeConfig = { version: 1, fleet: 'smith.home.arpa', cn: lock, role: 'device' }
  t.same(localPolicyOf(base), undefined)
  t.same(localPolicyOf({ ...base, policy: { anchors: [cn.L1], maxHeadAge: 60 } }), { anchors: [cn.L1], maxHeadAge: 60 })
  for (const policy of [
    [],
    { maxHops: -1 },
    { anchors: [1] },
    { rules: [{ action: 'unlock', roles: ['owner'] }] },
    { rules: [{ action: '', roles: [] }] },
    { rules: [{ action: 'x', roles: [], from: 90000 }] },
  ]) {
    t.throws(
      () => localPolicyOf({ ...base, policy: policy as unknown as Record<string, unknown> }),
      { code: 'BAD_ARGUMENT' },
      JSON.stringify(policy),
    )
  }
})

t.test(
  'a proof bundle the peer carries fills the gap in the ledger, for one decision; known revocations still apply',
  async t => {
    const bundle = await house.bundle(guest)
    // The lock's own ledger dates from its enrollment, before the guest's.
    const own = await house.home(lock, { ledger: 'own' })
    t.teardown(own.remove)
    const device = await openAccessHome(own.dir, { audit: false, needKey: false })
    t.teardown(() => device.close())
    const der = house.fleet.device(guest).certificate.der
    const without = device.session.decide(der, 'unlock')
    t.equal(without.code, 'ACCESS_MISSING_PROOF')
    t.equal(without.retry, true)
    const sizeBefore = readFileSync(own.home.path('ledger')).length
    const withBundle = await sessionWithBundle(device, bundle)
    t.equal(withBundle.verified.anchoring, 'unanchored', 'the home holds no head to anchor to yet')
    t.ok(withBundle.merged > 0)
    const d = withBundle.session.decide(der, 'unlock')
    t.equal(d.code, 'ALLOW', d.reason)
    t.same(d.path, [guest, cn['L2.2'], cn.L1, cn['L2.1'], lock])
    t.equal(readFileSync(own.home.path('ledger')).length, sizeBefore, "the home's ledger file is untouched")
    t.equal(
      device.session.decide(der, 'unlock').code,
      'ACCESS_MISSING_PROOF',
      'and the home session does not see the bundle',
    )
    // Any changed byte fails verification with a code.
    const tampered = bundle.slice()
    tampered[tampered.length - 40]! ^= 1
    const refusal = await sessionWithBundle(device, tampered).then(
      () => undefined,
      (e: unknown) => e,
    )
    t.ok(
      isKinError(refusal) && refusal.code !== 'INTERNAL',
      `a tampered bundle is refused with a code (${isKinError(refusal) ? refusal.code : String(refusal)})`,
    )
    const other = await house.home(lock)
    t.teardown(other.remove)
    // The lock knows the guest was revoked; the guest's bundle (sealed before) leaves the revocation out: it still applies.
    const ledger = house.fleet.l0Ledger.state
    const parent = house.fleet.device(cn['L2.2'])
    const now = Math.floor(Date.now() / 1000)
    await appendToHome(other.home, [
      signedRevoke(
        nodeCrypto,
        ledger,
        { cn: parent.cn, ledgerSeed: parent.secrets.ledgerSeed },
        guest,
        { reason: 'lost', effective: now, subtree: false },
        now,
      ),
    ])
    const informed = await openAccessHome(other.dir, { audit: false, needKey: false })
    t.teardown(() => informed.close())
    t.equal((await sessionWithBundle(informed, bundle)).session.decide(der, 'unlock').code, 'ACCESS_REVOKED')
  },
)
