// Audit records: one JSON line per decision, and the rotating audit.log writer on Node.
import t from 'tap'
import { mkdtemp, readFile, readdir, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decide } from '../../agent/access/decide.ts'
import { auditRecordOf, formatAuditLine, type AuditRecord } from '../../agent/access/audit.ts'
import { AuditLog } from '../../firmware-shims/node/audit-log.ts'
import { House, NOW } from '../helpers/access-house.ts'

const h = new House()

t.test('the audit record of a decision, as one JSON line with fixed key order', async t => {
  const d = decide({ certificate: h.cert('L3.4'), action: 'unlock' }, h.context('L3.3'))
  const line = formatAuditLine(auditRecordOf(d))
  t.notMatch(line, /\n/)
  t.same(Object.keys(JSON.parse(line)), ['time', 'peer', 'action', 'allow', 'code', 'path'])
  t.same(JSON.parse(line), { time: NOW, peer: h.cn['L3.4'], action: 'unlock', allow: true, code: 'ALLOW', path: d.path })
  const denied = decide({ certificate: h.cert('L3.4', { cn: 'forged.example' }), action: 'unlock' }, h.context('L3.3'))
  t.same(JSON.parse(formatAuditLine(auditRecordOf(denied))), { time: NOW, peer: null, action: 'unlock', allow: false, code: 'CERT_CHAIN', path: [] })
})

t.test('a hostile action string cannot forge a second line', async t => {
  const record: AuditRecord = { time: 1, peer: 'x', action: 'view\n{"allow":true}', allow: false, code: 'POLICY_ACTION', path: [] }
  const line = formatAuditLine(record)
  t.equal(line.split('\n').length, 1)
  t.equal(JSON.parse(line).action, record.action)
})

t.test('AuditLog appends JSON lines and rotates to audit.log.1 … .N', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'kin-audit-'))
  const path = join(dir, 'audit.log')
  const record = (i: number): AuditRecord => ({ time: i, peer: 'p', action: 'view', allow: true, code: 'ALLOW', path: ['a', 'b'] })
  const lineBytes = formatAuditLine(record(100)).length + 1
  const log = await AuditLog.open(path, { maxBytes: lineBytes * 3, keep: 2 })
  for (let i = 100; i < 110; i++) await log.append(record(i))
  await log.close()
  t.same((await readdir(dir)).sort(), ['audit.log', 'audit.log.1', 'audit.log.2'], 'keeps two rotated files, drops older ones')
  const times = async (name: string) => (await readFile(join(dir, name), 'utf8')).trim().split('\n').map(l => JSON.parse(l).time)
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
