/**
 * @module A device-to-device inbox message written with Debian's mosquitto_pub (a device certificate, verification on):
 * delivered to mosquitto_sub on the target's inbox through L0's own broker and through the Mosquitto export; a
 * receiving `kin serve` ignores text that is none of kinship's inbox messages and says so (INBOX_FOREIGN).
 */
import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { startL0 } from '../../broker/l0.ts'
import { startKinLines, writeDeviceHome } from '../gossip/_fleet.ts'
import { tempDir } from './_fleet.ts'
import { cameraAndSensor, clientLogin, missingTools, publishQos1, runClient, startExport } from './_mosquitto.ts'

const missing = missingTools(['mosquitto', 'mosquitto_sub', 'mosquitto_pub', 'stdbuf'])
if (missing.length > 0) {
  t.fail(`${missing.join(', ')} not installed: run 'apt-get install -y mosquitto mosquitto-clients'`)
} else {
  await inbox()
}

async function inbox(): Promise<void> {
  const { l0, camera, sensor, root } = await cameraAndSensor()
  const topics = fleetTopics(l0.domain)

  /** mosquitto_sub on the camera's inbox (every sender), then mosquitto_pub from the sensor: what the camera got. */
  async function deliver(t: Test, port: number, forgedRefused: boolean): Promise<void> {
    // Line-buffered: mosquitto_sub writes through stdio, which holds its debug lines until exit on a pipe.
    const sub = runClient('stdbuf', [
      '-oL',
      'mosquitto_sub',
      ...clientLogin('127.0.0.1', port, camera, root),
      ...['-d', '-q', '1', '-t', topics.inboxAll(camera.cn), '-C', '1', '-W', '30', '-F', '%t %p'],
    ])
    // Published only once the subscription holds: an inbox message is not retained for a later subscriber.
    for (let i = 0; i < 600 && !/received SUBACK|Error|refused/i.test(sub.out()); i++)
      await new Promise(r => setTimeout(r, 50))
    t.match(sub.out(), /received SUBACK/, 'mosquitto_sub subscribed to the camera inbox')
    // First under another device's label (the camera's own): no broker lets the sensor write as someone else.
    const forged = await publishQos1(
      clientLogin('127.0.0.1', port, sensor, root),
      topics.inbox(camera.cn, camera.cn),
      'forged sender',
    )
    if (forgedRefused) t.not(forged.status, 0, `L0's broker closes the session (ACL_DENIED): ${forged.out.trim()}`)
    else t.equal(forged.status, 0, 'Mosquitto acknowledges it (MQTT 3.1.1 has no refusal in a PUBACK) and drops it')
    const pub = await publishQos1(
      clientLogin('127.0.0.1', port, sensor, root),
      topics.inbox(camera.cn, sensor.cn),
      'hello from the sensor',
    )
    t.equal(pub.status, 0, `mosquitto_pub publishes (QoS 1, acknowledged): ${pub.out}`)
    const got = await sub.done
    t.equal(got.status, 0, 'mosquitto_sub got one message within 30 s')
    t.match(got.out, `${topics.inbox(camera.cn, sensor.cn)} hello from the sensor`, `the sensor's message: ${got.out}`)
    t.notMatch(
      got.out,
      'forged sender',
      'the one under another label was not delivered (the first delivered is the right one)',
    )
  }

  t.test("through L0's own broker", async t => {
    const services = await startL0({ home: l0.dir, host: '127.0.0.1', port: 0, log: () => undefined })
    t.teardown(() => services.close())
    await deliver(t, services.port, true)
  })

  t.test('through the Mosquitto export', async t => {
    const { port } = await startExport(t, l0.dir, 'kin-mosquitto-inbox-')
    await deliver(t, port, false)
  })

  t.test('a kin serve receiving it: ignored, and told with its code and sender (INBOX_FOREIGN)', async t => {
    const services = await startL0({ home: l0.dir, host: '127.0.0.1', port: 0, log: () => undefined })
    t.teardown(() => services.close())
    const home = join(tempDir('kin-inbox-serve-'), 'camera')
    writeDeviceHome(l0, camera, home, readFileSync(join(l0.dir, 'ledger.cbor')), `mqtts://127.0.0.1:${services.port}`)
    const serve = startKinLines(t, ['serve', '--home', home, '--port', '0', '--json'])
    await serve.waitJson(d => d['inbox'] === 'listening', 60_000)
    for (const text of ['hello from the sensor', 'hello again']) {
      const pub = await publishQos1(
        clientLogin('127.0.0.1', services.port, sensor, root),
        topics.inbox(camera.cn, sensor.cn),
        text,
      )
      t.equal(pub.status, 0, `mosquitto_pub publishes "${text}": ${pub.out}`)
    }
    const told = await serve.waitJson(d => d['code'] === 'INBOX_FOREIGN', 60_000)
    t.match(told, { inboxIgnored: 'foreign', from: sensor.cn, untold: 0 }, 'the sender is named')
    t.match(String(told['detail']), /^21 bytes from \S+ that are none of the inbox messages/, 'and what arrived')
    serve.signal('SIGTERM')
    const stopped = await serve.done
    t.equal(stopped.status, 0, 'kin serve stops cleanly')
    const lines = stopped.stdout.split('\n').filter(l => l.includes('INBOX_FOREIGN'))
    t.equal(lines.length, 1, "the sensor's second message within the minute is counted, not told again")
  })
}
