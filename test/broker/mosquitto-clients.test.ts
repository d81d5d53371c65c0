// Standard MQTT clients check L0's host name (RFC 6125 §6.4): Debian's mosquitto_sub and mosquitto_pub, verification on
// (no --insecure), log in with a device certificate to L0's own broker and to the Mosquitto export when they dial an
// address L0's certificate names, and refuse it when they dial one it does not name.
import t from 'tap'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { startL0 } from '../../broker/l0.ts'
import { serverNames } from '../../broker/server-names.ts'
import { cameraAndSensor, clientLogin, missingTools, publishQos1, runClient, startExport } from './_mosquitto.ts'

const missing = missingTools(['mosquitto', 'mosquitto_sub', 'mosquitto_pub'])
if (missing.length > 0) {
  t.plan(0, `${missing.join(', ')} not installed: apt-get install -y mosquitto mosquitto-clients`)
} else {
  await clients()
}

async function clients(): Promise<void> {
  const { l0, camera, sensor, root } = await cameraAndSensor()
  const topics = fleetTopics(l0.domain)

  t.test("L0's own broker: verification on, 127.0.0.1 and localhost pass, 127.0.0.2 is refused", async t => {
    const names = serverNames({ listen: ['127.0.0.1'] })
    t.notOk(names.ips.includes('127.0.0.2'), '127.0.0.2 is not among the names')
    // Listening on every address, so that 127.0.0.2 reaches the same listener; the certificate names only the defaults.
    const services = await startL0({ home: l0.dir, host: '0.0.0.0', port: 0, serverNames: names, log: () => undefined })
    t.teardown(() => services.close())
    for (const host of ['127.0.0.1', 'localhost']) {
      // The head L0 keeps retained: what any fleet device reads first.
      const sub = await runClient('mosquitto_sub', [
        ...clientLogin(host, services.port, camera, root),
        ...['-t', topics.head, '-C', '1', '-W', '30', '-F', '%x'],
      ]).done
      t.equal(sub.status, 0, `${host}: mosquitto_sub logs in: ${sub.out}`)
      t.equal(
        sub.out.trim(),
        Buffer.from(services.miner.miner.latestHeadBytes()!).toString('hex'),
        'and reads the head',
      )
      const pub = await publishQos1(
        clientLogin(host, services.port, sensor, root),
        topics.inbox(camera.cn, sensor.cn),
        'hello',
      )
      t.equal(pub.status, 0, `${host}: mosquitto_pub logs in and publishes (QoS 1, acknowledged): ${pub.out}`)
    }
    const wrong = await publishQos1(
      clientLogin('127.0.0.2', services.port, sensor, root),
      topics.inbox(camera.cn, sensor.cn),
      'x',
    )
    t.not(wrong.status, 0, '127.0.0.2: mosquitto_pub refuses the broker')
    t.match(wrong.out, /TLS|certificate|verify/i, `it says why: ${wrong.out.trim()}`)
    const insecure = await publishQos1(
      clientLogin('127.0.0.2', services.port, sensor, root, ['--insecure']),
      topics.inbox(camera.cn, sensor.cn),
      'x',
    )
    t.equal(insecure.status, 0, '127.0.0.2 with --insecure gets through: only the host name check refused it')
  })

  t.test('the Mosquitto export: verification on, 127.0.0.1 passes, 127.0.0.2 is refused', async t => {
    const exported = await startExport(t, l0.dir, 'kin-mosquitto-clients-')
    t.notOk(exported.serverNames.ips.includes('127.0.0.2'), '127.0.0.2 is not among the names')
    const port = exported.port
    // No L0 services behind this Mosquitto: the subscriber logs in, subscribes, and waits out -W for a head.
    const sub = await runClient('mosquitto_sub', [
      ...clientLogin('127.0.0.1', port, camera, root),
      ...['-d', '-t', topics.head, '-W', '2'],
    ]).done
    t.match(sub.out, /received CONNACK \(0\)[^]*received SUBACK/, `mosquitto_sub logs in and subscribes: ${sub.out}`)
    const pub = await publishQos1(
      clientLogin('127.0.0.1', port, sensor, root),
      topics.inbox(camera.cn, sensor.cn),
      'hello',
    )
    t.equal(pub.status, 0, `mosquitto_pub logs in and publishes (QoS 1, acknowledged): ${pub.out}`)
    const wrong = await publishQos1(
      clientLogin('127.0.0.2', port, sensor, root),
      topics.inbox(camera.cn, sensor.cn),
      'x',
    )
    t.not(wrong.status, 0, '127.0.0.2: mosquitto_pub refuses the broker')
    const insecure = await publishQos1(
      clientLogin('127.0.0.2', port, sensor, root, ['--insecure']),
      topics.inbox(camera.cn, sensor.cn),
      'x',
    )
    t.equal(insecure.status, 0, '127.0.0.2 with --insecure gets through: only the host name check refused it')
  })
}
