/** @module `kin revoke` behind a broker that acknowledges (PUBACK) while L0's services are down: it never claims success; it says the revocation is pending here, with its own exit status, until L0 seals it. */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { startL0Client } from '../../broker/l0-client.ts'
import { exportMosquitto } from '../../broker/mosquitto.ts'
import { expectExit, kin, lastJson } from '../enroll/_harness.ts'
import { homeLedger, writeDeviceHome } from '../gossip/_fleet.ts'
import { enrollDirect, makeL0Home, tempDir, withHomeLedger } from './_fleet.ts'
import { freePort, handToMosquittoUser, missingTools, startMosquitto } from './_mosquitto.ts'

// Debian's mosquitto broker; .ci/run installs it. Missing is a failure, never a silent skip.
const missing = missingTools(['mosquitto'])
if (missing.length > 0) {
  t.fail(`${missing.join(', ')} not installed: run 'apt-get install -y mosquitto mosquitto-clients'`)
} else {
  await pending()
}

async function pending(): Promise<void> {
  const l0 = await makeL0Home()
  const { admin, camera } = await withHomeLedger(l0, async ledger => {
    const admin = await enrollDirect(l0, ledger, l0.self, { role: 'admin', name: 'admin laptop' })
    const camera = await enrollDirect(l0, ledger, admin, { role: 'device', kind: 'camera', name: 'camera' })
    return { admin, camera }
  })
  const port = await freePort()
  const exported = await exportMosquitto({ home: l0.dir, dir: tempDir('kin-mosquitto-'), host: '127.0.0.1', port })
  handToMosquittoUser(exported)
  // The broker runs and acknowledges every publish; L0's miner (its services) is not started yet.
  await startMosquitto(t, exported.files.conf)
  const url = `mqtts://127.0.0.1:${port}`
  const adminHome = join(tempDir('kin-admin-'), 'admin')
  writeDeviceHome(l0, admin, adminHome, readFileSync(join(l0.dir, 'ledger.cbor')), url)
  const l0Ledger = () => homeLedger(l0.dir)

  let id = ''
  t.test('the broker acknowledges, no miner seals: exit 4, recorded here, not delivered', async t => {
    const run = await kin(['revoke', '--home', adminHome, camera.cn, '--reason', 'lost', '--timeout', '3s', '--json'], {
      timeoutMs: 120_000,
    })
    expectExit(t, run, 4, 'kin revoke does not claim success: its own status for "pending at L0"')
    const out = lastJson(run.stdout) as { code: string; message: string; detail: Record<string, unknown> }
    t.match(out, { code: 'EVENT_PENDING', detail: { recorded: true, delivered: false } }, 'its code says so')
    t.match(out.message, /not sealed it/, 'and its message, plainly')
    id = String(out.detail['id'])
    t.ok(homeLedger(adminHome).state.has(id), "the admin's ledger holds the revocation (in force there)")
    t.notOk(l0Ledger().state.has(id), "L0's ledger does not")
  })

  t.test("once L0's services run, kin sync hands it over and L0 holds it", async t => {
    const services = await startL0Client({ home: l0.dir, broker: url, log: () => undefined })
    t.teardown(() => services.close())
    const synced = await kin(['sync', '--home', adminHome, '--json'], { timeoutMs: 120_000 })
    expectExit(t, synced, 0, 'kin sync succeeds')
    t.ok(services.ledger.ledger.state.has(id), "L0's miner holds the revocation")
  })
}
