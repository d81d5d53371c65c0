import t from 'tap'
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { decodeCbor, encodeCbor } from '../../agent/codec/cbor.ts'
import { signInvite } from '../../agent/enroll/invite.ts'
import { recordCertificate } from '../../agent/enroll/child.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import { readEvent } from '../../agent/ledger/event.ts'
import type { L0Services } from '../../broker/l0.ts'
import {
  childRequest,
  connectDevice,
  end,
  enrollDirect,
  logRecord,
  makeInvite,
  makeL0Home,
  nextMessage,
  nowSeconds,
  registerInvite,
  sendCsr,
  startTestL0,
  subscribeGranted,
  submission,
  tempDir,
  tryConnect,
  tryPairing,
  withHomeLedger,
  type TestDevice,
} from './_fleet.ts'

function certificateSerial(pem: string): string {
  return execFileSync('openssl', ['x509', '-noout', '-serial'], { input: pem, encoding: 'utf8' })
    .trim()
    .replace(/^serial=/, '')
    .toLowerCase()
}

const l0 = await makeL0Home()
const { phone, tablet, lock } = await withHomeLedger(l0, async ledger => {
  const phone = await enrollDirect(l0, ledger, l0.self, { role: 'member' })
  const tablet = await enrollDirect(l0, ledger, l0.self, { role: 'member' })
  const lock = await enrollDirect(l0, ledger, phone, { role: 'device', kind: 'lock' })
  return { phone, tablet, lock }
})

// L0's clock is the test's, so an invite can expire without waiting.
let clock = nowSeconds()
let running = await startTestL0(l0, { now: () => clock })
t.teardown(() => running.services.close())
const svc = (): L0Services => running.services

const phoneClient = await connectDevice(svc(), phone)

t.test('docs/PAIRING.md step 2: wrong code 4, used code 2, expired code 5', async t => {
  const invite = makeInvite(phone, { role: 'device', now: clock })
  t.same(await registerInvite(svc(), phoneClient, phone, invite.registration), ['invite-ok', invite.invite.inviteId])
  const id = invite.invite.inviteId

  const wrong = await tryPairing(svc(), id, makeInvite(phone, { role: 'device' }).secrets.loginProof)
  t.equal(wrong.returnCode, 4, 'wrong code: bad user name or password')
  const unknown = await tryPairing(svc(), '0000000000000000', invite.secrets.loginProof)
  t.equal(unknown.returnCode, 4, 'unknown invite: the same answer as a wrong code')
  const wrongId = await tryPairing(svc(), id, invite.secrets.loginProof, 'some-client')
  t.equal(wrongId.returnCode, 2, 'right code, wrong client id: identifier rejected')
  t.equal(svc().invites.get(id)?.state, 'pending', '… and the code is not used up by it')

  const ok = await tryPairing(svc(), id, invite.secrets.loginProof)
  t.equal(ok.returnCode, 0, 'the right code logs in')
  t.equal(svc().invites.get(id)?.state, 'used', 'and is used up at once')
  t.ok(svc().pairingSessions().has(id))
  const again = await tryPairing(svc(), id, invite.secrets.loginProof)
  t.equal(again.returnCode, 2, 'a used code: identifier rejected')
  await end(ok.client)

  const short = makeInvite(phone, { role: 'device', now: clock, ttl: 60 })
  t.same(await registerInvite(svc(), phoneClient, phone, short.registration), ['invite-ok', short.invite.inviteId])
  clock += 61
  const expired = await tryPairing(svc(), short.invite.inviteId, short.secrets.loginProof)
  t.equal(expired.returnCode, 5, 'an expired code: not authorized')
  const codes = ['PAIR_CODE_WRONG', 'LOGIN_CLIENT_ID', 'PAIR_CODE_USED', 'PAIR_CODE_EXPIRED']
  for (const code of codes) await logRecord(running.logs, r => r.event === 'login.refused' && r.code === code)
  t.notOk(JSON.stringify(running.logs).includes(invite.secrets.loginProof), 'the login proof is never logged')
})

t.test('invite registrations L0 refuses are answered with invite-error and a code', async t => {
  const refusals: Array<[string, Uint8Array, string]> = []
  const forged = makeInvite(phone, { role: 'device', now: clock })
  refusals.push(['signed by another key', signInvite(nodeCrypto, forged.invite, tablet.ledgerSeed), 'BAD_SIGNATURE'])
  const escalation = makeInvite(phone, { role: 'admin', now: clock })
  refusals.push(['a member inviting an admin', escalation.registration, 'ROLE_ESCALATION'])
  const late = makeInvite(phone, { role: 'device', now: clock - 700 })
  refusals.push(['already expired', late.registration, 'PAIR_CODE_EXPIRED'])
  const forever = makeInvite(phone, { role: 'device', now: clock, ttl: 30 * 86400 })
  refusals.push(['living a month', forever.registration, 'INVITE_REFUSED'])
  for (const [what, registration, code] of refusals) {
    const answer = (await registerInvite(svc(), phoneClient, phone, registration)) as unknown[]
    t.equal(answer[0], 'invite-error', what)
    t.equal(answer[2], code, `${what}: ${code}`)
  }
  // A lock (role device) may not invite at all.
  const lockClient = await connectDevice(svc(), lock)
  const fromLock = makeInvite(lock, { role: 'device', now: clock })
  const answer = (await registerInvite(svc(), lockClient, lock, fromLock.registration)) as unknown[]
  t.same(answer.slice(0, 3), ['invite-error', fromLock.invite.inviteId, 'ROLE_CANNOT_DELEGATE'])
  await end(lockClient)
  await logRecord(
    running.logs,
    r => r.event === 'invite.refused' && r.code === 'ROLE_CANNOT_DELEGATE' && r.parentCn === lock.cn,
  )
  t.equal(svc().invites.get(fromLock.invite.inviteId), undefined, 'nothing was stored')
})

t.test('the same registration again is answered ok; another one under the same id is refused', async t => {
  const invite = makeInvite(phone, { role: 'guest', now: clock })
  t.same(await registerInvite(svc(), phoneClient, phone, invite.registration), ['invite-ok', invite.invite.inviteId])
  t.same(await registerInvite(svc(), phoneClient, phone, invite.registration), ['invite-ok', invite.invite.inviteId])
  const changed = signInvite(nodeCrypto, { ...invite.invite, role: 'device' }, phone.ledgerSeed)
  const answer = (await registerInvite(svc(), phoneClient, phone, changed)) as unknown[]
  t.same(answer.slice(0, 3), ['invite-error', invite.invite.inviteId, 'INVITE_REFUSED'])
})

t.test('a registered invite survives an L0 restart: its pairing login works afterwards', async t => {
  const invite = makeInvite(phone, { role: 'device', now: clock })
  t.same(await registerInvite(svc(), phoneClient, phone, invite.registration), ['invite-ok', invite.invite.inviteId])
  await end(phoneClient)
  const ids = svc().ledger.ledger.state.ids()
  await svc().close()
  const before = running.logs
  running = await startTestL0(l0, { now: () => clock })
  t.ok(
    before.some(r => r.event === 'broker.closed'),
    'the first L0 closed cleanly',
  )
  t.same(svc().ledger.ledger.state.ids(), ids, 'the ledger came back as it was')
  t.equal(
    svc().invites.get(invite.invite.inviteId)?.state,
    'pending',
    'the invite was read back from the invite book (snapshot and journal)',
  )
  const login = await tryPairing(svc(), invite.invite.inviteId, invite.secrets.loginProof)
  t.equal(login.returnCode, 0, 'the code still logs in')
  t.equal(svc().invites.get(invite.invite.inviteId)?.state, 'used', 'and is used up')

  // L0 restarts in the middle of this pairing (the device logged in, no CSR yet): the journal line that marked the
  // code used was fsynced before the login was accepted, so the restarted L0 refuses the code.
  await svc().close()
  await end(login.client)
  running = await startTestL0(l0, { now: () => clock })
  t.equal(svc().invites.get(invite.invite.inviteId)?.state, 'used', 'the restarted L0 read the code back as used')
  const again = await tryPairing(svc(), invite.invite.inviteId, invite.secrets.loginProof)
  t.equal(again.returnCode, 2, 'the used code is refused after the restart')
  await end(again.client)
})

t.test(
  'a CSR through the pairing topic gets a certificate openssl accepts and a lineage the child can replay',
  async t => {
    const parentClient = await connectDevice(svc(), phone)
    const invite = makeInvite(phone, { role: 'device', now: clock })
    t.same(await registerInvite(svc(), parentClient, phone, invite.registration), ['invite-ok', invite.invite.inviteId])
    const id = invite.invite.inviteId
    const login = await tryPairing(svc(), id, invite.secrets.loginProof)
    const child = login.client!
    const req = await childRequest(svc(), phone, 'device', clock)
    t.same(await subscribeGranted(parentClient, [svc().topics.pairAll(id)]), [1])
    const parentSeesCert = nextMessage(parentClient, svc().topics.pair(id, 'cert'))
    const answer = await sendCsr(svc(), child, id, encodeCbor([req.authorize.bytes, req.csrPem]))
    t.equal(answer[0], 'ok', `L0 answered ${String(answer[1])}`)
    const certPem = answer[1] as string
    const lineage = answer[2] as Uint8Array[]
    t.same(decodeCbor(await parentSeesCert), answer, 'the parent, following its invite, sees the same answer')

    const dir = tempDir('kin-openssl-')
    writeFileSync(join(dir, 'root.pem'), l0.rootPem)
    writeFileSync(join(dir, 'cert.pem'), certPem)
    const out = execFileSync(
      'openssl',
      ['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', join(dir, 'root.pem'), join(dir, 'cert.pem')],
      { encoding: 'utf8' },
    )
    t.match(out, /cert\.pem: OK/, 'openssl verify accepts the certificate')

    // The child's side of docs/PAIRING.md step 7, as enroll-session.ts does it: lineage, then its authorize, then its certified event.
    t.equal(readEvent(nodeCrypto, lineage[0]!).event.type, 'genesis', 'the lineage starts at genesis')
    t.notOk(
      lineage.some(b => readEvent(nodeCrypto, b).idHex === req.authorize.idHex),
      "the child's own authorize event is not in it",
    )
    const childLedger = new Ledger(nodeCrypto)
    for (const b of lineage) childLedger.ingest(b, { now: clock })
    childLedger.ingest(req.authorize, { now: clock })
    const { certified, certificate } = recordCertificate(
      nodeCrypto,
      nodePki,
      childLedger,
      req.accepted,
      req.secrets,
      certPem,
      l0.rootPem,
      clock,
    )
    childLedger.ingest(certified)
    t.equal(certificate.cn, req.accepted.cn)
    t.ok(svc().ledger.ledger.state.has(req.authorize.idHex), "the authorize event is in L0's ledger")
    // The CA's authorize event went through the miner: it has a leaf, and the next head covers it.
    const leaf = svc().miner.miner.indexOf(req.authorize.idHex)
    t.type(leaf, 'number', "the authorize event is a leaf of the miner's tree")
    const head = (await svc().seal()) ?? svc().miner.miner.latestHead()!
    t.ok(head.treeSize > leaf!, `head ${head.height} covers leaf ${leaf}`)
    const record = svc()
      .issued.list()
      .find(r => r.cn === req.accepted.cn)
    t.ok(
      record !== undefined && record.serial === certificateSerial(certPem),
      'ca/issued.json holds the serial of the certificate handed over',
    )
    t.equal(svc().invites.get(id)?.state, 'done')
    await logRecord(running.logs, r => r.event === 'ca.issued' && r.inviteId === id && r.cn === req.accepted.cn)
    await end(child)

    // docs/PAIRING.md step 7: the first session with the new certificate may submit (only), and its certified event admits it fully.
    const fresh: TestDevice = {
      ...phone,
      cn: req.accepted.cn,
      certPem,
      keyPem: req.secrets.tls.privateKeyPem,
      ledgerSeed: req.secrets.ledgerSeed,
    }
    const first = await connectDevice(svc(), fresh)
    await logRecord(running.logs, r => r.event === 'login.accepted' && r.cn === fresh.cn && r.provisional === true)
    t.same(
      await subscribeGranted(first, [svc().topics.inboxAll(fresh.cn)]),
      [128],
      'before its certified event: no subscriptions',
    )
    await first.publishAsync(svc().topics.submit(fresh.cn), Buffer.from(submission([req.authorize, certified])), {
      qos: 1,
    })
    await logRecord(running.logs, r => r.event === 'ledger.accepted' && r.id === certified.idHex)
    t.same(await subscribeGranted(first, [svc().topics.inboxAll(fresh.cn)]), [1], 'after it: a device like any other')
    await end(first)

    const second = await sendCsr(svc(), parentClient, id, encodeCbor([req.authorize.bytes, req.csrPem]))
    t.same(second.slice(0, 2), ['error', 'ENROLL_STATE'], 'one certificate per invite')
    await end(parentClient)
  },
)

t.test("a CSR whose authorization was not signed by the invite's parent, or for another role, is refused", async t => {
  const parentClient = await connectDevice(svc(), phone)
  const invite = makeInvite(phone, { role: 'device', now: clock })
  t.same(await registerInvite(svc(), parentClient, phone, invite.registration), ['invite-ok', invite.invite.inviteId])
  const id = invite.invite.inviteId
  const child = (await tryPairing(svc(), id, invite.secrets.loginProof)).client!

  const byTablet = await childRequest(svc(), tablet, 'device', clock)
  const answer = await sendCsr(svc(), child, id, encodeCbor([byTablet.authorize.bytes, byTablet.csrPem]))
  t.same(answer.slice(0, 2), ['error', 'INVITE_MISMATCH'], "the tablet is not this invite's parent")
  t.notOk(svc().ledger.ledger.state.has(byTablet.authorize.idHex), 'the proof was not consumed')

  const asGuest = await childRequest(svc(), phone, 'guest', clock)
  const roleAnswer = await sendCsr(svc(), child, id, encodeCbor([asGuest.authorize.bytes, asGuest.csrPem]))
  t.same(roleAnswer.slice(0, 2), ['error', 'INVITE_MISMATCH'], 'the invite was for a device, not a guest')

  const garbage = await sendCsr(svc(), child, id, new Uint8Array([0xff, 0x00, 0x13]))
  t.equal(garbage[0], 'error', 'an undecodable CSR message is answered with an error')
  await logRecord(running.logs, r => r.event === 'payload.dropped' && r.topic === svc().topics.pair(id, 'csr'))

  const good = await childRequest(svc(), phone, 'device', clock)
  // One flipped bit in the CSR's signature (the DER ends with it).
  const der = Buffer.from(good.csrPem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64')
  der[der.length - 5]! ^= 0x01
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`
  const csrAnswer = await sendCsr(svc(), child, id, encodeCbor([good.authorize.bytes, tampered]))
  t.same(csrAnswer.slice(0, 2), ['error', 'CSR_SIGNATURE'], 'a damaged CSR is refused')
  t.equal(svc().invites.get(id)?.state, 'used', 'and none of these used the invite up')
  const ok = await sendCsr(svc(), child, id, encodeCbor([good.authorize.bytes, good.csrPem]))
  t.equal(ok[0], 'ok', 'the right CSR still gets its certificate')
  await logRecord(running.logs, r => r.event === 'ca.refused' && r.inviteId === id && r.code === 'INVITE_MISMATCH')
  await end(child)
  await end(parentClient)
})

t.test('an expired invite is purged after its retention; its pairing session is closed', async t => {
  const parentClient = await connectDevice(svc(), phone)
  const invite = makeInvite(phone, { role: 'device', now: clock, ttl: 120 })
  t.same(await registerInvite(svc(), parentClient, phone, invite.registration), ['invite-ok', invite.invite.inviteId])
  const id = invite.invite.inviteId
  const child = (await tryPairing(svc(), id, invite.secrets.loginProof)).client!
  const gone = new Promise<void>(resolve => child.once('close', () => resolve()))
  clock += 120 + 3600 + 1
  svc().sweep()
  await gone
  t.equal(svc().invites.get(id), undefined, 'purged from the book')
  await logRecord(running.logs, r => r.event === 'invite.purged' && r.inviteId === id)
  await logRecord(running.logs, r => r.event === 'session.closed' && r.inviteId === id)
  t.same(
    await subscribeGranted(parentClient, [svc().topics.pairAll(id)]),
    [128],
    "the parent's ACL no longer covers it",
  )
  const late = await tryPairing(svc(), id, invite.secrets.loginProof)
  t.equal(late.returnCode, 4, 'a purged invite is unknown')
  await end(parentClient)
  // The device certificate checks still pass at the advanced clock.
  const o = await tryConnect(svc(), { clientId: tablet.cn, cert: tablet.certPem, key: tablet.keyPem })
  t.equal(o.returnCode, 0)
  await end(o.client)
})
