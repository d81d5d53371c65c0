// kin rekey CN as a person types it: a device is revoked as compromised, its parent prints a code for new keys, the
// replacement enrolls with it (kin enroll --code) and takes over the CN. Over real MQTT/TLS with L0 running in this
// process and every other step a real kin process: the new keys are allowed by a lock, the old ones refused at login
// and at access, the old binding's children stay valid, every ledger verifies. Then the refusals, each with its code.
import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { KinError } from '../../agent/errors.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { keepHomeCopy, loginOutcome } from '../helpers/home-login.ts'
import { inviterOf, kin, lastJson as lastJsonOf, tempDir } from '../enroll/_harness.ts'
import { gossipFleet, homeLedger, startKinLines, until, type GossipDevice, type GossipFleet } from '../gossip/_fleet.ts'
import {
  derivePairingSecrets,
  formatPairingCode,
  loginVerifier,
  openPairMessage,
  sealPairMessage,
} from '../../agent/enroll/pairing.ts'
import { signInvite } from '../../agent/enroll/invite.ts'
import { createEnrollRequest, decodeEnrollRequest, encodeEnrollRequest } from '../../agent/enroll/request.ts'
import { awaitAuthorization, enrollThroughBroker } from '../../agent/gossip/enroll-session.ts'
import { completeInvite, openInvite } from '../../agent/gossip/invite-session.ts'
import { connectPairing } from '../../agent/gossip/login.ts'
import {
  decodeAuthorizePayload,
  decodeCertReply,
  decodeInviteReply,
  encodeAuthorizePayload,
  encodeCsrPayload,
} from '../../agent/gossip/pair-wire.ts'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { rekeyEvent } from '../../agent/ledger/builders.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import { createCsr } from '../../agent/pki/csr.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'

const WAIT_MS = 120_000
const json = (s: string): Record<string, any> => JSON.parse(s) as Record<string, any>
const lastJson = (s: string): Record<string, any> => lastJsonOf(s) as Record<string, any>
const read = (home: string, file: string): string => readFileSync(join(home, file), 'utf8')

/** Logs in to L0's broker with the certificate and key of `home`; the error code, or 'ok'. */
const login = (fleet: GossipFleet, home: string): Promise<string> => loginOutcome(fleet.url, home)
/** A copy of `home` as it is now (the stolen device's identity, kept aside). */
const keepCopy = (t: Test, home: string): string => keepHomeCopy(t, home, 'stolen')

/**
 * `kin rekey CN --home PARENT` beside `kin enroll --code` on a new home: the code as the parent printed it, both runs'
 * results, and the new home.
 */
async function rekeyThroughKin(
  t: Test,
  fleet: GossipFleet,
  parent: GossipDevice,
  target: string,
  extra: string[] = [],
): Promise<{ code: string; rekey: Record<string, any>; enroll: Record<string, any>; home: string }> {
  const rekey = startKinLines(t, ['rekey', target, '--home', parent.home, '--timeout', '120s', '--json', ...extra])
  const opened = await rekey.waitJson(d => typeof d['code'] === 'string' && typeof d['inviteId'] === 'string', WAIT_MS)
  const code = String(opened['code'])
  t.match(code, /^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$/, 'a pairing code like kin invite prints')
  const home = join(tempDir(t, 'replacement'), 'home')
  const enroll = await kin(['enroll', '--home', home, '--code', code, '--broker', fleet.url, '--json'], {
    timeoutMs: WAIT_MS,
  })
  t.equal(enroll.status, 0, { stdout: enroll.stdout, stderr: enroll.stderr })
  const done = await rekey.done
  t.equal(done.status, 0, { stdout: done.stdout, stderr: done.stderr })
  return { code, rekey: lastJson(done.stdout), enroll: lastJson(enroll.stdout), home }
}

async function access(home: string, target: string): Promise<Record<string, any>> {
  const r = await kin(['access', '--home', home, '--target', target, '--action', 'view', '--json'], {
    timeoutMs: WAIT_MS,
  })
  return { status: r.status, ...json(r.stdout) }
}

async function verifies(t: Test, home: string, what: string): Promise<void> {
  const r = await kin(['ledger', 'verify', '--home', home, '--json'], { timeoutMs: WAIT_MS })
  t.equal(r.status, 0, `${what}: kin ledger verify`, { stdout: r.stdout, stderr: r.stderr })
}

t.test('a compromised device gets new keys from its parent: kin rekey CN, kin enroll --code', async t => {
  // admin (the parent, under L0), member (the phone that is stolen) and device (the lock), both under admin.
  const fleet = await gossipFleet(t, ['admin', 'member', 'device'])
  const [admin, phone, lock] = fleet.devices as [GossipDevice, GossipDevice, GossipDevice]

  // The phone enrolled a guest before it was stolen: that child stays valid through the phone's revocation and rekey.
  const inviting = startKinLines(t, ['invite', '--home', phone.home, '--role', 'guest', '--timeout', '120s', '--json'])
  const invited = await inviting.waitJson(d => typeof d['code'] === 'string', WAIT_MS)
  const guestHome = join(tempDir(t, 'guest'), 'home')
  const guest = await kin(
    ['enroll', '--home', guestHome, '--code', String(invited['code']), '--broker', fleet.url, '--json'],
    { timeoutMs: WAIT_MS },
  )
  t.equal(guest.status, 0, { stdout: guest.stdout, stderr: guest.stderr })
  t.equal((await inviting.done).status, 0, 'the phone enrolled its guest')

  const stolen = keepCopy(t, phone.home)
  const oldCert = DeviceCertificate.from(read(phone.home, 'cert.pem'))
  const revoked = await kin(['revoke', '--home', admin.home, phone.cn, '--reason', 'compromised', '--json'], {
    timeoutMs: WAIT_MS,
  })
  t.equal(revoked.status, 0, { stdout: revoked.stdout, stderr: revoked.stderr })
  t.equal(await login(fleet, stolen), 'BROKER_REFUSED', 'revoked: L0 refuses the stolen identity')

  const { code, rekey, enroll, home } = await rekeyThroughKin(t, fleet, admin, phone.cn)
  t.match(
    enroll,
    { ok: true, cn: phone.cn, role: 'member', parentCn: admin.cn, rekeyId: rekey.rekeyId },
    'the new device takes over the CN',
  )
  t.match(
    rekey,
    { ok: true, cn: phone.cn, role: 'member', parentCn: admin.cn, rekeyId: /^[0-9a-f]{64}$/ },
    'the parent reports the rekey',
  )
  const newCert = DeviceCertificate.from(read(home, 'cert.pem'))
  t.equal(newCert.cn, phone.cn, 'same CN')
  t.equal(newCert.parentCn, admin.cn, 'same parent marker')
  t.notSame([...newCert.spkiHash], [...oldCert.spkiHash], 'a new TLS key')
  t.not(read(home, 'ledger-key'), read(stolen, 'ledger-key'), 'a new ledger key')
  const state = fleet.services.ledger.ledger.state
  const binding = state.currentBinding(phone.cn)!
  t.equal(binding.id, rekey.rekeyId, "the rekey is the CN's current binding in L0's ledger")
  t.equal(state.invalidAt(binding, Math.floor(Date.now() / 1000)), undefined, 'and it is valid again')
  t.ok(
    fleet.logs.some(l => l.event === 'ca.issued' && l.cn === phone.cn && l.rekeyId === rekey.rekeyId),
    "L0's CA logged the certificate it issued against the rekey",
  )

  const twice = await kin(
    ['enroll', '--home', join(tempDir(t, 'second'), 'home'), '--code', code, '--broker', fleet.url, '--json'],
    { timeoutMs: WAIT_MS },
  )
  t.equal(twice.status, 1, { stdout: twice.stdout, stderr: twice.stderr })
  t.equal(lastJson(twice.stdout).code, 'PAIR_CODE_USED', 'the code gives new keys once')

  t.equal(await login(fleet, home), 'ok', 'L0 admits the new keys')
  t.equal(await login(fleet, stolen), 'BROKER_REFUSED', 'and still refuses the old ones')

  const agent = startKinLines(t, ['serve', '--home', lock.home, '--port', '0', '--json'])
  const listening = await agent.waitJson(d => d['listening'] === true, WAIT_MS)
  const target = `127.0.0.1:${String(listening['port'])}`
  const synced = await kin(['sync', '--home', lock.home, '--json'], { timeoutMs: WAIT_MS })
  t.equal(synced.status, 0, { stderr: synced.stderr })
  t.match(await access(home, target), { status: 0, allow: true }, 'the lock allows the new device')
  t.match(
    await access(stolen, target),
    { status: 1, allow: false, code: 'CERT_UNBOUND', reason: /replaced by a rekey/ },
    'the lock refuses the stolen certificate: its key is no longer bound to the CN',
  )
  t.match(await access(guestHome, target), { status: 0, allow: true }, "the old binding's guest stays valid")
  agent.signal('SIGTERM')
  await agent.done

  for (const [dir, what] of [
    [admin.home, 'the parent'],
    [home, 'the new device'],
    [lock.home, 'the lock'],
    [guestHome, 'the guest'],
  ] as const) {
    await kin(['sync', '--home', dir, '--json'], { timeoutMs: WAIT_MS })
    await verifies(t, dir, what)
  }
})

t.test("kin rekey CN carried by the parent's running agent; Ctrl-C withdraws its code", async t => {
  const fleet = await gossipFleet(t, ['admin', 'member'], { start: 'all' })
  const [admin, phone] = fleet.devices as [GossipDevice, GossipDevice]
  const agent = startKinLines(t, ['serve', '--home', admin.home, '--port', '0', '--json'])
  await agent.waitJson(d => d['listening'] === true, WAIT_MS)

  // The agent holds the home: the rekey (which appends to the parent's ledger) succeeds only if it carries it.
  const stopped = startKinLines(t, ['rekey', 'device 1', '--home', admin.home, '--ttl', '5m'])
  t.ok(
    await until(() => stopped.lines.some(l => /^pairing code: [a-z2-7]{4}-/.test(l)), WAIT_MS),
    'a code by name, printed through the client',
  )
  t.ok(
    stopped.lines.some(l => l.includes(`for new keys of member "device 1" (${phone.cn})`)),
    'it says whose keys the code replaces',
  )
  const registered = fleet.logs.find(l => l.event === 'invite.registered' && l.rekeyCn === phone.cn)
  t.ok(registered, 'L0 registered a rekey invite for the child')
  stopped.signal('SIGINT')
  const cut = await stopped.done
  t.equal(cut.status, 130, { stderr: cut.stderr })
  t.match(cut.stderr, /withdrawn; .*\[PAIR_WITHDRAWN\]/, 'Ctrl-C withdraws the code')
  t.equal(fleet.services.invites.get(String(registered!.inviteId))?.state, 'withdrawn', "L0's record says so")

  const { rekey, home } = await rekeyThroughKin(t, fleet, admin, phone.cn)
  t.match(rekey, { ok: true, cn: phone.cn, rekeyId: /^[0-9a-f]{64}$/ }, 'carried out by the agent')
  t.equal(await login(fleet, home), 'ok', 'L0 admits the new keys')
  t.equal(await login(fleet, phone.home), 'BROKER_REFUSED', 'and refuses the replaced ones')
  const shown = await kin(['show', phone.cn, '--home', admin.home, '--json'], { timeoutMs: WAIT_MS })
  t.equal(shown.status, 0, { stderr: shown.stderr })
  t.equal(
    homeLedger(admin.home).state.currentBinding(phone.cn)?.id,
    rekey.rekeyId,
    "the parent's ledger (the agent's replica) holds the rekey as the child's binding",
  )
  await verifies(t, admin.home, 'the parent, through its agent')
  agent.signal('SIGTERM')
  await agent.done
  await verifies(t, admin.home, 'the parent, once its agent stopped')
  await verifies(t, home, 'the new device')
})

t.test('refusals of a rekey, each with its code: at the parent, at L0, at its CA', async t => {
  const fleet = await gossipFleet(t, ['admin', 'member', 'device'], { start: 'all' })
  const [admin, phone, lock] = fleet.devices as [GossipDevice, GossipDevice, GossipDevice]
  const now = () => Math.floor(Date.now() / 1000)

  t.test('the CLI refuses what is not a child of this device', async t => {
    const sibling = await kin(['rekey', lock.cn, '--home', phone.home, '--json'], { timeoutMs: WAIT_MS })
    t.equal(sibling.status, 1, { stderr: sibling.stderr })
    t.equal(lastJson(sibling.stdout).code, 'REKEY_NOT_CHILD', "a sibling's CN")
    const itself = await kin(['rekey', admin.cn, '--home', admin.home, '--json'], { timeoutMs: WAIT_MS })
    t.equal(lastJson(itself.stdout).code, 'REKEY_NOT_CHILD', 'its own CN (its parent is L0)')
    const unknown = await kin(['rekey', 'no such device', '--home', admin.home, '--json'], { timeoutMs: WAIT_MS })
    t.equal(lastJson(unknown.stdout).code, 'IDENTITY_UNKNOWN', 'a name the ledger does not know')
    const key = await kin(['rekey', phone.cn, '--home', admin.home, '--key', 'rsa2048', '--json'])
    t.equal(lastJson(key.stdout).code, 'USAGE', "--key is the new device's choice")
    const ttl = await kin(['rekey', '--home', phone.home, '--ttl', '5m', '--json'])
    t.equal(lastJson(ttl.stdout).code, 'USAGE', '--ttl without a CN')
    t.notOk(
      fleet.logs.some(l => l.event === 'invite.registered'),
      'nothing was registered with L0',
    )
  })

  t.test("L0 refuses a sibling's rekey invite: REKEY_NOT_CHILD", async t => {
    const { inviter, client } = await inviterOf(phone.home, fleet.url)
    t.teardown(() => client.close())
    const secrets = derivePairingSecrets(formatPairingCode(nodeCrypto.randomBytes(10)))
    const invite = {
      inviteId: secrets.inviteId,
      loginVerifier: loginVerifier(secrets.loginProof),
      parentCn: phone.cn,
      role: 'device' as const,
      name: 'device 2',
      expires: now() + 300,
      time: now(),
      rekeyCn: lock.cn,
    }
    const topics = fleetTopics(inviter.fleet)
    await client.subscribe([topics.inboxAll(phone.cn)])
    await client.publish(topics.inbox(inviter.l0Cn, phone.cn), signInvite(nodeCrypto, invite, inviter.ledgerSeed))
    const reply = await client.waitFor(
      topics.inbox(phone.cn, inviter.l0Cn),
      p => {
        const r = decodeInviteReply(p)
        return r?.inviteId === invite.inviteId ? r : undefined
      },
      { timeoutMs: 30_000, code: 'PAIR_TIMEOUT', message: 'no answer from L0' },
    )
    t.match(reply, { ok: false, code: 'REKEY_NOT_CHILD' })
    t.equal(fleet.services.invites.get(invite.inviteId), undefined, 'not on record')
  })

  // The parent's side in-process (a real session with admin's certificate), the new device's too where it misbehaves.
  const { inviter, client } = await inviterOf(admin.home, fleet.url)
  t.teardown(() => client.close())
  const phoneBinding = inviter.ledger.state.currentBinding(phone.cn)!
  const adminBinding = inviter.ledger.state.currentBinding(admin.cn)!
  const choices = { role: 'member' as const, name: '', ttlSeconds: 300, guestValidSeconds: 86400, rekeyCn: phone.cn }

  /** Opens a rekey invite for the phone, enrolls a device with its code and answers its request with `sign(request)`. */
  async function answeredWith(sign: (spkiHash: Uint8Array, ledgerKey: Uint8Array) => Uint8Array): Promise<unknown> {
    const opened = await openInvite(nodeCrypto, client, inviter, choices, { now: now(), timeoutMs: 30_000 })
    const enrolling = enrollThroughBroker(nodeCrypto, nodePki, nodeTransport, {
      code: opened.code,
      url: fleet.url,
      kind: 'phone',
      name: 'replacement',
      stepTimeoutMs: 60_000,
      now,
    })
    enrolling.catch(() => undefined)
    const sealed = await client.next(fleetTopics(inviter.fleet).pair(opened.inviteId, 'request'), {
      timeoutMs: 60_000,
      code: 'PAIR_TIMEOUT',
      message: 'no request',
    })
    const request = decodeEnrollRequest(openPairMessage(opened.secrets, 'request', sealed))
    const event = sign(nodeCrypto.sha256(request.spkiDer), request.ledgerKey)
    await client.publish(
      fleetTopics(inviter.fleet).pair(opened.inviteId, 'authorize'),
      sealPairMessage(opened.secrets, 'authorize', encodeAuthorizePayload(event, inviter.rootPem)),
    )
    return enrolling.then(
      () => 'enrolled',
      err => (err instanceof KinError ? err.code : String(err)),
    )
  }

  t.test("a rekey whose nonce was used before: L0's CA refuses NONCE_REUSED", async t => {
    const authorize = inviter.ledger.state.event(phoneBinding.id)!.event
    const usedNonce = authorize.type === 'authorize' ? authorize.body.nonce : new Uint8Array(16)
    const code = await answeredWith(
      (spkiHash, ledgerKey) =>
        signEvent(
          nodeCrypto,
          rekeyEvent(
            nodeCrypto,
            adminBinding,
            phoneBinding,
            { spkiHash, ledgerKey, notAfter: phoneBinding.notAfter, nonce: usedNonce },
            now(),
          ),
          inviter.ledgerSeed,
        ).bytes,
    )
    t.equal(code, 'NONCE_REUSED')
    t.equal(
      fleet.services.ledger.ledger.state.currentBinding(phone.cn)?.id,
      phoneBinding.id,
      'the phone keeps its keys',
    )
  })

  t.test("a sibling's rekey of the phone under its parent's code: L0's CA refuses INVITE_MISMATCH", async t => {
    const lockBinding = inviter.ledger.state.currentBinding(lock.cn)!
    const code = await answeredWith(
      (spkiHash, ledgerKey) =>
        signEvent(
          nodeCrypto,
          rekeyEvent(
            nodeCrypto,
            lockBinding,
            phoneBinding,
            { spkiHash, ledgerKey, notAfter: lockBinding.notAfter },
            now(),
          ),
          lock.ledgerSeed,
        ).bytes,
    )
    t.equal(code, 'INVITE_MISMATCH')
    t.equal(
      fleet.services.ledger.ledger.state.currentBinding(phone.cn)?.id,
      phoneBinding.id,
      'the phone keeps its keys',
    )
  })

  t.test("a CSR for another key than the rekey's: L0's CA refuses CSR_KEY_MISMATCH", async t => {
    const opened = await openInvite(nodeCrypto, client, inviter, choices, { now: now(), timeoutMs: 30_000 })
    const parent = completeInvite(nodeCrypto, nodePki, client, inviter, opened, {
      keep: async () => undefined,
      now,
      stepTimeoutMs: 60_000,
    })
    parent.catch(() => undefined)
    // The new device by hand: its request names one key, its CSR another.
    const secrets = derivePairingSecrets(opened.code)
    const device = await connectPairing(nodeTransport, fleet.url, secrets, { timeoutMs: 30_000 })
    t.teardown(() => device.close())
    const topics = fleetTopics(inviter.fleet)
    await device.subscribe([topics.pair(secrets.inviteId, 'authorize'), topics.pair(secrets.inviteId, 'cert')])
    const { request } = await createEnrollRequest(nodeCrypto, nodePki, { kind: 'phone', name: 'replacement' })
    await device.publish(
      topics.pair(secrets.inviteId, 'request'),
      sealPairMessage(secrets, 'request', encodeEnrollRequest(request)),
    )
    const payload = decodeAuthorizePayload(await awaitAuthorization(device, secrets, topics, 60_000))
    const other = await nodePki.generateTlsKeyPair('p256')
    const csr = await createCsr({ cn: phone.cn, parentCn: admin.cn, keyPair: other })
    await device.publish(topics.pair(secrets.inviteId, 'csr'), encodeCsrPayload(payload.authorizeBytes, csr))
    const reply = await device.waitFor(topics.pair(secrets.inviteId, 'cert'), decodeCertReply, {
      timeoutMs: 60_000,
      code: 'PAIR_TIMEOUT',
      message: 'no answer from the CA',
    })
    t.match(reply, { ok: false, code: 'CSR_KEY_MISMATCH' }, 'the new device is told')
    await t.rejects(parent, { code: 'CSR_KEY_MISMATCH' }, 'and so is the parent')
    t.equal(
      fleet.services.ledger.ledger.state.currentBinding(phone.cn)?.id,
      phoneBinding.id,
      'the phone keeps its keys',
    )
  })
})

t.test("L0 rekeys its own child, the fleet's admin: kin rekey CN --home L0", async t => {
  const fleet = await gossipFleet(t, ['admin'])
  const admin = fleet.devices[0]!
  const { rekey, enroll, home } = await rekeyThroughKin(t, fleet, { ...admin, home: fleet.l0.dir }, admin.cn, [
    '--broker',
    fleet.url,
  ])
  t.match(enroll, { ok: true, cn: admin.cn, role: 'admin', parentCn: fleet.l0.cn }, 'the new device is the admin')
  t.equal(fleet.services.ledger.ledger.state.currentBinding(admin.cn)?.id, rekey.rekeyId, "L0's CA recorded the rekey")
  t.equal(await login(fleet, home), 'ok', 'L0 admits the new keys')
  t.equal(await login(fleet, admin.home), 'BROKER_REFUSED', 'and refuses the replaced ones')
  await verifies(t, home, 'the new admin')
})
