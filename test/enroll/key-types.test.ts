// DESIGN.md "Key types" end to end: a fleet with a P-256 root (kin init's default) enrolls a P-256 phone and an
// RSA-2048 lock (kin enroll --key rsa2048) through L0's real broker, and each decides access about the other over
// real mutual TLS with kin serve and kin access.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { tlsKeyTypeOf } from '../../agent/pki/key-type.ts'
import { enroll, eventually, expectExit, kin, lastJson, opensslVerifies, startFleet, startInvite } from './_harness.ts'

const KIN = fileURLToPath(new URL('../../bin/kin.mjs', import.meta.url))

/** `kin serve --json` on a home until the test ends; resolves with its first line (where it listens). */
function serve(t: Test, home: string): Promise<Record<string, unknown>> {
  const child = spawn(process.execPath, [KIN, 'serve', '--home', home, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => {
    child.kill('SIGKILL')
  })
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', line => resolve(JSON.parse(line) as Record<string, unknown>))
    child.once('close', status => reject(new Error(`kin serve exited ${status}`)))
  })
}

const keyTypeOf = (home: string): string =>
  tlsKeyTypeOf(DeviceCertificate.from(readFileSync(join(home, 'cert.pem'), 'utf8')).spkiDer)

t.test('kin enroll --key refuses an unknown key type before using the code', async t => {
  const r = await kin([
    'enroll',
    '--home',
    '/nonexistent/x',
    '--code',
    'abcd-efgh-ijkl-mnop',
    '--broker',
    'mqtts://127.0.0.1:1',
    '--key',
    'rsa1024',
    '--json',
  ])
  t.not(r.status, 0)
  t.match(r.stdout + r.stderr, /KEY_TYPE_UNKNOWN/)
  const init = await kin(['init', '--home', '/nonexistent/y', '--fleet', 'x.home.arpa', '--key', 'ed25519', '--json'])
  t.not(init.status, 0)
  t.match(init.stdout + init.stderr, /KEY_TYPE_UNKNOWN/)
})

t.test(
  'a P-256 phone and an RSA-2048 lock in one fleet enroll through the broker and decide access about each other over TLS',
  async t => {
    const l0 = await startFleet(t, 'keytypes', 'keys.home.arpa', { cliInit: true })
    t.equal(keyTypeOf(l0.home), 'p256', 'kin init makes a P-256 L0 by default')
    t.match(readFileSync(join(l0.home, 'root.pem'), 'utf8'), /BEGIN CERTIFICATE/)
    const phoneHome = join(l0.dir, 'phone'),
      lockHome = join(l0.dir, 'lock')

    const invitePhone = startInvite(l0.home, 'member', ['--broker', l0.url, '--ttl', '2m'])
    const phoneRun = await enroll(phoneHome, invitePhone, l0.url, 'phone')
    expectExit(t, phoneRun, 0, 'kin enroll (P-256 phone, the default) exits 0')
    expectExit(t, await invitePhone.done, 0, 'kin invite on L0 exits 0')
    const phone = lastJson(phoneRun.stdout) as { cn: string }

    const inviteLock = startInvite(phoneHome, 'device')
    const lockRun = await enroll(lockHome, inviteLock, l0.url, 'lock', ['--key', 'rsa2048'])
    expectExit(t, lockRun, 0, 'kin enroll --key rsa2048 (lock) exits 0')
    expectExit(t, await inviteLock.done, 0, 'kin invite on the phone exits 0')
    const lock = lastJson(lockRun.stdout) as { cn: string }

    t.equal(keyTypeOf(phoneHome), 'p256', 'the phone holds a P-256 certificate')
    t.equal(keyTypeOf(lockHome), 'rsa2048', 'the lock holds an RSA certificate')
    const rootPath = join(l0.home, 'root.pem')
    for (const home of [l0.home, phoneHome, lockHome])
      t.ok(opensslVerifies(rootPath, join(home, 'cert.pem')), `openssl verifies ${home}`)
    const state = () => l0.services.ledger.ledger.state
    t.ok(
      await eventually(
        () => [phone.cn, lock.cn].every(cn => state().currentBinding(cn)?.certHashes.length === 1),
        20_000,
      ),
      'L0 recorded both certified events',
    )

    // The RSA lock serves; the P-256 phone asks over mutual TLS (an ECDSA client certificate, an RSA server one).
    const lockServe = await serve(t, lockHome)
    const atLock = await kin([
      'access',
      '--home',
      phoneHome,
      '--target',
      `127.0.0.1:${lockServe['port']}`,
      '--action',
      'unlock',
      '--json',
    ])
    const fromPhone = lastJson(atLock.stdout)
    t.equal(fromPhone['server'], lock.cn, 'the phone verified the RSA lock as the server')
    t.equal(fromPhone['code'], 'ALLOW', 'the lock lets its parent phone unlock it', { stderr: atLock.stderr })

    // The P-256 phone serves; the RSA lock asks: the phone decides about an RSA client.
    const phoneServe = await serve(t, phoneHome)
    const atPhone = await kin([
      'access',
      '--home',
      lockHome,
      '--target',
      `127.0.0.1:${phoneServe['port']}`,
      '--action',
      'configure',
      '--json',
    ])
    const fromLock = lastJson(atPhone.stdout)
    t.equal(fromLock['server'], phone.cn, 'the lock verified the P-256 phone as the server')
    t.equal(
      fromLock['stage'],
      'answer',
      'the phone reached a decision about the RSA lock (chain, binding, lineage all checked)',
      { stdout: atPhone.stdout, stderr: atPhone.stderr },
    )
  },
)
