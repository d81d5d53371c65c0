// A client certificate from a rogue CA that copies the fleet root's name and key identifier, presented to L0's broker by
// Debian's mosquitto_sub: every attempt gets CONNACK 5 and a login.refused CERT_CHAIN line in L0's log, none is dropped
// unlogged, and L0 keeps answering its devices.
import t from 'tap'
import { join } from 'node:path'
import { connectDevice, end, enrollDirect, makeL0Home, startTestL0, withHomeLedger } from './_fleet.ts'
import { tempDir } from '../helpers/home-fleet.ts'
import { missingTools, runClient } from './_mosquitto.ts'
import { rogueLeaf } from '../helpers/rogue-root.ts'

const missing = missingTools(['mosquitto_sub'])
if (missing.length > 0) t.plan(0, 'mosquitto_sub not installed: apt-get install -y mosquitto-clients')
else await rogue()

/** mosquitto_sub's debug output for one login attempt, killed after 30 s at the latest. */
async function subscribeOnce(args: string[]): Promise<string> {
  return (await runClient('mosquitto_sub', [...args, '-t', 'kin/#', '-C', '1', '-W', '5', '-d'], 30_000).done).out
}

async function rogue(): Promise<void> {
  const l0 = await makeL0Home()
  const phone = await withHomeLedger(l0, ledger => enrollDirect(l0, ledger, l0.self, { role: 'member', name: 'phone' }))
  const { services, logs } = await startTestL0(l0)
  t.teardown(() => services.close())
  const tmp = tempDir('kin-rogue-')
  t.teardown(tmp.remove)
  const forged = rogueLeaf(tmp.dir, l0.rootPem, phone.cn)

  t.test('each login with the rogue certificate is refused with CONNACK 5 and logged CERT_CHAIN', async t => {
    const attempts = 4
    for (let i = 0; i < attempts; i++) {
      const out = await subscribeOnce([
        ...['-h', '127.0.0.1', '-p', String(services.port), '-i', phone.cn],
        ...['--cafile', join(tmp.dir, 'fleet-root.pem'), '--insecure'],
        ...['--cert', forged.certFile, '--key', forged.keyFile],
      ])
      t.match(out, /received CONNACK \(5\)/, `attempt ${i + 1}: not authorised, not a dropped connection`)
    }
    const refused = logs.filter(r => r.event === 'login.refused' && r.clientId === phone.cn && r.code === 'CERT_CHAIN')
    t.equal(refused.length, attempts, "every attempt is in L0's log")
    t.notOk(services.clientsByCn().has(phone.cn))
  })

  t.test("the phone's own certificate still logs in", async t => {
    const client = await connectDevice(services, phone)
    t.ok(client.connected)
    await end(client)
  })
}
