import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PureFleet } from '../helpers/pure-fleet.ts'
import { acceptAuthorization, createEnrollCsr } from '../../agent/enroll/child.ts'
import { createEnrollRequest, decodeEnrollRequest, encodeEnrollRequest } from '../../agent/enroll/request.ts'
import { authorizeChild } from '../../agent/enroll/parent.ts'
import { signedRevoke } from '../../agent/ledger/revoke.ts'
import { verifyBinding } from '../../agent/pki/binding.ts'
import { verifyChain } from '../../agent/pki/chain.ts'
import { createCsr } from '../../agent/pki/csr.ts'
import { oddCsr } from '../pki/_odd.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { isKinError } from '../../agent/errors.ts'

const DAY = 86400

async function rejectsCode(t: Test, p: Promise<unknown> | (() => unknown), code: string, msg: string): Promise<void> {
  try {
    await (typeof p === 'function' ? p() : p)
    t.fail(`${msg}: expected ${code}, but it succeeded`)
  } catch (err) {
    t.ok(isKinError(err), `${msg}: a KinError`)
    t.equal((err as { code?: string }).code, code, msg)
  }
}

t.test(
  'init, then L0 → L1 → L2 → L3 through the pure steps: every certificate verifies with openssl and is bound in the ledger',
  async t => {
    const f = await PureFleet.create()
    const l1 = await f.enroll(f.l0, { role: 'admin', notAfter: f.now + 365 * DAY }, { kind: 'laptop', name: 'laptop' })
    const l2 = await f.enroll(
      l1.cn,
      { role: 'member', notAfter: f.now + 365 * DAY },
      { kind: 'phone', name: 'owner phone' },
    )
    const l3 = await f.enroll(
      l2.cn,
      { role: 'device', notAfter: f.now + 365 * DAY },
      { kind: 'lock', name: 'front-door lock' },
    )
    const dir = mkdtempSync(join(tmpdir(), 'kin-steps-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    writeFileSync(join(dir, 'root.pem'), f.fleet.root.pem)
    for (const d of [f.device(f.l0), l1, l2, l3]) {
      const file = join(dir, `${d.cn}.pem`)
      writeFileSync(file, d.certificate.pem)
      const out = execFileSync('openssl', ['verify', '-x509_strict', '-CAfile', join(dir, 'root.pem'), file], {
        encoding: 'utf8',
      })
      t.match(out, /: OK/, `openssl verify -x509_strict accepts ${d.cn}`)
      const info = verifyChain(d.certificate, f.fleet.root, f.now, nodePki)
      t.equal(info.cn, d.cn)
      t.equal(info.parentCn, d.parentCn, 'SAN names the parent')
      const bound = verifyBinding(info, f.l0Ledger.state)
      t.equal(bound.cn, d.cn, "bound in L0's ledger")
    }
    t.same(f.l0Ledger.state.lineage(l3.cn), [l3.cn, l2.cn, l1.cn, f.l0], 'lineage walks up to L0')
    t.same(l3.ledger.state.lineage(l3.cn), [l3.cn, l2.cn, l1.cn, f.l0], "the child's own ledger holds its lineage")
    const text = execFileSync('openssl', ['x509', '-noout', '-text', '-in', join(dir, `${l3.cn}.pem`)], {
      encoding: 'utf8',
    })
    t.match(text, `DNS:${l3.cn}`)
    t.match(text, `URI:kin://${f.fleet.domain}/parent/${l2.cn.split('.')[0]}`)
    t.notMatch(text, 'DNS:parent.', 'the parent marker is no DNS name')
  },
)

t.test('the CA refuses a replayed authorization proof with NONCE_REUSED', async t => {
  const f = await PureFleet.create()
  const { request, authorize } = await f.authorize(f.l0, { role: 'member', notAfter: f.now + DAY })
  const accepted = acceptAuthorization(f.crypto, authorize.bytes, request.request, f.fleet.domain)
  const csr = await createEnrollCsr(accepted, request.secrets)
  await f.ca.issue({ authorizeBytes: authorize.bytes, csrPem: csr, now: f.now })
  await rejectsCode(
    t,
    f.ca.issue({ authorizeBytes: authorize.bytes, csrPem: csr, now: f.now }),
    'NONCE_REUSED',
    'same proof twice',
  )
})

t.test(
  'the CA holds the CSR to the authorization: another key, another CN, another SAN parent, the old parent marker',
  async t => {
    // RSA keys: the old-marker CSR is built with node-forge, which signs RSA only.
    const f = await PureFleet.create({ keyType: 'rsa2048' })
    const l1 = await f.enroll(f.l0, { role: 'admin', notAfter: f.now + DAY })
    const { request, authorize } = await f.authorize(l1.cn, { role: 'member', notAfter: f.now + DAY })
    const accepted = acceptAuthorization(f.crypto, authorize.bytes, request.request, f.fleet.domain)
    const other = await nodePki.generateTlsKeyPair()
    await rejectsCode(
      t,
      f.ca.issue({
        authorizeBytes: authorize.bytes,
        csrPem: await createCsr({ cn: accepted.cn, parentCn: accepted.parentCn, keyPair: other }),
        now: f.now,
      }),
      'CSR_KEY_MISMATCH',
      'CSR with another key',
    )
    await rejectsCode(
      t,
      f.ca.issue({
        authorizeBytes: authorize.bytes,
        csrPem: await createCsr({ cn: l1.cn, parentCn: accepted.parentCn, keyPair: request.secrets.tls }),
        now: f.now,
      }),
      'CSR_NAMES',
      'CSR with another CN',
    )
    await rejectsCode(
      t,
      f.ca.issue({
        authorizeBytes: authorize.bytes,
        csrPem: await createCsr({ cn: accepted.cn, parentCn: f.l0, keyPair: request.secrets.tls }),
        now: f.now,
      }),
      'CSR_NAMES',
      'CSR with another SAN parent',
    )
    // A CSR made by a device that still writes the parent as DNS:parent.<P> (right key, CN and parent): refused by its own code.
    const oldForm = oddCsr(
      accepted.cn,
      [
        { type: 2, value: accepted.cn },
        { type: 2, value: `parent.${accepted.parentCn}` },
      ],
      request.secrets.tls,
    )
    await rejectsCode(
      t,
      f.ca.issue({ authorizeBytes: authorize.bytes, csrPem: oldForm, now: f.now }),
      'CSR_OLD_PARENT_MARKER',
      'CSR with the old DNS:parent. marker',
    )
    t.notOk(f.l0Ledger.state.has(authorize.idHex), 'a refused CSR does not consume the proof')
    const issued = await f.ca.issue({
      authorizeBytes: authorize.bytes,
      csrPem: await createEnrollCsr(accepted, request.secrets),
      now: f.now,
    })
    t.ok(issued.certificate.notAfter <= f.now + DAY, 'validity capped at notAfter')
  },
)

t.test('delegation abuse is refused by the CA through the ledger', async t => {
  const f = await PureFleet.create()
  const admin = await f.enroll(f.l0, { role: 'admin', notAfter: f.now + 30 * DAY })
  const member = await f.enroll(admin.cn, { role: 'member', notAfter: f.now + 30 * DAY, depth: 1 })
  const lock = await f.enroll(member.cn, { role: 'device', notAfter: f.now + 30 * DAY })
  const guest = await f.enroll(member.cn, { role: 'guest', notAfter: f.now + DAY })
  const req = await createEnrollRequest(f.crypto, f.pki, { kind: 'phone', name: 'x' })

  for (const [who, code] of [
    [lock, 'ROLE_CANNOT_DELEGATE'],
    [guest, 'ROLE_CANNOT_DELEGATE'],
  ] as const) {
    await rejectsCode(
      t,
      () =>
        authorizeChild(
          f.crypto,
          who.ledger,
          { cn: who.cn, ledgerSeed: who.secrets.ledgerSeed },
          req.request,
          { role: 'device', notAfter: f.now + DAY },
          f.now,
        ),
      code,
      `${who === lock ? 'a device' : 'a guest'} authorizing`,
    )
  }
  await rejectsCode(
    t,
    () =>
      authorizeChild(
        f.crypto,
        member.ledger,
        { cn: member.cn, ledgerSeed: member.secrets.ledgerSeed },
        req.request,
        { role: 'member', notAfter: f.now + DAY, depth: 0 },
        f.now,
      ),
    'ROLE_ESCALATION',
    'a member authorizing a member',
  )
  // A member at depth 1 may authorize devices (depth 0), but nothing may be authorized below those.
  await rejectsCode(
    t,
    () =>
      authorizeChild(
        f.crypto,
        member.ledger,
        { cn: member.cn, ledgerSeed: member.secrets.ledgerSeed },
        req.request,
        { role: 'guest', notAfter: f.now + DAY, depth: 1 },
        f.now,
      ),
    'DEPTH_EXHAUSTED',
    'beyond remaining depth',
  )

  // An authorization presented to the CA after its notAfter.
  const { request, authorize } = await f.authorize(admin.cn, { role: 'device', notAfter: f.now + 60 })
  const accepted = acceptAuthorization(f.crypto, authorize.bytes, request.request, f.fleet.domain)
  await rejectsCode(
    t,
    f.ca.issue({
      authorizeBytes: authorize.bytes,
      csrPem: await createEnrollCsr(accepted, request.secrets),
      now: f.now + 120,
    }),
    'CA_VALIDITY',
    'authorization used after its notAfter',
  )

  // An authorization signed by a parent that L0 knows to be revoked.
  const late = await f.authorize(member.cn, { role: 'device', notAfter: f.now + DAY })
  const revoke = signedRevoke(
    f.crypto,
    f.l0Ledger.state,
    { cn: admin.cn, ledgerSeed: admin.secrets.ledgerSeed },
    member.cn,
    { reason: 'compromised', effective: f.now - 10, subtree: false },
    f.now,
  )
  f.l0Ledger.ingest(revoke)
  const acc2 = acceptAuthorization(f.crypto, late.authorize.bytes, late.request.request, f.fleet.domain)
  await rejectsCode(
    t,
    f.ca.issue({
      authorizeBytes: late.authorize.bytes,
      csrPem: await createEnrollCsr(acc2, late.request.secrets),
      now: f.now,
    }),
    'VOID_AFTER_REVOKE',
    'authorization by a revoked parent',
  )
})

t.test('the child refuses an authorization that names other keys', async t => {
  const f = await PureFleet.create()
  const { authorize } = await f.authorize(f.l0, { role: 'member', notAfter: f.now + DAY })
  const stranger = await createEnrollRequest(f.crypto, f.pki, { kind: 'phone', name: 'stranger' })
  await rejectsCode(
    t,
    () => acceptAuthorization(f.crypto, authorize.bytes, stranger.request, f.fleet.domain),
    'CSR_KEY_MISMATCH',
    'authorization for someone else',
  )
})

t.test('enroll requests round-trip and refuse malformed bytes with coded errors', async t => {
  const f = await PureFleet.create()
  const { request } = await createEnrollRequest(f.crypto, f.pki, { kind: 'lock', name: 'front door' })
  const bytes = encodeEnrollRequest(request)
  t.same(decodeEnrollRequest(bytes), request)
  for (let i = 0; i < bytes.length; i += 7) {
    const cut = bytes.subarray(0, i)
    await rejectsCode(
      t,
      () => decodeEnrollRequest(cut),
      i === 0 ? 'DECODE_CBOR' : (decodeCodeOf(cut) ?? 'DECODE_CBOR'),
      `truncated at ${i}`,
    )
  }
})

function decodeCodeOf(bytes: Uint8Array): string | undefined {
  try {
    decodeEnrollRequest(bytes)
  } catch (e) {
    return (e as { code?: string }).code
  }
  return undefined
}
