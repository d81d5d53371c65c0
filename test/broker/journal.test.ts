import t, { type Test } from 'tap'
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { INVITES_FILE, InviteBook, readInvites, type StoredInvite } from '../../broker/invites.ts'
import { ISSUED_FILE, IssuedRegistry, readIssued } from '../../broker/issued.ts'
import { JournalFile, journalPathOf } from '../../broker/journal-file.ts'
import { COUNTERS } from '../helpers/journal-counters.ts'

// L0's invite book and issued-certificate registry: a snapshot plus an append-only journal (broker/journal-file.ts).

function tempHome(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'kin-journal-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

// A seeded generator: the randomized sequence is the same on every run, so a failure can be replayed.
function prng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

const hex16 = (n: number): string => n.toString(16).padStart(16, '0')

function invite(n: number, expires = 100_000) {
  return {
    inviteId: hex16(n),
    loginVerifier: (n % 16).toString(16).repeat(64),
    parentCn: `p${n % 3}.example.home.arpa`,
    role: 'device' as const,
    name: `device ${n}`,
    expires,
    time: 1000,
  }
}

function legacyInvite(n: number, state: StoredInvite['state']): StoredInvite {
  return { ...invite(n), state, registered: 1000, ...(state === 'used' ? { usedAt: 1001 } : {}) }
}

const quiet = (): void => {}

t.test('replay equals the state before close: a randomized sequence of register, used, withdrawn, done', async t => {
  const path = join(tempHome(t), INVITES_FILE)
  const random = prng(20261206)
  let book = InviteBook.open(path, quiet)
  let next = 1
  // Bounded: 300 changes, the book reopened every 50 (each reopen replays the journal, then compacts it).
  for (let step = 1; step <= 300; step++) {
    const live = book.list().filter(i => i.state !== 'done' && i.state !== 'withdrawn')
    const pick = live[Math.floor(random() * live.length)]
    const roll = random()
    if (pick === undefined || roll < 0.35) book.register(invite(next++), 1000)
    else if (roll < 0.6) book.markUsed(pick.inviteId, 1000 + step)
    else if (roll < 0.8) book.withdraw(pick.inviteId, 1000 + step)
    else book.markDone(pick.inviteId, `c${step}.example.home.arpa`)
    if (step % 50 === 0 || step === 300) {
      const before = book.list()
      t.same(readInvites(path), before, `step ${step}: a reader replays the same invites, in the same order`)
      book = InviteBook.open(path, quiet)
      t.same(book.list(), before, `step ${step}: reopened, the book holds what it held`)
    }
  }
  const states = new Set(book.list().map(i => i.state))
  t.same([...states].sort(), ['done', 'pending', 'used', 'withdrawn'], 'the sequence reached every state')
  book.purge(100_000 + 3601)
  t.same(InviteBook.open(path, quiet).list(), [], 'a purge is replayed too')
})

t.test('a torn last line is dropped with a warning; the change before it stands', async t => {
  const path = join(tempHome(t), INVITES_FILE)
  const book = InviteBook.open(path, quiet)
  book.register(invite(1), 1000)
  book.register(invite(2), 1000)
  // A power loss mid-append: the start of a line marking invite 2 used, no newline.
  appendFileSync(journalPathOf(path), JSON.stringify({ set: { ...legacyInvite(2, 'used') } }).slice(0, 40))
  const warnings: string[] = []
  const reopened = InviteBook.open(path, m => warnings.push(m))
  t.equal(warnings.length, 1, 'one warning')
  t.match(warnings[0], /cut short/, 'it names the torn line')
  t.equal(reopened.get(hex16(2))?.state, 'pending', 'the torn change never counted')
  t.equal(reopened.list().length, 2, 'both registrations stand')
  reopened.markUsed(hex16(1), 1100)
  const warnings2: string[] = []
  t.equal(InviteBook.open(path, m => warnings2.push(m)).get(hex16(1))?.state, 'used', 'appends after it replay')
  t.same(warnings2, [], 'the compaction at open dropped the torn line for good')
})

t.test('a bad line in the middle of the journal is refused STORAGE_DAMAGED, the files left as they are', async t => {
  const path = join(tempHome(t), INVITES_FILE)
  const book = InviteBook.open(path, quiet)
  book.register(invite(1), 1000)
  appendFileSync(journalPathOf(path), '{"set": {"inviteId": "nope"}}\n')
  book.register(invite(2), 1000)
  const journal = readFileSync(journalPathOf(path), 'utf8')
  t.throws(() => InviteBook.open(path, quiet), { code: 'STORAGE_DAMAGED' }, 'a malformed record in the middle')
  t.throws(() => readInvites(path), { code: 'STORAGE_DAMAGED' }, 'the reader refuses it too')
  t.equal(readFileSync(journalPathOf(path), 'utf8'), journal, 'the journal was not touched')

  const lines = journal.split('\n')
  lines[2] = '{not json'
  writeFileSync(journalPathOf(path), lines.join('\n'))
  t.throws(() => InviteBook.open(path, quiet), { code: 'STORAGE_DAMAGED' }, 'a line that is not JSON')
  lines[2] = '{"put": 1}'
  writeFileSync(journalPathOf(path), lines.join('\n'))
  t.throws(() => InviteBook.open(path, quiet), { code: 'STORAGE_DAMAGED' }, 'a line that is not a change')
})

t.test('a journal newer than its snapshot is refused; one older (a compaction cut short) is skipped', async t => {
  const path = join(tempHome(t), INVITES_FILE)
  const book = InviteBook.open(path, quiet)
  book.register(invite(1), 1000)
  const snapshot = JSON.parse(readFileSync(path, 'utf8')) as { generation: number }
  const journal = readFileSync(journalPathOf(path), 'utf8')
  t.equal(journal.split('\n')[0], JSON.stringify({ journal: 1, generation: snapshot.generation }), 'header line')

  // The snapshot of the next generation written, the crash before its new journal: the old journal's changes are
  // all in the snapshot, so replaying it is skipped.
  InviteBook.open(path, quiet) // compacts: the snapshot holds invite 1
  writeFileSync(journalPathOf(path), journal)
  t.same(
    InviteBook.open(path, quiet)
      .list()
      .map(i => i.inviteId),
    [hex16(1)],
    'a stale journal is skipped',
  )
  const later = JSON.parse(readFileSync(path, 'utf8')) as { generation: number }
  writeFileSync(
    journalPathOf(path),
    JSON.stringify({ journal: 1, generation: later.generation + 1 }) + '\n' + JSON.stringify({ del: hex16(1) }) + '\n',
  )
  t.throws(() => InviteBook.open(path, quiet), { code: 'STORAGE_DAMAGED' }, 'a journal newer than the snapshot')
  rmSync(path)
  t.throws(() => InviteBook.open(path, quiet), { code: 'STORAGE_DAMAGED' }, 'a journal without its snapshot')
})

t.test('compaction when the journal outgrows twice the live records plus the floor keeps the state', async t => {
  const path = join(tempHome(t), 'counters.json')
  const store = JournalFile.open(path, COUNTERS, 8)
  const generation = (): number => (JSON.parse(readFileSync(path, 'utf8')) as { generation: number }).generation
  const first = generation()
  for (let i = 0; i < 3; i++) store.apply([{ set: { id: `c${i}`, n: 0 } }])
  // Three live records: compaction once the journal holds more than 2 × 3 + 8 = 14 changes.
  for (let n = 1; n <= 11; n++) store.apply([{ set: { id: 'c0', n } }])
  t.equal(store.journalEntries, 14, '14 changes: not compacted yet')
  t.equal(generation(), first, 'the snapshot is the one written at open')
  store.apply([{ set: { id: 'c1', n: 7 } }])
  t.equal(store.journalEntries, 0, 'the 15th change compacted the journal')
  t.equal(generation(), first + 1, 'a new snapshot generation')
  t.equal(readFileSync(journalPathOf(path), 'utf8').split('\n').length, 2, 'the new journal holds only its header')
  store.apply([{ del: 'c2' }])
  const expected = [
    { id: 'c0', n: 11 },
    { id: 'c1', n: 7 },
  ]
  t.same([...store.map.values()], expected, 'in memory')
  t.same([...JournalFile.open(path, COUNTERS, 8).map.values()], expected, 'replayed from the snapshot and journal')
})

t.test('an invite book of the version 1 format is migrated at first open', async t => {
  const path = join(tempHome(t), INVITES_FILE)
  const old = [legacyInvite(1, 'pending'), legacyInvite(2, 'used'), { ...legacyInvite(3, 'done'), enrolledCn: 'x' }]
  writeFileSync(path, JSON.stringify({ version: 1, invites: old }, null, 1) + '\n', { mode: 0o600 })
  t.same(readInvites(path), old, 'the reader reads the old format')
  const book = InviteBook.open(path, quiet)
  t.same(book.list(), old, 'every invite, in order, state kept')
  const snapshot = JSON.parse(readFileSync(path, 'utf8')) as { version: number; generation: number }
  t.equal(snapshot.version, 2, 'rewritten as a version 2 snapshot')
  t.ok(existsSync(journalPathOf(path)), 'with its journal')
  t.equal(book.register(invite(2), 1000), 'unchanged', 'a migrated registration is known')
  t.throws(() => book.register({ ...invite(2), name: 'other' }, 1000), { code: 'INVITE_REFUSED' }, 'its id stays taken')
  book.markDone(hex16(2), 'y')
  t.equal(InviteBook.open(path, quiet).get(hex16(2))?.state, 'done', 'changes after the migration replay')
  writeFileSync(path, JSON.stringify({ version: 3, invites: [] }))
  t.throws(() => InviteBook.open(path, quiet), { code: 'STORAGE_DAMAGED' }, 'an unknown version is refused')
})

t.test('an issued registry of the version 1 format is migrated at first open; its journal replays', async t => {
  const home = tempHome(t)
  const path = join(home, ISSUED_FILE)
  mkdirSync(join(home, 'ca'), { mode: 0o700 })
  const record = (n: number) => ({
    serial: (0x1000 + n).toString(16),
    cn: `d${n}.example.home.arpa`,
    certHash: n.toString(16).repeat(64).slice(0, 64),
    spkiHash: ((n + 1) % 16).toString(16).repeat(64),
    notAfter: 2_000_000_000,
    issuedAt: 1000 + n,
  })
  writeFileSync(path, JSON.stringify({ version: 1, certificates: [record(1), record(2)] }, null, 1) + '\n')
  const registry = IssuedRegistry.open(home, quiet)
  t.same(registry.list(), [record(1), record(2)], 'both certificates, in order')
  t.ok(registry.has(record(2).certHash), 'looked up by hash')
  t.equal((JSON.parse(readFileSync(path, 'utf8')) as { version: number }).version, 2, 'rewritten as version 2')
  appendFileSync(journalPathOf(path), JSON.stringify({ set: record(3) }) + '\n')
  appendFileSync(journalPathOf(path), JSON.stringify({ set: record(4) }).slice(0, 30))
  const warnings: string[] = []
  const files = readFileSync(journalPathOf(path), 'utf8')
  t.same(readIssued(home), [record(1), record(2), record(3)], 'a reader replays the journal, its torn line left out')
  t.equal(readFileSync(journalPathOf(path), 'utf8'), files, 'and changes nothing on disk')
  const reopened = IssuedRegistry.open(home, m => warnings.push(m))
  t.same(reopened.list(), [record(1), record(2), record(3)], 'the journal replayed, its torn last line dropped')
  t.equal(warnings.length, 1, 'with a warning')
  appendFileSync(journalPathOf(path), '{"set": {"serial": "zz"}}\n' + JSON.stringify({ set: record(4) }) + '\n')
  t.throws(() => IssuedRegistry.open(home, quiet), { code: 'STORAGE_DAMAGED' }, 'a bad middle line is refused')
})

t.test('an append the disk refuses is STORAGE_IO and changes nothing; the next change compacts first', async t => {
  const path = join(tempHome(t), 'counters.json')
  const store = JournalFile.open(path, COUNTERS)
  store.apply([{ set: { id: 'a', n: 1 } }])
  // Running as any user, a directory where the journal should be makes every append fail.
  rmSync(journalPathOf(path))
  mkdirSync(journalPathOf(path))
  t.throws(() => store.apply([{ set: { id: 'a', n: 2 } }]), { code: 'STORAGE_IO' }, 'the append is refused')
  t.same([...store.map.values()], [{ id: 'a', n: 1 }], 'memory kept the state the disk holds')
  rmSync(journalPathOf(path), { recursive: true })
  store.apply([{ set: { id: 'b', n: 3 } }])
  t.equal(readFileSync(journalPathOf(path), 'utf8').split('\n').length, 3, 'a new journal: its header and the change')
  t.same(
    [...JournalFile.open(path, COUNTERS).map.values()],
    [
      { id: 'a', n: 1 },
      { id: 'b', n: 3 },
    ],
    'the compaction before the change kept the state',
  )
})

t.test('a journal gone from under its store fails the append rather than starting one without its header', async t => {
  const path = join(tempHome(t), 'counters.json')
  const store = JournalFile.open(path, COUNTERS)
  store.apply([{ set: { id: 'a', n: 1 } }])
  rmSync(journalPathOf(path))
  t.throws(() => store.apply([{ set: { id: 'a', n: 2 } }]), { code: 'STORAGE_IO' }, 'the append is refused')
  t.notOk(existsSync(journalPathOf(path)), 'no headless journal was created')
  store.apply([{ set: { id: 'a', n: 3 } }])
  t.same(
    [...JournalFile.open(path, COUNTERS).map.values()],
    [{ id: 'a', n: 3 }],
    'the next change compacted, then replays',
  )
})
