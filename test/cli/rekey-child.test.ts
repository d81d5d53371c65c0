// kin rekey CN as a person types it: a device is revoked as compromised, its parent prints a code for new keys, the
// replacement enrolls with it (kin enroll --code) and takes over the CN. Over real MQTT/TLS with L0 running in this
// process and every other step a real kin process: the new keys are allowed by a lock, the old ones refused at login
// and at access, the old binding's children stay valid, every ledger verifies. Then the refusals, each with its code.
import t, { type Test } from 'tap'
import { chmodSync, cpSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { KinError } from '../../agent/errors.ts'
import { connectDevice } from '../../agent/gossip/login.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { kin, lastJson as lastJsonOf, tempDir } from '../enroll/_harness.ts'
import { gossipFleet, startKinLines, type GossipDevice, type GossipFleet } from '../gossip/_fleet.ts'

const WAIT_MS = 120_000
const json = (s: string): Record<string, any> => JSON.parse(s) as Record<string, any>
const lastJson = (s: string): Record<string, any> => lastJsonOf(s) as Record<string, any>
const read = (home: string, file: string): string => readFileSync(join(home, file), 'utf8')

/** Logs in to L0's broker with the certificate and key of `home`; the error code, or 'ok'. */
async function login(fleet: GossipFleet, home: string): Promise<string> {
  const config = json(read(home, 'config.json'))
  try {
    const client = await connectDevice(
      nodeTransport,
      {
        url: fleet.url,
        cn: config.cn,
        certPem: read(home, 'cert.pem'),
        keyPem: read(home, 'tls-key.pem'),
        rootPem: read(home, 'root.pem'),
        l0Cn: config.l0Cn,
      },
      { timeoutMs: 20_000 },
    )
    await client.close()
    return 'ok'
  } catch (err) {
    return err instanceof KinError ? err.code : String(err)
  }
}

/** A copy of `home` as it is now (the stolen device's identity, kept aside); its own 0700 directory. */
function keepCopy(t: Test, home: string): string {
  const copy = join(tempDir(t, 'stolen'), 'home')
  cpSync(home, copy, { recursive: true })
  for (const leftover of ['ledger.lock', 'agent.sock']) rmSync(join(copy, leftover), { force: true })
  chmodSync(copy, 0o700)
  return copy
}

/**
 * `kin rekey CN --home PARENT` beside `kin enroll --code` on a new home: the code as the parent printed it, both runs'
 * results, and the new home.
 */
async function rekeyThroughKin(
  t: Test,
  fleet: GossipFleet,
  parent: GossipDevice,
  target: string,
): Promise<{ code: string; rekey: Record<string, any>; enroll: Record<string, any>; home: string }> {
  const rekey = startKinLines(t, ['rekey', target, '--home', parent.home, '--timeout', '120s', '--json'])
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

  const { rekey, enroll, home } = await rekeyThroughKin(t, fleet, admin, phone.cn)
  t.match(enroll, { ok: true, cn: phone.cn, role: 'member', parentCn: admin.cn }, 'the new device takes over the CN')
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
