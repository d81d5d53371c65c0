// FleetCa.renew: a fresh certificate for the key a device's current binding names, refused for a key, a CN or a
// standing (revoked, under a revoked ancestor, past its authorization) the ledger does not back.
import t, { type Test } from 'tap'
import { PureFleet } from '../helpers/pure-fleet.ts'
import { signedRevoke } from '../../agent/ledger/revoke.ts'
import { createCsr } from '../../agent/pki/csr.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { isKinError } from '../../agent/errors.ts'

const DAY = 86400

function throwsCode(t: Test, fn: () => unknown, code: string, msg: string): void {
  try {
    fn()
    t.fail(`${msg}: expected ${code}, but it succeeded`)
  } catch (err) {
    t.ok(isKinError(err), `${msg}: a KinError`)
    t.equal((err as { code?: string }).code, code, msg)
  }
}

t.test(
  'renewal re-issues for the same key and name, capped by the binding; refuses other keys, unknown CNs, ended bindings',
  async t => {
    const f = await PureFleet.create()
    const admin = await f.enroll(f.l0, { role: 'admin', notAfter: f.now + 365 * DAY })
    const member = await f.enroll(admin.cn, { role: 'member', notAfter: f.now + 30 * DAY })
    const csr = await createCsr({ cn: member.cn, parentCn: admin.cn, keyPair: member.secrets.tls })
    const fresh = await f.ca.renew({ cn: member.cn, csrPem: csr, now: f.now + DAY })
    t.equal(fresh.cn, member.cn)
    t.equal(fresh.parentCn, admin.cn)
    t.same([...fresh.spkiHash], [...member.certificate.spkiHash], 'the same key')
    t.not(fresh.serialHex, member.certificate.serialHex, 'a new serial')
    t.equal(fresh.notAfter, f.now + 30 * DAY, 'ends with the authorization, not a year on')

    const other = await nodePki.generateTlsKeyPair()
    const otherCsr = await createCsr({ cn: member.cn, parentCn: admin.cn, keyPair: other })
    throwsCode(
      t,
      () => f.ca.renew({ cn: member.cn, csrPem: otherCsr, now: f.now }),
      'CSR_KEY_MISMATCH',
      'another key under the same name',
    )
    throwsCode(
      t,
      () => f.ca.renew({ cn: admin.cn, csrPem: csr, now: f.now }),
      'CSR_NAMES',
      "the member's CSR in the admin's session",
    )
    throwsCode(
      t,
      () => f.ca.renew({ cn: `aaaaaaaaaaaaaaaaaaaaaaaaaa.${f.fleet.domain}`, csrPem: csr, now: f.now }),
      'SUBJECT_UNKNOWN',
      'a CN the ledger does not know',
    )
    throwsCode(
      t,
      () => f.ca.renew({ cn: member.cn, csrPem: csr, now: f.now + 31 * DAY }),
      'RENEW_EXPIRED',
      'after the authorization ended',
    )
  },
)

t.test('a revoked device, and one under a device revoked with its subtree, cannot renew: RENEW_REVOKED', async t => {
  const f = await PureFleet.create()
  const admin = await f.enroll(f.l0, { role: 'admin', notAfter: f.now + 365 * DAY })
  const member = await f.enroll(admin.cn, { role: 'member', notAfter: f.now + 365 * DAY })
  const lock = await f.enroll(member.cn, { role: 'device', notAfter: f.now + 365 * DAY })
  const lockCsr = await createCsr({ cn: lock.cn, parentCn: member.cn, keyPair: lock.secrets.tls })
  const memberCsr = await createCsr({ cn: member.cn, parentCn: admin.cn, keyPair: member.secrets.tls })
  t.ok(await f.ca.renew({ cn: lock.cn, csrPem: lockCsr, now: f.now }), 'renews while its lineage stands')
  const state = f.l0Ledger.state
  f.l0Ledger.ingest(
    signedRevoke(
      f.crypto,
      state,
      { cn: admin.cn, ledgerSeed: admin.secrets.ledgerSeed },
      member.cn,
      { reason: 'lost', effective: f.now, subtree: true },
      f.now,
    ),
  )
  throwsCode(
    t,
    () => f.ca.renew({ cn: member.cn, csrPem: memberCsr, now: f.now + 1 }),
    'RENEW_REVOKED',
    'the revoked device itself',
  )
  throwsCode(
    t,
    () => f.ca.renew({ cn: lock.cn, csrPem: lockCsr, now: f.now + 1 }),
    'RENEW_REVOKED',
    'a device under it (subtree)',
  )
})
