import t, { type Test } from 'tap'
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { basename, dirname, join } from 'node:path'
import { INVITES_FILE, readInvites } from '../../broker/invites.ts'
import { completeInvite, openInvite } from '../../agent/gossip/invite-session.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import {
  configOf,
  eventually,
  expectExit,
  inviterOf,
  kin,
  lastJson,
  startFleet,
  startKin,
  type TestL0,
} from './_harness.ts'

// DESIGN.md "The device runtime": enrollment writes the home atomically. `kin enroll` builds the home in
// `.DIR.enrolling-<pid>` next to DIR and renames it into place: a stop at any point leaves no DIR or a whole one.

const now = () => Math.floor(Date.now() / 1000)
const choices = { role: 'device' as const, name: '', ttlSeconds: 300, guestValidSeconds: 86400 }
// Generous: a loaded 2-core machine starts a kin process in seconds, not milliseconds.
const WAIT_MS = 60_000

function stagingDirs(dir: string): string[] {
  const prefix = `.${basename(dir)}.enrolling-`
  return existsSync(dirname(dir))
    ? readdirSync(dirname(dir))
        .filter(n => n.startsWith(prefix))
        .map(n => join(dirname(dir), n))
    : []
}

function inviteState(l0: TestL0, inviteId: string): string | undefined {
  return readInvites(join(l0.home, INVITES_FILE)).find(i => i.inviteId === inviteId)?.state
}

/** A TCP listener that accepts and never answers: an enrollment waits in its login, the code unused. */
async function silentBroker(t: Test): Promise<string> {
  const sockets: Socket[] = []
  const server: Server = createServer(s => {
    sockets.push(s)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(
    () =>
      new Promise<void>(resolve => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  )
  const address = server.address()
  return `mqtts://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
}

/** Opens an invite in-process, lets the parent side run, and enrolls DIR with `kin enroll` to the end. */
async function enrollFresh(t: Test, l0: TestL0, dir: string): Promise<void> {
  const { inviter, client } = await inviterOf(l0.home, l0.url)
  t.teardown(() => client.close())
  const opened = await openInvite(nodeCrypto, client, inviter, choices, { now: now(), timeoutMs: 20_000 })
  const parent = completeInvite(nodeCrypto, nodePki, client, inviter, opened, {
    keep: async () => undefined,
    now,
    stepTimeoutMs: WAIT_MS,
  })
  parent.catch(() => undefined)
  const run = await kin(['enroll', '--home', dir, '--code', opened.code, '--broker', l0.url, '--json'])
  expectExit(t, run, 0, 'a second kin enroll with a fresh code into the same DIR enrolls')
  await parent
  t.equal(configOf(dir).fleet, 'interrupt.home.arpa', 'DIR is a whole home (config.json names the fleet)')
  t.equal(statSync(dir).mode & 0o777, 0o700, 'DIR is 0700')
  t.same(stagingDirs(dir), [], 'no staging directory is left')
}

function assertNoHome(t: Test, dir: string): void {
  t.notOk(existsSync(dir), 'no DIR is left')
  t.same(stagingDirs(dir), [], 'no staging directory is left')
}

t.test(
  'kin enroll stopped at any point leaves no DIR or a whole one; the next enroll into the same DIR works',
  async t => {
    const l0 = await startFleet(t, 'interrupt')

    t.test('SIGTERM before the code is used: nothing written, the code still works', async t => {
      const dir = join(l0.dir, 'early')
      const url = await silentBroker(t)
      const { inviter, client } = await inviterOf(l0.home, l0.url)
      t.teardown(() => client.close())
      const opened = await openInvite(nodeCrypto, client, inviter, choices, { now: now(), timeoutMs: 20_000 })
      const run = startKin(['enroll', '--home', dir, '--code', opened.code, '--broker', url, '--json'], {
        timeoutMs: 2 * WAIT_MS,
      })
      await eventually(() => stagingDirs(dir).length === 1, WAIT_MS)
      t.equal(stagingDirs(dir).length, 1, 'the home is being built in a staging directory next to DIR')
      t.equal(statSync(stagingDirs(dir)[0]!).mode & 0o777, 0o700, 'the staging directory is 0700')
      t.notOk(existsSync(dir), 'DIR does not exist while enrolling')
      run.kill()
      const done = await run.done
      expectExit(t, done, 143, 'kin enroll exits 143 on SIGTERM')
      const out = lastJson(done.stdout)
      t.equal(out.code, 'ENROLL_INTERRUPTED')
      // Stopped while making keys the code was not used; stopped while its login was under way (P-256 keys take
      // milliseconds) the device cannot know whether L0 saw the code, and says it may be used up. Either way L0 did not.
      t.match(out.message, /nothing was written to .*the pairing code (was not used|was logging in and may be used up)/)
      assertNoHome(t, dir)
      t.equal(inviteState(l0, opened.inviteId), 'pending', 'L0 still holds the code as unused')
      // The same code, now through the real broker, into the same DIR.
      const parent = completeInvite(nodeCrypto, nodePki, client, inviter, opened, {
        keep: async () => undefined,
        now,
        stepTimeoutMs: WAIT_MS,
      })
      parent.catch(() => undefined)
      const again = await kin(['enroll', '--home', dir, '--code', opened.code, '--broker', l0.url, '--json'])
      expectExit(t, again, 0, 'the unused code enrolls the device')
      await parent
      t.ok(configOf(dir).cn.endsWith('.interrupt.home.arpa'), 'DIR is a whole home')
    })

    t.test('SIGTERM after the code logged in, waiting for the parent: no DIR, the code reported used up', async t => {
      const dir = join(l0.dir, 'waiting')
      const { inviter, client } = await inviterOf(l0.home, l0.url)
      t.teardown(() => client.close())
      const opened = await openInvite(nodeCrypto, client, inviter, choices, { now: now(), timeoutMs: 20_000 })
      const run = startKin(['enroll', '--home', dir, '--code', opened.code, '--broker', l0.url, '--json'], {
        timeoutMs: 2 * WAIT_MS,
      })
      await eventually(() => inviteState(l0, opened.inviteId) === 'used', WAIT_MS)
      t.equal(inviteState(l0, opened.inviteId), 'used', 'the code logged in at L0')
      // The request is sent right after the login; give it a moment so the stop falls inside the wait for the parent.
      await new Promise(r => setTimeout(r, 500))
      run.kill()
      const done = await run.done
      expectExit(t, done, 143, 'kin enroll exits 143 on SIGTERM')
      const out = lastJson(done.stdout)
      t.equal(out.code, 'ENROLL_INTERRUPTED')
      t.match(out.message, /used up when it logged in.*kin invite/)
      assertNoHome(t, dir)
      await enrollFresh(t, l0, dir)
    })

    t.test(
      'SIGTERM once L0 issued the certificate: no DIR, or a whole one the device finished enrolling into',
      async t => {
        const dir = join(l0.dir, 'late')
        const { inviter, client } = await inviterOf(l0.home, l0.url)
        t.teardown(() => client.close())
        const opened = await openInvite(nodeCrypto, client, inviter, choices, { now: now(), timeoutMs: 20_000 })
        const parent = completeInvite(nodeCrypto, nodePki, client, inviter, opened, {
          keep: async () => undefined,
          now,
          stepTimeoutMs: WAIT_MS,
        })
        const run = startKin(['enroll', '--home', dir, '--code', opened.code, '--broker', l0.url, '--json'], {
          timeoutMs: 2 * WAIT_MS,
        })
        const { childCn } = await parent
        run.kill()
        const done = await run.done
        t.same(stagingDirs(dir), [], 'no staging directory is left')
        if (existsSync(dir)) {
          // The certificate had reached the device: a stop then finishes the home rather than orphan the authorization.
          t.comment('the stop came after the certificate reached the device')
          expectExit(t, done, 0, 'kin enroll finished the enrollment L0 had already recorded')
          t.equal(lastJson(done.stdout).cn, childCn, 'and says so')
          t.equal(configOf(dir).cn, childCn, 'DIR is a whole home: config.json')
          for (const f of ['root.pem', 'cert.pem', 'tls-key.pem', 'ledger-key', 'ledger.cbor'])
            t.ok(existsSync(join(dir, f)), `DIR holds ${f}`)
        } else {
          t.comment('the stop came before the certificate reached the device')
          expectExit(t, done, 143, 'stopped before the certificate arrived: exit 143')
          t.equal(lastJson(done.stdout).code, 'ENROLL_INTERRUPTED')
          await enrollFresh(t, l0, dir)
        }
      },
    )

    t.test(
      'SIGKILL leaves the staging directory; the next kin enroll into the same DIR removes it and enrolls',
      async t => {
        const dir = join(l0.dir, 'killed')
        const url = await silentBroker(t)
        const code = 'abcd-efgh-ijkm-npqr'
        const run = startKin(['enroll', '--home', dir, '--code', code, '--broker', url, '--json'], {
          timeoutMs: 2 * WAIT_MS,
        })
        await eventually(() => stagingDirs(dir).length === 1, WAIT_MS)
        const [staging] = stagingDirs(dir)
        t.ok(staging !== undefined, 'the staging directory exists')
        process.kill(run.pid!, 'SIGKILL')
        const done = await run.done
        t.equal(done.status, null, 'kin enroll was killed')
        t.ok(existsSync(staging!), 'SIGKILL leaves the staging directory behind')
        t.notOk(existsSync(dir), 'and no DIR')
        await enrollFresh(t, l0, dir)
        t.notOk(existsSync(staging!), 'the next enrollment removed it')
      },
    )

    t.test('a staging directory of a running process is refused STORAGE_BUSY, before any code is used', async t => {
      const dir = join(l0.dir, 'busy')
      const staging = join(l0.dir, `.busy.enrolling-${process.pid}`)
      mkdirSync(staging, { mode: 0o700 })
      const run = await kin(['enroll', '--home', dir, '--code', 'abcd-efgh-ijkm-npqr', '--broker', l0.url, '--json'])
      expectExit(t, run, 2, 'kin enroll exits 2')
      const out = lastJson(run.stdout)
      t.equal(out.code, 'STORAGE_BUSY')
      t.match(out.message, new RegExp(`pid ${process.pid}.*remove`))
      t.ok(existsSync(staging), "the other process's staging directory is left alone")
      t.notOk(existsSync(dir), 'no DIR')
    })

    t.test('a half home an older kinship left (keys, no config.json) is named as such, with what to do', async t => {
      const dir = join(l0.dir, 'half')
      mkdirSync(dir, { mode: 0o700 })
      writeFileSync(join(dir, 'tls-key.pem'), 'key', { mode: 0o600 })
      writeFileSync(join(dir, 'ledger-key'), 'key', { mode: 0o600 })
      const run = await kin(['enroll', '--home', dir, '--code', 'abcd-efgh-ijkm-npqr', '--broker', l0.url, '--json'])
      expectExit(t, run, 2, 'kin enroll exits 2')
      const out = lastJson(run.stdout)
      t.equal(out.code, 'HOME_EXISTS')
      t.match(out.message, /interrupted.*rm -r/)
      t.same(stagingDirs(dir), [], 'no staging directory is made')
    })
  },
)
