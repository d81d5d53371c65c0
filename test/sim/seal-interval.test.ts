// One default seal interval for a simulated fleet, whether the run comes from `kin sim fleet` or from runFleet.
import t from 'tap'
import { SEAL_INTERVAL_MS } from '../../broker/miner-service.ts'
import { simFleet } from '../../cli/commands/sim-fleet.ts'
import { defaultSealIntervalMs } from '../../sim/fleet/run.ts'

t.test("the broker's interval up to 5 × its interval in devices, then N/5 ms", async t => {
  t.equal(defaultSealIntervalMs(1), SEAL_INTERVAL_MS, 'one device')
  t.equal(defaultSealIntervalMs(5 * SEAL_INTERVAL_MS), SEAL_INTERVAL_MS, `${5 * SEAL_INTERVAL_MS} devices`)
  t.equal(defaultSealIntervalMs(2000), 400, '2,000 devices: 400 ms')
  t.equal(defaultSealIntervalMs(10_000), 2000, '10,000 devices: a head every 2 s')
  const falls: number[] = []
  for (let n = 2; n <= 20_000; n++) if (defaultSealIntervalMs(n) < defaultSealIntervalMs(n - 1)) falls.push(n)
  t.same(falls, [], 'never shorter for more devices')
})

t.test('the command line says the same default it uses', async t => {
  const help = simFleet.options['seal-ms']!.help
  t.match(help, String(SEAL_INTERVAL_MS), 'names the broker interval')
  t.match(help, 'N/5', 'and N/5 above it')
})
