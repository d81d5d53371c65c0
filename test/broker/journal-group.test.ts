/** @module Group commit of L0's journals: changes at once share one fdatasync, each answered only once durable. */
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { InviteBook } from '../../broker/invites.ts'
import { JournalFile, journalPathOf } from '../../broker/journal-file.ts'
import { KinError } from '../../agent/errors.ts'
import { COUNTERS } from '../helpers/journal-counters.ts'

const CHILD = fileURLToPath(new URL('./_journal-group-child.ts', import.meta.url))

function tempHome(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'kin-journal-group-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const quiet = (): void => {}

t.test('20 changes at once, killed -9 right after their answers: all 20 are on disk, under fewer fsyncs', async t => {
  const path = join(tempHome(t), 'counters.json')
  JournalFile.open(path, COUNTERS)
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, path, '20'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const line = await new Promise<string>((resolve, reject) => {
    let out = ''
    const deadline = setTimeout(() => reject(new Error('no answer from the child within 60 s')), 60_000)
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('\n')) {
        clearTimeout(deadline)
        resolve(out.trim())
      }
    })
    child.on('close', code => reject(new Error(`child ended (${code}) before answering: ${out}`)))
  })
  const closed = new Promise(resolve => child.on('close', (_code, signal) => resolve(signal)))
  child.kill('SIGKILL')
  t.equal(await closed, 'SIGKILL', 'the child was killed before any orderly close')
  const flushes = Number(line.replace('answered ', ''))
  t.ok(flushes >= 1 && flushes < 20, `the 20 changes shared fsyncs (${flushes})`)
  const reopened = JournalFile.open(path, COUNTERS)
  t.same(
    [...reopened.map.values()].sort((a, b) => a.n - b.n),
    Array.from({ length: 20 }, (_, i) => ({ id: `c${i}`, n: i })),
    'every answered change replays',
  )
})

t.test('a change applied while others wait for a group commit: memory ends as the journal replays', async t => {
  const path = join(tempHome(t), 'counters.json')
  const store = JournalFile.open(path, COUNTERS)
  const grouped = store.applyGrouped([{ set: { id: 'k', n: 1 } }])
  t.equal(store.latest('k')?.n, 1, 'latest() sees the waiting change')
  t.notOk(store.map.has('k'), 'memory does not hold it before it is durable')
  store.apply([{ set: { id: 'k', n: 2 } }])
  await grouped
  const second = store.applyGrouped([{ set: { id: 'j', n: 3 } }])
  // Its line is written and being fsynced when the synchronous change comes: that one settles it first.
  await new Promise(resolve => setImmediate(resolve))
  store.apply([{ set: { id: 'j', n: 4 } }])
  await second
  t.same(
    [...JournalFile.open(path, COUNTERS).map.values()].sort((a, b) => a.id.localeCompare(b.id)),
    [...store.map.values()].sort((a, b) => a.id.localeCompare(b.id)),
    'the reopened journal holds what memory holds',
  )
})

t.test('a group commit the disk refuses is STORAGE_IO for every caller in it, memory unchanged', async t => {
  const path = join(tempHome(t), 'counters.json')
  const store = JournalFile.open(path, COUNTERS)
  await store.applyGrouped([{ set: { id: 'a', n: 1 } }])
  rmSync(journalPathOf(path))
  const refused = await Promise.allSettled([
    store.applyGrouped([{ set: { id: 'a', n: 2 } }]),
    store.applyGrouped([{ set: { id: 'b', n: 3 } }]),
  ])
  t.same(
    refused.map(r => (r.status === 'rejected' ? (r.reason as KinError).code : 'ok')),
    ['STORAGE_IO', 'STORAGE_IO'],
    'both callers are refused',
  )
  t.same([...store.map.values()], [{ id: 'a', n: 1 }], 'memory kept the state the disk holds')
  await store.applyGrouped([{ set: { id: 'c', n: 4 } }])
  t.same(
    [...JournalFile.open(path, COUNTERS).map.values()],
    [
      { id: 'a', n: 1 },
      { id: 'c', n: 4 },
    ],
    'the next change compacted first, then replays',
  )
})

t.test('two registrations under one invite id at once: the second is refused, not written over the first', async t => {
  const path = join(tempHome(t), 'invites.json')
  const book = InviteBook.open(path, quiet)
  const base = {
    inviteId: '00000000000000aa',
    loginVerifier: 'a'.repeat(64),
    parentCn: 'p.example.home.arpa',
    role: 'device' as const,
    expires: 100_000,
    time: 1000,
  }
  const results = await Promise.allSettled([
    book.registerGrouped({ ...base, name: 'first' }, 1000),
    book.registerGrouped({ ...base, name: 'second' }, 1000),
  ])
  t.equal(results[0].status, 'fulfilled', 'the first is registered')
  t.equal(
    results[1].status === 'rejected' ? (results[1].reason as KinError).code : 'accepted',
    'INVITE_REFUSED',
    'the second is refused',
  )
  const j = readFileSync(journalPathOf(path), 'utf8').trim().split('\n')
  t.equal(j.length, 2, 'one journal line besides the header')
  t.equal(InviteBook.open(path, quiet).get(base.inviteId)?.name, 'first', 'the book on disk holds the first')
})

/** A fresh invite book in its own home holding one open invite for a lock (its verifier `letter` repeated). */
function bookWithInvite(
  t: Test,
  letter: string,
  inviteId: string,
): { path: string; book: InviteBook; inviteId: string } {
  const path = join(tempHome(t), 'invites.json')
  const book = InviteBook.open(path, quiet)
  book.register(
    {
      inviteId,
      loginVerifier: letter.repeat(64),
      parentCn: 'p.example.home.arpa',
      role: 'device',
      name: 'lock',
      expires: 100_000,
      time: 1000,
    },
    1000,
  )
  return { path, book, inviteId }
}

t.test('an invite being marked done under a group commit is not withdrawn meanwhile', async t => {
  const { path, book, inviteId } = bookWithInvite(t, 'b', '00000000000000bb')
  book.markUsed(inviteId, 1001)
  const done = book.markDoneGrouped(inviteId, 'c.example.home.arpa')
  t.throws(() => book.withdraw(inviteId, 1002), { code: 'ENROLL_STATE' }, 'the withdrawal is refused')
  await done
  t.equal(InviteBook.open(path, quiet).get(inviteId)?.state, 'done', 'the book on disk says done')
})

t.test('two logins with one code at once: the second finds it used while the first waits for its fsync', async t => {
  const { path, book, inviteId } = bookWithInvite(t, 'c', '00000000000000cc')
  const results = await Promise.allSettled([book.markUsedGrouped(inviteId, 1001), book.markUsedGrouped(inviteId, 1002)])
  t.equal(results[0].status, 'fulfilled', 'the first login uses the code')
  t.equal(
    results[1].status === 'rejected' ? (results[1].reason as KinError).code : 'accepted',
    'PAIR_CODE_USED',
    'the second is refused',
  )
  t.equal(InviteBook.open(path, quiet).get(inviteId)?.usedAt, 1001, "the book on disk holds the first login's use")
})
