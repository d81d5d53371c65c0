// Audit records: one JSON line per decision, and the rotating audit.log writer on Node.
import t from 'tap'
import { mkdtemp, readFile, readdir, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decide } from '../../agent/access/decide.ts'
import {
  RefusalSummary,
  auditRecordOf,
  formatAuditLine,
  formatAuditSummaryLine,
  isUnauthenticatedRefusal,
  type AuditRecord,
} from '../../agent/access/audit.ts'
import { refusalDecision } from '../../agent/access/session.ts'
import { AuditLog } from '../../runtime/node/audit-log.ts'
import { House, NOW } from '../helpers/access-house.ts'

const h = new House()

t.test('the audit record of a decision, as one JSON line with fixed key order', async t => {
  const d = decide({ certificate: h.cert('L3.4'), action: 'unlock' }, h.context('L3.3'))
  const line = formatAuditLine(auditRecordOf(d))
  t.notMatch(line, /\n/)
  t.same(Object.keys(JSON.parse(line)), ['time', 'peer', 'action', 'allow', 'code', 'path'])
  t.same(JSON.parse(line), {
    time: NOW,
    peer: h.cn['L3.4'],
    action: 'unlock',
    allow: true,
    code: 'ALLOW',
    path: d.path,
  })
  const denied = decide({ certificate: h.cert('L3.4', { cn: 'forged.example' }), action: 'unlock' }, h.context('L3.3'))
  t.same(JSON.parse(formatAuditLine(auditRecordOf(denied))), {
    time: NOW,
    peer: null,
    action: 'unlock',
    allow: false,
    code: 'CERT_CHAIN',
    path: [],
  })
})

t.test('a hostile action string cannot forge a second line', async t => {
  const record: AuditRecord = {
    time: 1,
    peer: 'x',
    action: 'view\n{"allow":true}',
    allow: false,
    code: 'POLICY_ACTION',
    path: [],
  }
  const line = formatAuditLine(record)
  t.equal(line.split('\n').length, 1)
  t.equal(JSON.parse(line).action, record.action)
})

t.test('AuditLog appends JSON lines and rotates to audit.log.1 … .N', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'kin-audit-'))
  const path = join(dir, 'audit.log')
  const record = (i: number): AuditRecord => ({
    time: i,
    peer: 'p',
    action: 'view',
    allow: true,
    code: 'ALLOW',
    path: ['a', 'b'],
  })
  const lineBytes = formatAuditLine(record(100)).length + 1
  const log = await AuditLog.open(path, { maxBytes: lineBytes * 3, keep: 2 })
  for (let i = 100; i < 110; i++) await log.append(record(i))
  await log.close()
  t.same(
    (await readdir(dir)).sort(),
    ['audit.log', 'audit.log.1', 'audit.log.2'],
    'keeps two rotated files, drops older ones',
  )
  const times = async (name: string) =>
    (await readFile(join(dir, name), 'utf8'))
      .trim()
      .split('\n')
      .map(l => JSON.parse(l).time)
  t.same(await times('audit.log'), [109])
  t.same(await times('audit.log.1'), [106, 107, 108])
  t.same(await times('audit.log.2'), [103, 104, 105])
  t.equal((await stat(path)).mode & 0o777, 0o600)
  const reopened = await AuditLog.open(path, { maxBytes: lineBytes * 3, keep: 2 })
  await Promise.all([reopened.append(record(110)), reopened.append(record(111))])
  await reopened.close()
  t.same(await times('audit.log'), [109, 110, 111], 'appends continue after reopening, in call order')
  await t.rejects(AuditLog.open(path, { keep: 0 }), { code: 'BAD_ARGUMENT' })
  const log2 = await AuditLog.open(path)
  await t.rejects(log2.appendLine('a\nb'), { code: 'BAD_ARGUMENT' })
  await log2.close()
})

t.test('refusals of unauthenticated peers are counted per address and code, one summary per interval', async t => {
  const summary = new RefusalSummary({ intervalSeconds: 60, sources: 2 })
  const noCert = refusalDecision('ACCESS_NO_CERTIFICATE', 'no certificate', 'unlock', 1000)
  t.ok(isUnauthenticatedRefusal(noCert), 'no peer named: unauthenticated')
  t.notOk(isUnauthenticatedRefusal({ ...noCert, peer: 'lock.smith.home.arpa' }), 'a named peer is audited on its own')
  t.notOk(isUnauthenticatedRefusal({ ...noCert, allow: true, code: 'ALLOW' }), 'an allow is audited on its own')
  let early = 0
  for (let i = 0; i < 500; i++) early += summary.count('10.0.0.9', 'ACCESS_NO_CERTIFICATE', 1000 + (i % 50)).length
  t.equal(early, 0, 'nothing due within the interval')
  summary.count('10.0.0.9', 'CERT_CHAIN', 1010)
  summary.count('10.0.0.7', 'ACCESS_NO_CERTIFICATE', 1020)
  summary.count('10.0.0.8', 'ACCESS_NO_CERTIFICATE', 1021)
  t.equal(summary.pending, 503)
  const due = summary.count('10.0.0.9', 'ACCESS_NO_CERTIFICATE', 1061)
  t.same(
    due.map(s => [s.remote, s.code, s.count, s.since, s.time]),
    [
      ['10.0.0.9', 'ACCESS_NO_CERTIFICATE', 500, 1000, 1061],
      ['10.0.0.9', 'CERT_CHAIN', 1, 1010, 1061],
      ['*', 'ACCESS_NO_CERTIFICATE', 2, 1020, 1061],
    ],
    'per address and code; sources past the table share "*"',
  )
  t.equal(summary.pending, 1, 'the refusal that closed the interval opens the next')
  t.same(
    summary.drain(1070).map(s => s.count),
    [1],
  )
  const line = JSON.parse(formatAuditSummaryLine(due[0]!)) as Record<string, unknown>
  t.same(
    Object.keys(line),
    ['time', 'peer', 'action', 'allow', 'code', 'path', 'summary'],
    "a decision line's keys, then the summary",
  )
  t.same(line['summary'], { remote: '10.0.0.9', since: 1000, count: 500 })
  t.throws(() => new RefusalSummary({ intervalSeconds: 0 }), RangeError)
})

t.test(
  'AuditLog.record: a decision about a peer is a line; refusals of unauthenticated peers a summary per interval',
  async t => {
    const dir = await mkdtemp(join(tmpdir(), 'kin-audit-'))
    let now = 5000
    const log = await AuditLog.open(join(dir, 'audit.log'), { summaryIntervalSeconds: 30, now: () => now })
    for (let i = 0; i < 1000; i++)
      await log.record(refusalDecision('ACCESS_NO_CERTIFICATE', 'no certificate', 'unlock', now), '192.0.2.1')
    const real = decide({ certificate: h.cert('L3.4'), action: 'unlock' }, h.context('L3.3'))
    await log.record(real, '192.0.2.2')
    t.equal(log.unsummarised, 1000)
    now += 30
    await log.record(refusalDecision('CERT_CHAIN', 'foreign', 'unlock', now), '192.0.2.1')
    await log.close()
    const lines = (await readFile(join(dir, 'audit.log'), 'utf8'))
      .trim()
      .split('\n')
      .map(l => JSON.parse(l) as Record<string, unknown>)
    t.same(
      lines.map(l => [l['code'], (l['summary'] as { count?: number } | undefined)?.count]),
      [
        ['ALLOW', undefined],
        ['ACCESS_NO_CERTIFICATE', 1000],
        ['CERT_CHAIN', 1],
      ],
      "the real decision, the interval's summary when the next refusal came after it, and the last one at close",
    )
    t.equal(lines[0]!['peer'], h.cn['L3.4'])
  },
)
