import t from 'tap'
import { join } from 'node:path'
import { enroll, eventually, expectExit, kin, lastJson, startFleet, startInvite } from './_harness.ts'

// docs/PAIRING.md step 1: pending invites survive a restart of L0. End to end: the inviting `kin invite` keeps
// its session alive across the restart (it reconnects and resubscribes), the new device repeats its request
// until the parent answers, and the code registered before the restart still logs in after it.
t.test('an invite registered before L0 restarts is honoured after the restart', async t => {
  const l0 = await startFleet(t, 'restart')
  const invite = startInvite(l0.home, 'guest', ['--broker', l0.url, '--valid', '2d', '--ttl', '5m'])
  const { code, inviteId } = JSON.parse(await invite.firstLine) as { code: string; inviteId: string }
  const cnOfL0 = l0.services.cn

  await l0.restart()
  t.ok(l0.services.invites.get(inviteId) !== undefined, 'the restarted L0 still has the invite on record')
  // Enroll only once the inviting device is back, so this tests the invite surviving, not a race with its reconnect.
  await eventually(() => l0.services.clientsByCn().has(cnOfL0), 20_000)
  t.ok(l0.services.clientsByCn().has(cnOfL0), 'kin invite reconnected to the restarted L0 by itself')

  const dir = join(l0.dir, 'guest')
  const enrolled = await enroll(dir, code, l0.url, 'phone', ['--name', 'visitor'])
  expectExit(t, enrolled, 0, 'kin enroll exits 0 with the code from before the restart')
  const guest = lastJson(enrolled.stdout) as { cn: string; role: string }
  t.equal(guest.role, 'guest')
  const inviter = await invite.done
  expectExit(t, inviter, 0, 'kin invite exits 0')
  t.equal((lastJson(inviter.stdout) as { cn: string }).cn, guest.cn)

  // A guest pass: --valid 2d bounds the authorization, not the parent's (20-year) notAfter.
  const binding = l0.services.ledger.ledger.state.currentBinding(guest.cn)
  t.ok(binding !== undefined, "the guest is in L0's ledger")
  const now = Date.now() / 1000
  t.ok(
    binding!.notAfter > now + 2 * 86400 - 120 && binding!.notAfter <= now + 2 * 86400 + 5,
    'its notAfter is the --valid guest pass (2 days)',
  )
  expectExit(t, await kin(['ledger', 'verify', '--home', dir]), 0, "kin ledger verify passes on the guest's home")
})
