import t from 'tap'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { derivePairingSecrets, formatPairingCode, loginVerifier } from '../../agent/enroll/pairing.ts'
import { signInvite } from '../../agent/enroll/invite.ts'
import { decodeInviteReply } from '../../agent/gossip/pair-wire.ts'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import {
  configOf,
  enroll,
  eventually,
  expectExit,
  inviterOf,
  kin,
  lastJson,
  opensslVerifies,
  startFleet,
  startInvite,
} from './_harness.ts'

// DESIGN.md "Enrollment" end to end through L0's broker: L0 → member phone → lock, every step a user's command.
t.test('L0 invites a phone, the phone invites a lock: certificates, ledgers and the lineage all check out', async t => {
  const l0 = await startFleet(t, 'tree', 'tree.home.arpa', { cliInit: true })
  const phoneHome = join(l0.dir, 'phone')
  const lockHome = join(l0.dir, 'lock')

  // L0 → phone (member). L0's home has no broker entry: --broker.
  const invitePhone = startInvite(l0.home, 'member', ['--broker', l0.url, '--name', 'alice phone', '--ttl', '2m'])
  const first = JSON.parse(await invitePhone.firstLine) as { code: string; inviteId: string; expires: number }
  t.match(first.code, /^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$/, 'the first --json line carries the code')
  t.match(first.inviteId, /^[0-9a-f]{16}$/)
  t.ok(first.expires > Date.now() / 1000, 'and when it expires')
  const phoneRun = await enroll(phoneHome, first.code.toUpperCase(), l0.url, 'phone', ['--name', 'my phone'])
  expectExit(t, phoneRun, 0, 'kin enroll (phone) exits 0')
  const phone = lastJson(phoneRun.stdout) as { cn: string; fleet: string; files: Record<string, string> }
  t.equal(phone.fleet, 'tree.home.arpa')
  t.same(
    Object.keys(phone.files).sort(),
    ['cert', 'config', 'ledger', 'ledgerKey', 'root', 'tlsKey'],
    'enroll --json names the files it wrote',
  )
  const phoneInvite = await invitePhone.done
  expectExit(t, phoneInvite, 0, 'kin invite on L0 exits 0 once the phone is certified')
  const phoneResult = lastJson(phoneInvite.stdout) as { cn: string; role: string; name: string }
  t.equal(phoneResult.cn, phone.cn, 'the inviter reports the CN the child got')
  t.equal(phoneResult.role, 'member')
  t.equal(phoneResult.name, 'alice phone', "the inviter's --name overrides the child's")

  const phoneConfig = configOf(phoneHome)
  t.same(
    [phoneConfig.cn, phoneConfig.role, phoneConfig.broker, phoneConfig.l0Cn, phoneConfig.parentCn],
    [phone.cn, 'member', l0.url, l0.services.cn, l0.services.cn],
    'config.json: cn, role, broker URL, L0 CN and parent',
  )
  for (const f of ['tls-key.pem', 'ledger-key'])
    t.equal(statSync(join(phoneHome, f)).mode & 0o777, 0o600, `${f} is 0600`)

  // phone → lock (device). The phone's config holds the broker URL.
  const inviteLock = startInvite(phoneHome, 'device', ['--name', 'front-door lock'])
  const lockRun = await enroll(lockHome, inviteLock, l0.url, 'lock')
  expectExit(t, lockRun, 0, 'kin enroll (lock) exits 0')
  const lock = lastJson(lockRun.stdout) as { cn: string }
  const lockInvite = await inviteLock.done
  expectExit(t, lockInvite, 0, 'kin invite on the phone exits 0')
  t.equal((lastJson(lockInvite.stdout) as { cn: string }).cn, lock.cn)

  // X.509: every certificate chains to the fleet root for OpenSSL too; SAN carries the parent marker.
  const rootPath = join(l0.home, 'root.pem')
  for (const [who, dir] of [
    ['L0', l0.home],
    ['phone', phoneHome],
    ['lock', lockHome],
  ]) {
    t.ok(opensslVerifies(rootPath, join(dir!, 'cert.pem')), `openssl verify accepts the ${who} certificate`)
  }
  const lockCert = DeviceCertificate.from(readFileSync(join(lockHome, 'cert.pem'), 'utf8'))
  t.equal(lockCert.cn, lock.cn)
  t.equal(lockCert.parentCn, phone.cn, "the lock's SAN names the phone as its parent")
  t.equal(configOf(lockHome).parentCn, phone.cn)

  // Ledgers: every home verifies; the lock's ledger holds its lineage up to genesis.
  const homes: Array<[string, string]> = [
    ['L0', l0.home],
    ['phone', phoneHome],
    ['lock', lockHome],
  ]
  const [verified, lockShown, phoneShown] = await Promise.all([
    Promise.all(homes.map(([, dir]) => kin(['ledger', 'verify', '--home', dir, '--json']))),
    kin(['ledger', 'show', '--home', lockHome, '--json']),
    kin(['ledger', 'show', '--home', phoneHome, '--json']),
  ])
  homes.forEach(([who], i) => expectExit(t, verified[i]!, 0, `kin ledger verify passes on the ${who} home`))
  const lockShow = lastJson(lockShown.stdout) as { events: Array<{ type: string; subject: string; issuer: string }> }
  const authorizes = lockShow.events.filter(e => e.type === 'authorize').map(e => [e.subject, e.issuer])
  t.same(
    authorizes,
    [
      [phone.cn, l0.services.cn],
      [lock.cn, phone.cn],
    ],
    "the lock's ledger: the phone authorized by L0, the lock by the phone",
  )
  t.same(
    lockShow.events.at(-1),
    { ...lockShow.events.at(-1), type: 'certified', subject: lock.cn },
    'ending with its own certified event',
  )
  const phoneShow = lastJson(phoneShown.stdout) as { events: Array<{ type: string; subject: string }> }
  t.ok(
    phoneShow.events.some(e => e.type === 'authorize' && e.subject === lock.cn),
    'the phone kept the authorization proof it signed',
  )

  // L0 (the miner) recorded both enrollments, certified events included (submitted after enroll).
  // The submission is acknowledged by the broker before the miner has written it: wait for it (bounded).
  const state = () => l0.services.ledger.ledger.state
  await eventually(() => [phone.cn, lock.cn].every(cn => state().currentBinding(cn)?.certHashes.length === 1), 10_000)
  for (const cn of [phone.cn, lock.cn]) {
    t.equal(state().currentBinding(cn)?.certHashes.length, 1, `L0's ledger records the certificate of ${cn}`)
  }

  // A device may not invite.
  const lockInvites = await kin(['invite', '--home', lockHome, '--json'])
  t.equal(lockInvites.status, 1, 'kin invite on the lock exits 1')
  t.equal(lastJson(lockInvites.stdout).code, 'ROLE_CANNOT_DELEGATE')
  // L0 holds the same line when a device skips the CLI's own check and registers an invite anyway.
  const { inviter, client } = await inviterOf(lockHome, l0.url)
  t.teardown(() => client.close())
  const topics = fleetTopics(inviter.fleet)
  await client.subscribe([topics.inboxAll(inviter.cn)])
  const secrets = derivePairingSecrets(formatPairingCode(nodeCrypto.randomBytes(10)))
  const now = Math.floor(Date.now() / 1000)
  await client.publish(
    topics.inbox(inviter.l0Cn, inviter.cn),
    signInvite(
      nodeCrypto,
      {
        inviteId: secrets.inviteId,
        loginVerifier: loginVerifier(secrets.loginProof),
        parentCn: inviter.cn,
        role: 'device',
        name: '',
        expires: now + 60,
        time: now,
      },
      inviter.ledgerSeed,
    ),
  )
  const reply = await client.waitFor(topics.inbox(inviter.cn, inviter.l0Cn), decodeInviteReply, {
    timeoutMs: 10_000,
    code: 'PAIR_TIMEOUT',
    message: 'L0 did not answer',
  })
  t.same(
    [reply.ok, reply.inviteId, reply.ok ? undefined : reply.code],
    [false, secrets.inviteId, 'ROLE_CANNOT_DELEGATE'],
    'L0 answers invite-error ROLE_CANNOT_DELEGATE',
  )
})
