import t from 'tap'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { createFleetRoot } from '../../agent/pki/root.ts'
import { buildLeafCertificate } from '../../agent/pki/leaf-profile.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import { decodeSyncResponse } from '../../agent/ledger/sync.ts'
import { spkiDerFromPublicKeyPem } from '../../agent/pki/keys.ts'
import {
  closed,
  connectDevice,
  end,
  enrollDirect,
  logRecord,
  makeL0Home,
  nowSeconds,
  revocation,
  startTestL0,
  subscribeGranted,
  submission,
  tryConnect,
  withHomeLedger,
} from './_fleet.ts'

const l0 = await makeL0Home()
const { phone, lock, camera, tablet } = await withHomeLedger(l0, async ledger => {
  const phone = await enrollDirect(l0, ledger, l0.self, { role: 'member', name: 'owner phone' })
  const tablet = await enrollDirect(l0, ledger, l0.self, { role: 'member', name: 'tablet' })
  const lock = await enrollDirect(l0, ledger, phone, { role: 'device', kind: 'lock', name: 'front door' })
  const camera = await enrollDirect(l0, ledger, phone, { role: 'device', kind: 'camera', name: 'porch camera' })
  return { phone, lock, camera, tablet }
})
const { services, logs } = await startTestL0(l0)
t.teardown(() => services.close())

t.test('a device with its fleet certificate and its CN as client id logs in', async t => {
  const client = await connectDevice(services, lock)
  t.ok(client.connected)
  t.equal(services.clientsByCn().get(lock.cn)?.identity.kind, 'device', 'L0 lists the session under its CN')
  const rec = await logRecord(logs, r => r.event === 'login.accepted' && r.cn === lock.cn)
  t.equal(rec.kind, 'device')
  t.equal(rec.level, 'info')
  t.type(rec.time, 'string')
  await end(client)
})

t.test("L0's own CLI logs in with L0's certificate like any device", async t => {
  const client = await connectDevice(services, l0.self)
  t.ok(client.connected)
  await end(client)
})

t.test('[MQTT-3.1.3-2] a client id other than the certificate CN is refused with CONNACK 2', async t => {
  for (const clientId of [phone.cn, 'lock', `${lock.cn}x`]) {
    const o = await tryConnect(services, { clientId, cert: lock.certPem, key: lock.keyPem })
    t.equal(o.client, undefined, clientId)
    t.equal(o.returnCode, 2, `${clientId}: identifier rejected`)
  }
  const rec = await logRecord(logs, r => r.event === 'login.refused' && r.clientId === phone.cn)
  t.equal(rec.code, 'LOGIN_CLIENT_ID')
  t.equal(rec.connack, 2)
  t.notOk(services.clientsByCn().has(phone.cn), "the lock's certificate did not take over the phone's name")
})

t.test("Eve's certificate from another CA, with the phone's exact names, is refused (CERT_CHAIN)", async t => {
  const now = nowSeconds()
  // Keys of the fleet's own type and the same fleet domain, so even the issuer Name and the signature algorithm equal
  // the fleet root's: only the signature tells them apart.
  const eveRootKeys = await nodePki.generateTlsKeyPair(l0.fleet.rootKey.keyType)
  const eveKeys = await nodePki.generateTlsKeyPair(l0.fleet.rootKey.keyType)
  const eveRoot = await createFleetRoot({
    domain: l0.domain,
    keyPair: eveRootKeys,
    now,
    randomBytes: nodeCrypto.randomBytes,
  })
  const forged = await buildLeafCertificate({
    root: eveRoot,
    rootKeyPem: eveRootKeys.privateKeyPem,
    cn: phone.cn,
    parentCn: l0.cn,
    spki: spkiDerFromPublicKeyPem(eveKeys.publicKeyPem),
    notBefore: now - 300,
    notAfter: now + 86400,
    randomBytes: nodeCrypto.randomBytes,
  })
  const o = await tryConnect(services, {
    clientId: phone.cn,
    cert: forged.pem + eveRoot.pem,
    key: eveKeys.privateKeyPem,
  })
  t.equal(o.client, undefined)
  t.equal(o.returnCode, 5, 'not authorized')
  const rec = await logRecord(
    logs,
    r => r.event === 'login.refused' && r.clientId === phone.cn && r.code === 'CERT_CHAIN',
  )
  t.equal(rec.connack, 5)
})

t.test(
  'a certificate the fleet CA mis-issued for a known CN with another key fails the ledger binding (CERT_UNBOUND)',
  async t => {
    const now = nowSeconds()
    const keys = await nodePki.generateTlsKeyPair(l0.fleet.rootKey.keyType)
    const misIssued = await buildLeafCertificate({
      root: l0.fleet.root,
      rootKeyPem: l0.fleet.rootKey.privateKeyPem,
      cn: tablet.cn,
      parentCn: l0.cn,
      spki: spkiDerFromPublicKeyPem(keys.publicKeyPem),
      notBefore: now - 300,
      notAfter: now + 86400,
      randomBytes: nodeCrypto.randomBytes,
    })
    const o = await tryConnect(services, { clientId: tablet.cn, cert: misIssued.pem, key: keys.privateKeyPem })
    t.equal(o.returnCode, 5)
    await logRecord(logs, r => r.event === 'login.refused' && r.clientId === tablet.cn && r.code === 'CERT_UNBOUND')
  },
)

t.test('no certificate and no pairing login is refused with CONNACK 5', async t => {
  const none = await tryConnect(services, { clientId: 'anonymous' })
  t.equal(none.returnCode, 5)
  const userPass = await tryConnect(services, { clientId: 'someone', username: 'admin', password: 'admin' })
  t.equal(userPass.returnCode, 5)
  const rec = await logRecord(logs, r => r.event === 'login.refused' && r.clientId === 'someone')
  t.equal(rec.code, 'LOGIN_NO_CREDENTIALS')
  t.notOk(JSON.stringify(logs).includes('"admin"'), 'passwords and foreign user names are not logged')
})

t.test(
  'a revoke accepted by submission ends the revoked session: read-only until the head reaches it, then closed; it cannot log in again',
  async t => {
    const lockClient = await connectDevice(services, lock)
    const tabletClient = await connectDevice(services, tablet)
    const phoneClient = await connectDevice(services, phone)
    t.same(await subscribeGranted(lockClient, [services.topics.events]), [1])
    const announced: string[] = []
    lockClient.on('message', (topic, payload) => {
      if (topic === services.topics.events)
        announced.push(...decodeSyncResponse(new Uint8Array(payload)).events.map(e => toHex(nodeCrypto.sha256(e))))
    })
    const lockClosed = closed(lockClient)
    const revoke = revocation(services.ledger, phone, lock)
    await phoneClient.publishAsync(services.topics.submit(phone.cn), Buffer.from(submission([revoke])), { qos: 1 })
    const leaving = await logRecord(logs, r => r.event === 'session.leaving' && r.cn === lock.cn)
    t.equal(leaving.code, 'ACCESS_REVOKED', 'L0 marks the session as leaving, with the reason')
    t.same(
      await subscribeGranted(lockClient, [services.topics.inboxAll(lock.cn)]),
      [128],
      'a leaving session takes no new subscription',
    )
    await lockClosed
    t.ok(
      announced.includes(revoke.idHex),
      "the miner's announcement with its own revocation reached the lock before L0 closed its session",
    )
    t.ok(services.ledger.ledger.state.has(revoke.idHex), "the revoke is in L0's ledger")
    const rec = await logRecord(logs, r => r.event === 'session.closed' && r.cn === lock.cn)
    t.equal(rec.code, 'ACCESS_REVOKED')
    await logRecord(
      logs,
      r => r.event === 'ledger.accepted' && r.id === revoke.idHex && r.type === 'revoke' && r.from === phone.cn,
    )
    t.notOk(services.clientsByCn().has(lock.cn))
    t.ok(tabletClient.connected, 'an unrelated session stays open')
    t.ok(phoneClient.connected, 'the revoking device stays connected')
    const again = await tryConnect(services, { clientId: lock.cn, cert: lock.certPem, key: lock.keyPem })
    t.equal(again.returnCode, 5, 'the revoked lock is refused')
    await logRecord(logs, r => r.event === 'login.refused' && r.clientId === lock.cn && r.code === 'ACCESS_REVOKED')
    await end(tabletClient)
    await end(phoneClient)
  },
)

t.test("a subtree revocation closes the revoked device's and its descendants' sessions", async t => {
  const phoneClient = await connectDevice(services, phone)
  const cameraClient = await connectDevice(services, camera)
  const tabletClient = await connectDevice(services, tablet)
  const l0Client = await connectDevice(services, l0.self)
  const both = Promise.all([closed(phoneClient), closed(cameraClient)])
  const revoke = revocation(services.ledger, l0.self, phone, { subtree: true })
  await l0Client.publishAsync(services.topics.submit(l0.cn), Buffer.from(submission([revoke])), { qos: 1 })
  await both
  const cameraRec = await logRecord(logs, r => r.event === 'session.closed' && r.cn === camera.cn)
  t.equal(cameraRec.code, 'ACCESS_ANCESTOR_REVOKED')
  t.ok(tabletClient.connected, "the tablet is not in the phone's subtree")
  const again = await tryConnect(services, { clientId: camera.cn, cert: camera.certPem, key: camera.keyPem })
  t.equal(again.returnCode, 5)
  await end(tabletClient)
  await end(l0Client)
})
