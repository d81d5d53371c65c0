// kin rekey as a person types it, on homes of a fleet whose L0 runs in this process over real MQTT/TLS: a new TLS key
// and certificate, the ledger's binding moved to it, so the old certificate is refused at L0's login and by a device
// deciding on it (kin access); directly and through a running agent; a revoked device cannot rekey.
import t, { type Test } from 'tap'
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect } from 'node:tls'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { tlsKeyTypeOf } from '../../agent/pki/key-type.ts'
import { keepHomeCopy, loginOutcome } from '../helpers/home-login.ts'
import { kin } from '../enroll/_harness.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import { certifiedEvent, rekeyEvent } from '../../agent/ledger/builders.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import { createCsr } from '../../agent/pki/csr.ts'
import { issueDeviceCertificate } from '../../agent/pki/issue.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { Home } from '../../runtime/home.ts'
import { gossipFleet, homeLedger, startKinLines, type GossipFleet } from '../gossip/_fleet.ts'

const WAIT_MS = 120_000
const json = (s: string): Record<string, any> => JSON.parse(s) as Record<string, any>
const read = (home: string, file: string): string => readFileSync(join(home, file), 'utf8')
const certOf = (home: string): DeviceCertificate => DeviceCertificate.from(read(home, 'cert.pem'))

/** Logs in to L0's broker as the device of `home` with the given certificate and key; the error code, or 'ok'. */
const login = (fleet: GossipFleet, home: string, certPem: string, keyPem: string): Promise<string> =>
  loginOutcome(fleet.url, home, { certPem, keyPem })
/** A copy of `home` as it is now (the old identity kept aside). */
const keepCopy = (t: Test, home: string): string => keepHomeCopy(t, home, 'old-identity')

t.test('kin rekey: a new key and certificate; the old certificate is refused at login and in kin access', async t => {
  const fleet = await gossipFleet(t, ['admin', 'member'])
  const [admin, member] = fleet.devices as [(typeof fleet.devices)[0], (typeof fleet.devices)[0]]
  const before = certOf(member.home)
  const oldKey = read(member.home, 'tls-key.pem')
  const oldHome = keepCopy(t, member.home)

  const r = await kin(['rekey', '--home', member.home, '--json'], { timeoutMs: WAIT_MS })
  t.equal(r.status, 0, { stderr: r.stderr, stdout: r.stdout })
  const out = json(r.stdout)
  const after = certOf(member.home)
  t.match(
    out,
    {
      ok: true,
      cn: member.cn,
      keyType: 'p256',
      serial: after.serialHex,
      previous: { serial: before.serialHex, keyType: 'p256' },
      resumed: false,
    },
    'says what it put in place',
  )
  t.ok(out.head !== null && out.head.height >= 1, 'a head of L0 covers the rekey')
  t.not(read(member.home, 'tls-key.pem'), oldKey, 'tls-key.pem holds a new key')
  t.notSame([...after.spkiHash], [...before.spkiHash], 'the certificate is for the new key')
  t.equal(after.cn, before.cn, 'the same name')
  t.equal(after.parentCn, before.parentCn, 'under the same parent')
  t.ok(
    new X509Certificate(after.pem).checkPrivateKey(createPrivateKey(read(member.home, 'tls-key.pem'))),
    'cert.pem and tls-key.pem are a pair',
  )
  t.notOk(existsSync(join(member.home, 'rekey-pending.json')), 'no journal left')
  t.ok(
    fleet.logs.some(l => l.event === 'ca.rekeyed' && l.cn === member.cn && l.serial === after.serialHex),
    'L0 logged the rekey with the serial',
  )

  t.equal(
    await login(fleet, member.home, before.pem, oldKey),
    'BROKER_REFUSED',
    "L0 refuses the old certificate's login",
  )
  t.equal(await login(fleet, member.home, after.pem, read(member.home, 'tls-key.pem')), 'ok', 'and admits the new one')

  // The admin serves (its agent follows L0's ledger); both ask it for access.
  const agent = startKinLines(t, ['serve', '--home', admin.home, '--port', '0', '--json'])
  const listening = await agent.waitJson(d => d['listening'] === true, WAIT_MS)
  const target = `127.0.0.1:${String(listening['port'])}`
  const synced = await kin(['sync', '--home', admin.home, '--json'], { timeoutMs: WAIT_MS })
  t.equal(synced.status, 0, { stderr: synced.stderr })
  const fresh = await kin(['access', '--home', member.home, '--target', target, '--action', 'view', '--json'], {
    timeoutMs: WAIT_MS,
  })
  t.equal(fresh.status, 0, { stdout: fresh.stdout, stderr: fresh.stderr })
  t.match(json(fresh.stdout), { allow: true }, 'the new certificate is allowed')
  const old = await kin(['access', '--home', oldHome, '--target', target, '--action', 'view', '--json'], {
    timeoutMs: WAIT_MS,
  })
  t.equal(old.status, 1, { stdout: old.stdout, stderr: old.stderr })
  t.match(json(old.stdout), { allow: false, code: 'CERT_UNBOUND', reason: /replaced by a rekey/ }, 'the old one is not')

  const again = await kin(['rekey', '--home', member.home, '--key', 'rsa2048'], { timeoutMs: WAIT_MS })
  t.equal(again.status, 0, { stderr: again.stderr })
  t.match(again.stdout, new RegExp(`^rekeyed ${member.cn}: new rsa2048 key, certificate [0-9a-f]+ valid until \\d{4}-`))
  t.equal(tlsKeyTypeOf(certOf(member.home).spkiDer), 'rsa2048', 'now an RSA key')
  agent.signal('SIGTERM')
  await agent.done
})

t.test('kin rekey through a running agent: the agent serves the new certificate at once', async t => {
  const fleet = await gossipFleet(t, ['admin', 'member'])
  const [admin, member] = fleet.devices as [(typeof fleet.devices)[0], (typeof fleet.devices)[0]]
  const agent = startKinLines(t, ['serve', '--home', member.home, '--port', '0', '--json'])
  const listening = await agent.waitJson(d => d['listening'] === true, WAIT_MS)
  const port = Number(listening['port'])
  const before = certOf(member.home)

  const r = await kin(['rekey', '--home', member.home, '--json'], { timeoutMs: WAIT_MS })
  t.equal(r.status, 0, { stderr: r.stderr, stdout: r.stdout })
  const after = certOf(member.home)
  t.equal(json(r.stdout).serial, after.serialHex)
  t.notSame([...after.spkiHash], [...before.spkiHash], 'a new key')
  await agent.waitJson(d => d['rekeyed'] === true && d['serial'] === after.serialHex, WAIT_MS)

  const presented = await new Promise<Buffer>((resolve, reject) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      cert: read(admin.home, 'cert.pem'),
      key: read(admin.home, 'tls-key.pem'),
      rejectUnauthorized: false,
    })
    socket.once('secureConnect', () => {
      resolve(socket.getPeerCertificate().raw)
      socket.destroy()
    })
    socket.once('error', reject)
  })
  t.same([...presented], [...after.der], "the agent's endpoint presents the new certificate")

  const synced = await kin(['sync', '--home', admin.home, '--json'], { timeoutMs: WAIT_MS })
  t.equal(synced.status, 0, { stderr: synced.stderr })
  const access = await kin(
    ['access', '--home', admin.home, '--target', `127.0.0.1:${port}`, '--action', 'view', '--json'],
    {
      timeoutMs: WAIT_MS,
    },
  )
  t.equal(access.status, 0, { stdout: access.stdout, stderr: access.stderr })
  t.match(json(access.stdout), { allow: true }, 'a peer that synced reaches the rekeyed agent')
  const status = await kin(['status', '--home', member.home, '--json'], { timeoutMs: WAIT_MS })
  t.equal(status.status, 0, 'the agent still answers')
  agent.signal('SIGTERM')
  await agent.done
})

t.test('a rekey cut off after L0 logged it and between its two renames is finished by the next kin rekey', async t => {
  const fleet = await gossipFleet(t, ['admin', 'member'])
  const member = fleet.devices[1]!
  const home = new Home(member.home)
  const before = certOf(member.home)
  const oldKey = read(member.home, 'tls-key.pem')
  const now = Math.floor(Date.now() / 1000)
  // What a run cut off after its journal and its first rename leaves: built here with the same pieces kin rekey uses.
  const state = homeLedger(member.home).state
  const binding = state.currentBinding(member.cn)!
  const keyPair = await nodePki.generateTlsKeyPair('p256')
  const seed = home.readLedgerKey()
  const rekey = signEvent(
    nodeCrypto,
    rekeyEvent(
      nodeCrypto,
      binding,
      binding,
      { spkiHash: nodeCrypto.sha256(keyPair.spkiDer), ledgerKey: binding.ledgerKey, notAfter: binding.notAfter },
      now,
    ),
    seed,
  )
  const cert = await issueDeviceCertificate({
    rootCertPem: read(fleet.l0.dir, 'root.pem'),
    rootKeyPem: read(fleet.l0.dir, 'ca/root-key.pem'),
    csrPem: await createCsr({ cn: member.cn, parentCn: before.parentCn, keyPair }),
    auth: {
      cn: member.cn,
      parentCn: before.parentCn,
      spkiHash: nodeCrypto.sha256(keyPair.spkiDer),
      notAfter: binding.notAfter,
    },
    now,
    randomBytes: n => nodeCrypto.randomBytes(n),
    crypto: nodeCrypto,
  })
  const certified = signEvent(nodeCrypto, certifiedEvent({ ...binding, id: rekey.idHex }, cert.certHash, now), seed)
  // L0 logged and sealed both (the run had submitted them), then the run stopped between its two renames.
  fleet.services.issued.record(cert, now)
  await fleet.services.miner.appendOne(rekey, now)
  await fleet.services.miner.appendOne(certified, now)
  await fleet.services.miner.sealNow()
  writeFileSync(
    join(member.home, 'rekey-pending.json'),
    JSON.stringify({
      keyPem: keyPair.privateKeyPem,
      certPem: cert.pem,
      rekey: toHex(rekey.bytes),
      certified: toHex(certified.bytes),
    }),
    { mode: 0o600 },
  )
  home.writeSecret('tlsKey', keyPair.privateKeyPem)

  const r = await kin(['rekey', '--home', member.home, '--json'], { timeoutMs: WAIT_MS })
  t.equal(r.status, 0, { stderr: r.stderr, stdout: r.stdout })
  t.match(
    json(r.stdout),
    { ok: true, resumed: true, rekeyId: rekey.idHex, serial: cert.serialHex },
    'finished the journalled rekey',
  )
  t.equal(read(member.home, 'cert.pem'), cert.pem, 'cert.pem holds the journalled certificate')
  t.equal(read(member.home, 'tls-key.pem'), keyPair.privateKeyPem, 'tls-key.pem its key')
  t.notOk(existsSync(join(member.home, 'rekey-pending.json')), 'the journal is gone')
  t.equal(await login(fleet, member.home, cert.pem, keyPair.privateKeyPem), 'ok', 'the new identity logs in')
  t.equal(await login(fleet, member.home, before.pem, oldKey), 'BROKER_REFUSED')
})

t.test('a revoked device cannot rekey: REKEY_REVOKED from its own ledger, nothing issued', async t => {
  const fleet = await gossipFleet(t, ['admin', 'member'])
  const member = fleet.devices[1]!
  const revoked = await kin(['revoke', '--home', member.home, member.cn, '--reason', 'retired', '--json'], {
    timeoutMs: WAIT_MS,
  })
  t.equal(revoked.status, 0, { stderr: revoked.stderr, stdout: revoked.stdout })
  const cert = read(member.home, 'cert.pem')
  const key = read(member.home, 'tls-key.pem')
  const r = await kin(['rekey', '--home', member.home, '--json'], { timeoutMs: WAIT_MS })
  t.equal(r.status, 1, 'refused')
  t.equal(json(r.stdout).code, 'REKEY_REVOKED')
  t.equal(read(member.home, 'cert.pem'), cert, 'cert.pem untouched')
  t.equal(read(member.home, 'tls-key.pem'), key, 'tls-key.pem untouched')
  t.notOk(
    fleet.logs.some(l => l.event === 'ca.rekeyed'),
    'L0 issued nothing',
  )
})

t.test('kin rekey refuses what it cannot do', async t => {
  const fleet = await gossipFleet(t, ['admin'])
  const onL0 = await kin(['rekey', '--home', fleet.l0.dir, '--json'])
  t.equal(json(onL0.stdout).code, 'USAGE', "L0's home is not rekeyed")
  const badKey = await kin(['rekey', '--home', fleet.devices[0]!.home, '--key', 'ed448', '--json'])
  t.equal(badKey.status, 2)
  t.equal(json(badKey.stdout).code, 'KEY_TYPE_UNKNOWN', 'an unknown key type')
  // One argument names a child to rekey (kin rekey CN|NAME); a second is not ignored.
  const unknown = await kin(['rekey', '--home', fleet.devices[0]!.home, 'oops', '--json'])
  t.equal(json(unknown.stdout).code, 'IDENTITY_UNKNOWN', 'an argument names a child, which must exist')
  const extra = await kin(['rekey', '--home', fleet.devices[0]!.home, 'oops', 'again', '--json'])
  t.equal(json(extra.stdout).code, 'USAGE', 'a stray argument is not ignored')
})
