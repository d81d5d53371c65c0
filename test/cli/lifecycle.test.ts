// kin status, kin devices and kin show as child processes on real homes of the house, with the guest's phone revoked;
// and --force on the commands that write files (DESIGN.md "Command line": no command overwrites a file it did not create).
import t from 'tap'
import { kin } from '../enroll/_harness.ts'
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { memoryStorage } from '../../agent/portable/memory-storage.ts'
import { PersistentLedger } from '../../agent/ledger/persistent.ts'
import { Miner } from '../../agent/ledger/miner.ts'
import { encodeSyncFile } from '../../agent/ledger/replica.ts'
import { tempDir } from '../helpers/home-fleet.ts'
import { formatAuditLine } from '../../agent/access/audit.ts'
import { makeServeHouse } from '../serve/_house.ts'

function json(stdout: string): Record<string, any> {
  return JSON.parse(stdout) as Record<string, any>
}

// The house, a second "front door" (a camera under the tablet) for an ambiguous name, and the guest's phone lost.
const house = await makeServeHouse()
const { fleet } = house
const camera = await fleet.enroll(
  house.cn['L2.2'],
  { role: 'device', notAfter: house.now + 300 * 86400 },
  { kind: 'camera', name: 'front door' },
)
fleet.syncAll()
fleet.revoke(house.cn['L2.2'], house.cn['L3.4'], { reason: 'lost', effective: house.now, subtree: false })
const guest = house.cn['L3.4'],
  lock = house.cn['L3.3'],
  tablet = house.cn['L2.2']

// A head sealed by L0's miner over the whole ledger, as the phone's last sync left it in sync.cbor.
async function sealedSyncFile(): Promise<{ bytes: Uint8Array; height: number; treeSize: number; time: number }> {
  const storage = memoryStorage()
  const ledger = await PersistentLedger.open(nodeCrypto, await storage.openAppendFile('ledger.cbor'))
  const miner = await Miner.open(
    nodeCrypto,
    ledger,
    await storage.openAppendFile('heads.cbor'),
    fleet.fleet.ledgerSeed,
    { boundTimes: false },
  )
  const now = Math.floor(Date.now() / 1000)
  await miner.submit(
    fleet.l0Ledger.state.log.map(e => e.bytes),
    now,
  )
  await miner.seal(now)
  const head = miner.latestHead()!
  const bytes = encodeSyncFile(miner.latestHeadBytes()!, now)
  await miner.close()
  return { bytes, height: head.height, treeSize: head.treeSize, time: head.time }
}

const phoneHome = await house.home(tablet)
const guestHome = await house.home(guest)
const l0Home = await house.home(fleet.l0)
const work = tempDir('kin-lifecycle-')
t.teardown(() => {
  phoneHome.remove()
  guestHome.remove()
  l0Home.remove()
  work.remove()
})
const sealed = await sealedSyncFile()
writeFileSync(join(phoneHome.dir, 'sync.cbor'), sealed.bytes, { mode: 0o600 })

t.test(
  'kin status: who the tablet is, its certificate, its head, no agent; then an agent holding the home',
  async t => {
    const r = await kin(['status', '--home', phoneHome.dir, '--json'])
    t.equal(r.status, 0, 'a valid identity exits 0', { stderr: r.stderr })
    const s = json(r.stdout)
    t.equal(s.cn, tablet)
    t.equal(s.name, 'tablet')
    t.equal(s.role, 'member')
    t.equal(s.fleet, fleet.fleet.domain)
    t.same(s.parent, { cn: house.cn.L1, name: 'laptop', role: 'admin' })
    t.equal(s.certificate.notAfter, fleet.device(tablet).certificate.notAfter, 'the expiry of cert.pem, in seconds')
    t.equal(s.ledger.events, fleet.l0Ledger.state.log.length)
    t.match(s.head, { height: sealed.height, treeSize: sealed.treeSize, time: sealed.time }, 'the head from sync.cbor')
    t.equal(s.agent, null, 'nothing holds the home')
    t.same(s.standing, { valid: true })

    const text = await kin(['status', '--home', phoneHome.dir])
    t.equal(text.status, 0)
    t.match(text.stdout, /expires \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/, 'people read ISO 8601')
    t.match(text.stdout, new RegExp(`head ${sealed.height} over ${sealed.treeSize} events`))
    t.match(text.stdout, /parent\s+"laptop"/)
    t.match(text.stdout, /identity\s+valid/)

    // A live process's pid in ledger.lock is what kin serve and kin sync --follow leave while they run.
    writeFileSync(join(phoneHome.dir, 'ledger.lock'), `${process.pid}\n`, { mode: 0o600 })
    try {
      const held = json((await kin(['status', '--home', phoneHome.dir, '--json'])).stdout)
      t.same(held.agent, { pid: process.pid, what: 'kin serve or kin sync --follow' })
    } finally {
      await import('node:fs').then(fs => fs.unlinkSync(join(phoneHome.dir, 'ledger.lock')))
    }
  },
)

t.test('kin status on the revoked guest says so plainly and exits 1', async t => {
  const r = await kin(['status', '--home', guestHome.dir, '--json'])
  t.equal(r.status, 1, { stderr: r.stderr })
  const s = json(r.stdout)
  t.equal(s.standing.valid, false)
  t.equal(s.standing.code, 'REVOKED')
  t.match(s.standing.revocation, { reason: 'lost', effective: house.now, by: tablet })
  t.equal(s.head, null, 'no sync.cbor: no verified head')
  const text = await kin(['status', '--home', guestHome.dir])
  t.equal(text.status, 1)
  t.match(
    text.stdout,
    /REVOKED: this device's identity is no longer valid — revoked \(lost\) effective \d{4}-.*by "tablet"/,
  )
  t.match(text.stdout, /no verified head yet/)
})

t.test('kin status on L0 reads the miner side of the home', async t => {
  const r = await kin(['status', '--home', l0Home.dir, '--json'])
  t.equal(r.status, 0, { stderr: r.stderr })
  const s = json(r.stdout)
  t.equal(s.l0, true)
  t.equal(s.parent, null)
  t.equal(s.cn, fleet.l0)
})

t.test('kin devices: the tree with names, depth, and the revoked guest marked', async t => {
  const r = await kin(['devices', '--home', phoneHome.dir, '--json'])
  t.equal(r.status, 0, { stderr: r.stderr })
  const rows = json(r.stdout).devices as Array<Record<string, any>>
  t.equal(rows.length, 7, 'L0, laptop, two phones, the lock, the guest, the camera')
  t.same(
    rows.map(x => [x.name, x.depth]),
    [
      [rows[0]!.name, 0],
      ['laptop', 1],
      ["owner's phone", 2],
      ['front door', 3],
      ['tablet', 2],
      ["guest's phone", 3],
      ['front door', 3],
    ],
    'depth-first in order of authorization',
  )
  const g = rows.find(x => x.cn === guest)!
  t.equal(g.parent, tablet)
  t.match(g.revocations, [{ reason: 'lost', effective: house.now, by: tablet }])
  t.equal(g.standing.code, 'REVOKED')
  t.equal(rows.find(x => x.cn === tablet)!.self, true)
  t.equal(rows.find(x => x.cn === lock)!.standing.valid, true)

  const text = await kin(['devices', '--home', phoneHome.dir])
  t.equal(text.status, 0)
  const lines = text.stdout.split('\n')
  t.ok(
    lines.some(
      l =>
        l.startsWith('      "guest\'s phone" guest phone until ') && / — REVOKED: revoked \(lost\) effective /.test(l),
    ),
    'the guest at depth 3, marked',
    { lines },
  )
  t.ok(lines.some(l => l.startsWith('    "tablet" member tablet') && l.includes('(this device)')))
  t.match(text.stdout, /7 identities in fleet .*, 1 not valid/)
})

t.test('kin show by name and by CN: lineage up to L0, certificates, revocations', async t => {
  const r = await kin(['show', "guest's phone", '--home', phoneHome.dir, '--json'])
  t.equal(r.status, 0, { stderr: r.stderr })
  const s = json(r.stdout)
  t.equal(s.cn, guest)
  t.same(
    s.lineage.map((h: Record<string, unknown>) => h.cn),
    [guest, tablet, house.cn.L1, fleet.l0],
  )
  t.same(
    s.lineage.map((h: Record<string, unknown>) => h.role),
    ['guest', 'member', 'admin', 'admin'],
  )
  t.equal(s.certificates.length, 1, 'one certified event')
  t.equal(s.certificates[0].certHash, Buffer.from(fleet.device(guest).certificate.certHash).toString('hex'))
  t.match(s.revocations, [{ reason: 'lost', by: tablet }])
  t.equal(s.standing.code, 'REVOKED')

  const byCn = await kin(['show', lock, '--home', phoneHome.dir])
  t.equal(byCn.status, 0, { stderr: byCn.stderr })
  t.match(byCn.stdout, /"front door"/)
  t.match(byCn.stdout, /standing: valid/)
  t.match(byCn.stdout, /↑ "owner's phone" member/)
  t.match(byCn.stdout, /revocations: none/)
})

t.test('kin show refuses an ambiguous name with the candidates, and an unknown one', async t => {
  const amb = await kin(['show', 'front door', '--home', phoneHome.dir, '--json'])
  t.equal(amb.status, 2)
  const e = json(amb.stdout)
  t.equal(e.code, 'NAME_AMBIGUOUS')
  t.same([...e.detail.candidates].sort(), [lock, camera.cn].sort(), 'both CNs are offered')
  const ambText = await kin(['show', 'front door', '--home', phoneHome.dir])
  t.match(ambText.stderr, new RegExp(`${camera.cn} \\(device camera, under tablet\\)`))
  const unknown = await kin(['show', 'back door', '--home', phoneHome.dir, '--json'])
  t.equal(unknown.status, 2)
  t.equal(json(unknown.stdout).code, 'IDENTITY_UNKNOWN')
  // A name typed (or pasted) with a terminal escape comes back escaped, never obeyed.
  const escape = await kin(['show', '\u001b[2Jfront door', '--home', phoneHome.dir])
  t.equal(escape.status, 2)
  t.match(escape.stderr, /\[IDENTITY_UNKNOWN\]/)
  t.notOk(escape.stderr.includes('\u001b'), 'no raw escape character reaches the terminal')
  t.match(escape.stderr, /\\u\{1b\}\[2Jfront door/)
  const none = await kin(['show', '--home', phoneHome.dir, '--json'])
  t.equal(json(none.stdout).code, 'USAGE')
})

t.test('kin ledger bundle refuses to replace a file without --force', async t => {
  const out = join(work.dir, 'lock.bundle')
  writeFileSync(out, 'not mine')
  const refused = await kin(['ledger', 'bundle', lock, '--home', phoneHome.dir, '--out', out, '--json'])
  t.equal(refused.status, 2)
  t.equal(json(refused.stdout).code, 'STORAGE_EXISTS')
  t.equal(readFileSync(out, 'utf8'), 'not mine', 'the file is untouched')
  const forced = await kin(['ledger', 'bundle', lock, '--home', phoneHome.dir, '--out', out, '--force', '--json'])
  t.equal(forced.status, 0, { stderr: forced.stderr, stdout: forced.stdout })
  t.notSame(readFileSync(out, 'utf8'), 'not mine', 'replaced with --force')
  t.equal(json(forced.stdout).source, 'local')
})

t.test('kin sim refuses a --keep folder that holds files, and --force without --keep', async t => {
  const keep = join(work.dir, 'keep')
  mkdirSync(keep)
  writeFileSync(join(keep, 'notes.txt'), 'mine')
  for (const which of ['house', 'attacks']) {
    const r = await kin(['sim', which, '--keep', keep, '--json'])
    t.equal(r.status, 2, `kin sim ${which}`)
    t.equal(json(r.stdout).code, 'STORAGE_EXISTS')
  }
  const fleetRun = await kin(['sim', 'fleet', '--devices', '3', '--keep', keep, '--json'])
  t.equal(json(fleetRun.stdout).code, 'STORAGE_EXISTS', 'kin sim fleet')
  t.same(readdirSync(keep), ['notes.txt'], 'nothing written among the files')
  const noKeep = await kin(['sim', 'house', '--force', '--json'])
  t.equal(noKeep.status, 2)
  t.equal(json(noKeep.stdout).code, 'USAGE', 'a flag the command cannot honour is refused')
  t.notOk(existsSync(join(keep, 'l0')))
})

t.test("kin sim house --keep --force replaces an earlier run's homes and leaves other files", async t => {
  const keep = join(work.dir, 'house')
  const first = await kin(['sim', 'house', '--keep', keep, '--json'])
  t.equal(first.status, 0, 'a new folder needs no --force', { stderr: first.stderr })
  const firstL0 = readFileSync(join(keep, 'L0', 'config.json'), 'utf8')
  writeFileSync(join(keep, 'notes.txt'), 'mine')
  const again = await kin(['sim', 'house', '--keep', keep, '--json'])
  t.equal(json(again.stdout).code, 'STORAGE_EXISTS', 'the kept homes are not replaced without --force')
  const forced = await kin(['sim', 'house', '--keep', keep, '--force', '--json'])
  t.equal(forced.status, 0, { stderr: forced.stderr, stdout: forced.stdout.slice(0, 400) })
  t.equal(json(forced.stdout).ok, true)
  t.not(readFileSync(join(keep, 'L0', 'config.json'), 'utf8'), firstL0, 'a new fleet in L0')
  t.equal(readFileSync(join(keep, 'notes.txt'), 'utf8'), 'mine', 'a file the simulator did not write stays')
  t.ok(existsSync(join(keep, 'kin-sim.json')), 'the marker for the next run')
})

t.test(
  "kin report draws the tablet's fleet, its heads and its audited decisions; L0's with every head; no overwrite without --force",
  async t => {
    // Two decisions the tablet made, as kin serve writes them, around a summary line that is not a decision.
    const now = Math.floor(Date.now() / 1000)
    writeFileSync(
      phoneHome.home.path('audit'),
      [
        formatAuditLine({
          time: now - 60,
          peer: lock,
          action: 'view',
          allow: true,
          code: 'ALLOW',
          path: [lock, fleet.l0, tablet],
        }),
        JSON.stringify({ time: now - 30, summary: 'unauthenticated', refused: 3 }),
        formatAuditLine({
          time: now - 10,
          peer: guest,
          action: 'unlock',
          allow: false,
          code: 'REVOKED',
          path: [guest],
        }),
      ].join('\n') + '\n',
      { mode: 0o600 },
    )
    const out = join(work.dir, 'tablet.html')
    const r = await kin(['report', '--home', phoneHome.dir, '--out', out, '--json'])
    t.equal(r.status, 0, { stderr: r.stderr })
    const summary = json(r.stdout)
    t.match(
      summary,
      { devices: 7, decisions: 2 },
      'every identity of the ledger and the two decisions, not the summary line',
    )
    t.equal(summary.events, fleet.l0Ledger.state.log.length, 'the whole ledger on the timeline')
    const html = readFileSync(out, 'utf8')
    t.equal((html.match(/<article class="decision /g) ?? []).length, 2, 'a card per decision')
    t.match(html, /REVOKED/, 'the revoked guest and the refusal are shown')
    t.match(html, /guest&#39;s phone|guest's phone/, 'names beside CNs')

    const again = await kin(['report', '--home', phoneHome.dir, '--out', out, '--json'])
    t.equal(again.status, 2, 'an existing page is not replaced')
    t.equal(json(again.stdout).code, 'STORAGE_EXISTS')
    t.equal(readFileSync(out, 'utf8'), html, 'and is left as it was')

    const l0Out = join(work.dir, 'l0.html')
    const l0 = await kin(['report', '--home', l0Home.dir, '--out', l0Out, '--json'])
    t.equal(l0.status, 0, { stderr: l0.stderr })
    const l0Head = json((await kin(['status', '--home', l0Home.dir, '--json'])).stdout).head as {
      height: number
    } | null
    t.equal(
      json(l0.stdout).heads,
      l0Head === null ? 0 : l0Head.height + 1,
      "every head L0's miner signed, from height 0",
    )
    t.equal(json(l0.stdout).devices, 7, "and L0's ledger's identities")

    const missing = await kin(['report', '--home', phoneHome.dir, '--json'])
    t.equal(missing.status, 2, 'without --out it is a usage error')
  },
)
