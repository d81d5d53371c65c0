// The house from the design: every ordered pair of devices, three actions, under the default trust policy.
import t from 'tap'
import { decide } from '../../agent/access/decide.ts'
import type { RoleName } from '../../agent/ledger/types.ts'
import { GUEST_UNTIL, HOUSE, House, NOW, ROLE_OF, expectedPath } from '../helpers/access-house.ts'

// DESIGN.md "Default trust policy", restated independently of agent/access/policy.ts.
function defaultAllows(role: RoleName, action: string): boolean {
  if (role === 'admin' || role === 'member') return true
  if (role === 'guest') return action === 'unlock' || action === 'view'
  return action === 'view'
}

const house = new House()

t.test('decision table: every peer → deciding device, unlock/view/configure', async t => {
  let allowed = 0,
    denied = 0
  for (const peer of HOUSE) {
    for (const self of HOUSE) {
      for (const action of ['unlock', 'view', 'configure']) {
        const d = decide({ certificate: house.cert(peer), action }, house.context(self))
        const want = defaultAllows(ROLE_OF[peer], action)
        const label = `${peer} → ${self} ${action}`
        t.equal(d.allow, want, `${label}: ${d.code} ${d.reason}`)
        t.equal(d.code, want ? 'ALLOW' : 'POLICY_ACTION', `${label}: code`)
        t.same(
          d.path.map(cn => house.nameOf(cn)),
          expectedPath(peer, self),
          `${label}: path`,
        )
        t.equal(d.hops, expectedPath(peer, self).length - 1, `${label}: hops`)
        t.equal(d.peer, house.cn[peer])
        t.equal(d.action, action)
        t.equal(d.time, NOW)
        if (d.allow) allowed++
        else denied++
      }
    }
  }
  // 8 peers × 8 devices × 3 actions; guests and devices are refused what the default policy withholds.
  t.equal(allowed + denied, 192)
  t.ok(denied > 0 && allowed > 0)
})

t.test('the guest at the lock: L3.4 → L2.2 → L1 ← L2.1 ← L3.3', async t => {
  const d = decide({ certificate: house.cert('L3.4'), action: 'unlock' }, house.context('L3.3'))
  t.equal(d.allow, true, d.reason)
  t.equal(d.code, 'ALLOW')
  t.same(d.path, [house.cn['L3.4'], house.cn['L2.2'], house.cn['L1'], house.cn['L2.1'], house.cn['L3.3']])
  t.equal(d.commonAncestor, house.cn['L1'])
  t.equal(d.hops, 4)
  t.equal(d.retry, false)
  t.equal(d.missing, undefined)
})

t.test("after the guest's notAfter the lock refuses it (ACCESS_EXPIRED)", async t => {
  const cert = house.cert('L3.4', { notAfter: GUEST_UNTIL + 365 * 86400 })
  const before = decide({ certificate: cert, action: 'unlock' }, house.context('L3.3', { now: GUEST_UNTIL }))
  t.equal(before.allow, true, before.reason)
  const after = decide({ certificate: cert, action: 'unlock' }, house.context('L3.3', { now: GUEST_UNTIL + 1 }))
  t.equal(after.allow, false)
  t.equal(after.code, 'ACCESS_EXPIRED')
  t.equal(after.retry, false)
  // An owner's member phone is still let in at that time.
  const owner = decide(
    { certificate: house.cert('L2.1'), action: 'unlock' },
    house.context('L3.3', { now: GUEST_UNTIL + 1 }),
  )
  t.equal(owner.allow, true, owner.reason)
})

t.test('a camera may not configure the lock, but may view it', async t => {
  const configure = decide({ certificate: house.cert('L3.1'), action: 'configure' }, house.context('L3.3'))
  t.equal(configure.allow, false)
  t.equal(configure.code, 'POLICY_ACTION')
  t.match(configure.reason, /role device may not "configure"/)
  t.same(
    configure.path.map(cn => house.nameOf(cn)),
    ['L3.1', 'L2.1', 'L3.3'],
  )
  const view = decide({ certificate: house.cert('L3.1'), action: 'view' }, house.context('L3.3'))
  t.equal(view.allow, true, view.reason)
})

t.test('an action no layer names is refused for the roles the wildcard does not cover', async t => {
  const d = decide({ certificate: house.cert('L3.4'), action: 'reboot' }, house.context('L3.3'))
  t.equal(d.code, 'POLICY_ACTION')
  const admin = decide({ certificate: house.cert('L1'), action: 'reboot' }, house.context('L3.3'))
  t.equal(admin.allow, true, admin.reason)
})
