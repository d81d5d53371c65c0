// Policy stage: how policy events, local overrides and the default combine (agent/access/policy.ts).
import t from 'tap'
import { decide } from '../../agent/access/decide.ts'
import { inWindow } from '../../agent/access/policy.ts'
import { labelFromBase32 } from '../../agent/ledger/names.ts'
import type { PolicyRule } from '../../agent/ledger/types.ts'
import { House, NOW, type HouseName } from '../helpers/access-house.ts'

const H = 3600
const dayStart = NOW - (NOW % 86400)
const rule = (action: string, roles: PolicyRule['roles'], from = 0, to = 0): PolicyRule => ({ action, roles, from, to })

function ask(h: House, peer: HouseName, self: HouseName, action: string, extra = {}) {
  return decide({ certificate: h.cert(peer), action }, h.context(self, extra))
}

t.test('inWindow: all day, daytime, past midnight', async t => {
  t.equal(inWindow(rule('x', [], 0, 0), dayStart + 5), true)
  t.equal(inWindow(rule('x', [], 8 * H, 20 * H), dayStart + 8 * H), true, 'from is inclusive')
  t.equal(inWindow(rule('x', [], 8 * H, 20 * H), dayStart + 20 * H), false, 'to is exclusive')
  t.equal(inWindow(rule('x', [], 22 * H, 6 * H), dayStart + 23 * H), true)
  t.equal(inWindow(rule('x', [], 22 * H, 6 * H), dayStart + 5 * H), true)
  t.equal(inWindow(rule('x', [], 22 * H, 6 * H), dayStart + 12 * H), false)
})

t.test('a policy event narrows one action on the lock; other actions keep the default', async t => {
  const h = new House()
  h.fleet.policy(h.cn['L2.1'], h.cn['L3.3'], { subtree: false, rules: [rule('unlock', ['member'])] })
  const guest = ask(h, 'L3.4', 'L3.3', 'unlock')
  t.equal(guest.code, 'POLICY_ROLE')
  t.match(guest.reason, /granted to member only/)
  t.equal(ask(h, 'L2.1', 'L3.3', 'unlock').code, 'ALLOW')
  t.equal(ask(h, 'L1', 'L3.3', 'unlock').code, 'POLICY_ROLE', 'the deciding layer lists members only')
  t.equal(ask(h, 'L3.4', 'L3.3', 'view').code, 'ALLOW', 'view falls through to the default policy')
  t.equal(ask(h, 'L3.4', 'L3.2', 'unlock').code, 'ALLOW', 'subtree=false: the camera next to it keeps the default')
})

t.test('a policy event widens: the lock lets cameras configure it', async t => {
  const h = new House()
  t.equal(ask(h, 'L3.1', 'L3.3', 'configure').code, 'POLICY_ACTION')
  h.fleet.policy(h.cn['L2.1'], h.cn['L3.3'], {
    subtree: false,
    rules: [rule('configure', ['device', 'admin', 'member'])],
  })
  t.equal(ask(h, 'L3.1', 'L3.3', 'configure').code, 'ALLOW')
})

t.test("the nearest policy wins: the lock's own over its parent's subtree policy", async t => {
  const h = new House()
  h.fleet.policy(h.cn['L1'], h.cn['L2.1'], { subtree: true, rules: [rule('unlock', ['member'])] })
  t.equal(ask(h, 'L3.4', 'L3.3', 'unlock').code, 'POLICY_ROLE', "L1's subtree policy reaches the lock")
  t.equal(ask(h, 'L3.4', 'L3.1', 'unlock').code, 'POLICY_ROLE', '… and the camera')
  h.fleet.policy(h.cn['L2.1'], h.cn['L3.3'], { subtree: false, rules: [rule('unlock', ['member', 'guest'])] })
  t.equal(ask(h, 'L3.4', 'L3.3', 'unlock').code, 'ALLOW', "the lock's own policy is nearer")
  t.equal(ask(h, 'L3.4', 'L3.1', 'unlock').code, 'POLICY_ROLE', 'the camera still follows L1')
})

t.test('a subtree=false policy on an ancestor does not reach its children', async t => {
  const h = new House()
  h.fleet.policy(h.cn['L1'], h.cn['L2.1'], { subtree: false, rules: [rule('unlock', ['admin'])] })
  t.equal(ask(h, 'L3.4', 'L3.3', 'unlock').code, 'ALLOW')
  t.equal(ask(h, 'L3.4', 'L2.1', 'unlock').code, 'POLICY_ROLE')
})

t.test('on one subject the newest policy wins', async t => {
  const h = new House()
  const lock = h.fleet.binding(h.cn['L3.3'])
  h.fleet.policy(h.cn['L2.1'], h.cn['L3.3'], { subtree: false, rules: [rule('unlock', ['guest'])] }, lock.time + 100)
  h.fleet.policy(h.cn['L2.1'], h.cn['L3.3'], { subtree: false, rules: [rule('unlock', ['member'])] }, lock.time + 200)
  t.equal(ask(h, 'L3.4', 'L3.3', 'unlock').code, 'POLICY_ROLE')
  t.equal(ask(h, 'L2.2', 'L3.3', 'unlock').code, 'ALLOW')
})

t.test('a policy its issuer signed after its own compromise counts for nothing', async t => {
  const h = new House()
  const lock = h.fleet.binding(h.cn['L3.3'])
  const signedAt = lock.time + 500
  h.fleet.policy(h.cn['L2.1'], h.cn['L3.3'], { subtree: false, rules: [rule('unlock', ['admin'])] }, signedAt)
  t.equal(ask(h, 'L3.4', 'L3.3', 'unlock').code, 'POLICY_ROLE')
  h.fleet.revoke(h.cn['L1'], h.cn['L2.1'], { reason: 'compromised', effective: signedAt - 10, time: signedAt + 50 })
  t.equal(ask(h, 'L3.4', 'L3.3', 'unlock').code, 'ALLOW', 'back to the default policy')
})

t.test('time windows: unlock for guests 08:00–20:00 UTC only', async t => {
  const h = new House()
  h.fleet.policy(h.cn['L2.1'], h.cn['L3.3'], {
    subtree: false,
    rules: [rule('unlock', ['member']), rule('unlock', ['guest'], 8 * H, 20 * H)],
  })
  t.equal(ask(h, 'L3.4', 'L3.3', 'unlock', { now: dayStart + 10 * H }).code, 'ALLOW')
  const night = ask(h, 'L3.4', 'L3.3', 'unlock', { now: dayStart + 21 * H })
  t.equal(night.code, 'POLICY_WINDOW')
  t.equal(ask(h, 'L2.2', 'L3.3', 'unlock', { now: dayStart + 21 * H }).code, 'ALLOW', 'members have no window')
})

t.test('hops: a policy limit, and the default limit of 8', async t => {
  const h = new House()
  h.fleet.policy(h.cn['L2.1'], h.cn['L3.3'], { subtree: false, maxHops: 3 })
  const guest = ask(h, 'L3.4', 'L3.3', 'unlock')
  t.equal(guest.code, 'POLICY_HOPS')
  t.equal(guest.hops, 4)
  t.equal(ask(h, 'L2.2', 'L3.3', 'unlock').code, 'ALLOW', '3 hops: L2.2 → L1 ← L2.1 ← L3.3')
  // Two admin chains under L1: a4 is 4 below L1, b4 is 4 below L1 (8 hops), b5 one more (9 hops).
  const chain = (from: string, n: number): string[] => {
    const out = [from]
    for (let i = 0; i < n; i++) out.push(h.fleet.enroll(out[out.length - 1]!, { role: 'admin', kind: 'laptop' }))
    return out
  }
  const a = chain(h.cn['L1'], 4),
    b = chain(h.cn['L1'], 5)
  const at = (peer: string, self: string) =>
    decide({ certificate: h.cert(peer), action: 'view' }, { ...h.context('L1'), self })
  const eight = at(a[4]!, b[4]!)
  t.equal(eight.hops, 8)
  t.equal(eight.code, 'ALLOW', eight.reason)
  const nine = at(a[4]!, b[5]!)
  t.equal(nine.hops, 9)
  t.equal(nine.code, 'POLICY_HOPS')
})

t.test("anchors: the lock trusts only the owner's phone's subtree", async t => {
  const h = new House()
  const anchor = labelFromBase32(h.fleet.binding(h.cn['L2.1']).label)
  h.fleet.policy(h.cn['L2.1'], h.cn['L3.3'], { subtree: false, anchors: [anchor] })
  t.equal(ask(h, 'L3.4', 'L3.3', 'unlock').code, 'POLICY_ANCHOR')
  t.equal(ask(h, 'L3.1', 'L3.3', 'view').code, 'ALLOW')
  t.equal(ask(h, 'L2.1', 'L3.3', 'unlock').code, 'ALLOW', 'the anchor itself')
  t.equal(ask(h, 'L1', 'L3.3', 'unlock').code, 'POLICY_ANCHOR', 'above the anchor')
})

t.test('stale ledger: a sensitive action needs a recent block head', async t => {
  const h = new House()
  h.fleet.policy(h.cn['L2.1'], h.cn['L3.3'], { subtree: false, maxHeadAge: 600 })
  const none = ask(h, 'L2.1', 'L3.3', 'unlock')
  t.equal(none.code, 'POLICY_STALE_LEDGER')
  t.equal(none.retry, true, 'a sync may lift it')
  t.equal(ask(h, 'L2.1', 'L3.3', 'unlock', { lastHeadTime: NOW - 3600 }).code, 'POLICY_STALE_LEDGER')
  t.equal(ask(h, 'L2.1', 'L3.3', 'unlock', { lastHeadTime: NOW - 60 }).code, 'ALLOW')
  t.equal(ask(h, 'L2.1', 'L3.3', 'view', { lastHeadTime: NOW - 3600 }).code, 'ALLOW', 'view is not sensitive')
  t.equal(ask(h, 'L2.1', 'L3.1', 'unlock').code, 'ALLOW', 'the camera has no freshness rule')
})

t.test('local overrides sit between the ledger and the default', async t => {
  const h = new House()
  const localPolicy = { rules: [rule('unlock', ['admin'])], maxHops: 2, anchors: [h.cn['L1']] }
  t.equal(ask(h, 'L3.4', 'L3.3', 'unlock', { localPolicy }).code, 'POLICY_HOPS')
  t.equal(ask(h, 'L2.1', 'L3.3', 'unlock', { localPolicy }).code, 'POLICY_ROLE', 'local narrows the default')
  t.equal(ask(h, 'L2.1', 'L3.3', 'view', { localPolicy }).code, 'ALLOW')
  t.equal(
    ask(h, 'L0', 'L3.3', 'view', { localPolicy: { anchors: [h.cn['L1']] } }).code,
    'POLICY_ANCHOR',
    'L0 is above the local anchor',
  )
  h.fleet.policy(h.cn['L2.1'], h.cn['L3.3'], { subtree: false, rules: [rule('unlock', ['member'])] })
  t.equal(ask(h, 'L2.1', 'L3.3', 'unlock', { localPolicy }).code, 'ALLOW', 'a ledger policy outranks local overrides')
})
