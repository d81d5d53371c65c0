import t from 'tap'
import { KinError } from '../../agent/errors.ts'
import { DEFAULT_QUOTAS, IntakeQuota, type QuotaCharge } from '../../agent/ledger/quota.ts'

function codeOf(r: QuotaCharge | KinError): string {
  return r instanceof KinError ? r.code : 'TAKEN'
}

t.test('a guest gets its burst of events, then QUOTA_RATE until the clock refills the bucket', async t => {
  let ms = 0
  const q = new IntakeQuota({ clock: () => ms })
  const g = DEFAULT_QUOTAS.guest
  for (let i = 0; i < g.events; i++)
    t.equal(codeOf(q.take('guest-1', 'guest', 1, 200)), 'TAKEN', `event ${i + 1} of the burst`)
  t.equal(codeOf(q.take('guest-1', 'guest', 1, 200)), 'QUOTA_RATE', 'one past the burst')
  t.same(q.remaining('guest-1'), { events: 0, bytes: g.bytes - g.events * 200 })
  ms += Math.ceil(1000 / g.eventsPerSecond)
  t.equal(codeOf(q.take('guest-1', 'guest', 1, 200)), 'TAKEN', 'one event regained after 1/rate seconds')
  t.equal(codeOf(q.take('guest-1', 'guest', 1, 200)), 'QUOTA_RATE', 'and only one')
  t.equal(codeOf(q.take('guest-2', 'guest', 1, 200)), 'TAKEN', 'another CN has its own bucket')
})

t.test('QUOTA_BYTES when the byte bucket is short; a refused submission takes nothing', async t => {
  const q = new IntakeQuota({ clock: () => 0, budgets: { device: { events: 100, bytes: 1000 } } })
  t.equal(codeOf(q.take('lock', 'device', 2, 900)), 'TAKEN')
  const over = q.take('lock', 'device', 1, 200)
  t.equal(codeOf(over), 'QUOTA_BYTES', '100 bytes left')
  t.same(q.remaining('lock'), { events: 98, bytes: 100 }, 'the refused submission took neither events nor bytes')
  t.match(
    (q.take('lock', 'device', 101, 1) as KinError).message,
    /more than a device may send at once \(100\)/,
    'a submission over the bucket size says so',
  )
  t.equal(codeOf(q.take('lock', 'device', 101, 1)), 'QUOTA_RATE', 'the event bucket is checked first')
})

t.test('refunds: only up to the charge, never past the bucket size', async t => {
  const q = new IntakeQuota({ clock: () => 0, budgets: { member: { events: 10, bytes: 1000 } } })
  const charge = q.take('phone', 'member', 6, 600) as QuotaCharge
  q.refund(charge, 2, 500)
  t.same(q.remaining('phone'), { events: 6, bytes: 900 }, 'two known events and 500 unkept bytes back')
  q.refund(charge, 100, 100_000)
  t.same(q.remaining('phone'), { events: 10, bytes: 1000 }, 'capped at the bucket size')
})

t.test('roles: guests and devices are held tighter than members and admins; overrides are checked', async t => {
  for (const k of ['events', 'eventsPerSecond', 'bytes', 'bytesPerSecond'] as const) {
    t.ok(
      DEFAULT_QUOTAS.guest[k] <= DEFAULT_QUOTAS.device[k] &&
        DEFAULT_QUOTAS.device[k] < DEFAULT_QUOTAS.member[k] &&
        DEFAULT_QUOTAS.member[k] <= DEFAULT_QUOTAS.admin[k],
      k,
    )
  }
  const q = new IntakeQuota({ clock: () => 0 })
  t.equal(codeOf(q.take('admin', 'admin', 256, 50_000)), 'TAKEN', 'an admin: a full submission at once')
  t.equal(codeOf(q.take('guest', 'guest', 16, 3000)), 'QUOTA_RATE', 'a guest: not')
  t.throws(() => new IntakeQuota({ clock: () => 0, budgets: { guest: { events: -1 } } }), RangeError)
  t.throws(() => new IntakeQuota({ clock: () => 0, budgets: { guest: { bytesPerSecond: Number.NaN } } }), RangeError)
  t.throws(() => new IntakeQuota({ clock: 0 as unknown as () => number }), TypeError)
})

t.test('a clock that goes back refills nothing', async t => {
  let ms = 10_000
  const q = new IntakeQuota({ clock: () => ms, budgets: { guest: { events: 2, eventsPerSecond: 1 } } })
  q.take('g', 'guest', 2, 10)
  ms = 0
  t.equal(codeOf(q.take('g', 'guest', 1, 10)), 'QUOTA_RATE', 'back in time')
  ms = 10_999
  t.equal(codeOf(q.take('g', 'guest', 1, 10)), 'QUOTA_RATE', 'not yet a second past the last refill')
  ms = 12_000
  t.equal(codeOf(q.take('g', 'guest', 1, 10)), 'TAKEN', 'a second past it, and more')
})
