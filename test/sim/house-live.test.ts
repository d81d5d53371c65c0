import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { liveHouseDriver } from '../../sim/house/live-driver.ts'
import { playHouse } from '../../sim/house/story.ts'

t.test(
  'the house story on a live fleet (real broker, pairing codes, miner, gossip, mutual TLS): every expectation holds',
  async t => {
    const dir = mkdtempSync(join(tmpdir(), 'kin-house-live-'))
    const alarms: unknown[] = []
    const driver = await liveHouseDriver(dir, r => {
      if (r['event'] === 'alarm') alarms.push(r)
    })
    t.teardown(async () => {
      await driver.fleet.close()
      rmSync(dir, { recursive: true, force: true })
    })
    const steps = await playHouse(driver, () => undefined)
    t.equal(steps.length, 11)
    for (const s of steps) t.ok(s.ok, `${s.label}: ${s.decision?.allow ? 'allow' : 'deny'} ${s.decision?.code}`)
    t.same(
      steps[0]!.decision!.path,
      ['L3.4', 'L2.2', 'L1', 'L2.1', 'L3.3'].map(l => driver.cnOf(l as 'L0')),
      'guest path L3.4 → L2.2 → L1 ← L2.1 ← L3.3',
    )
    t.equal(
      steps.find(s => s.label === 'the guest loses access')!.decision!.code,
      'ACCESS_ANCESTOR_REVOKED',
      'the lock learned the revocation by gossip',
    )
    t.same(alarms, [], 'no device raised a forking-miner alarm')
    const l0Size = driver.fleet.l0.ledger.ledger.size
    for (const d of driver.fleet.standing())
      t.equal(d.replica!.replica.coveredSize, l0Size, `${d.label} holds L0's whole ledger`)
  },
)
