import t from 'tap'
import { pureHouseDriver } from '../../sim/house/pure-driver.ts'
import { playHouse } from '../../sim/house/story.ts'

t.test('the house story, in process: every expectation of the design holds', async t => {
  const driver = await pureHouseDriver()
  const steps = await playHouse(driver, () => undefined)
  t.equal(steps.length, 11, 'eleven checked steps')
  for (const s of steps) t.ok(s.ok, `${s.label}: ${s.decision?.allow ? 'allow' : 'deny'} ${s.decision?.code}`)
  const guest = steps[0]!.decision!
  t.same(
    guest.path,
    ['L3.4', 'L2.2', 'L1', 'L2.1', 'L3.3'].map(l => driver.cnOf(l as 'L0')),
    'guest path L3.4 → L2.2 → L1 ← L2.1 ← L3.3',
  )
  t.equal(guest.commonAncestor, driver.cnOf('L1'))
  t.equal(guest.hops, 4)
  t.equal(steps.find(s => s.label === 'the guest loses access')!.decision!.code, 'ACCESS_ANCESTOR_REVOKED')
})
