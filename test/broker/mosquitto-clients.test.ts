// Standard MQTT clients check L0's host name (RFC 6125 §6.4): Debian's mosquitto_sub and mosquitto_pub, verification on
// (no --insecure), log in with a device certificate to L0's own broker and to the Mosquitto export when they dial an
// address L0's certificate names, and refuse it when they dial one it does not name.
import t from 'tap'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { startL0 } from '../../broker/l0.ts'
import { exportMosquitto } from '../../broker/mosquitto.ts'
import { serverNames } from '../../broker/server-names.ts'
import { enrollDirect, makeL0Home, tempDir, withHomeLedger, type TestDevice } from './_fleet.ts'
import { freePort, handToMosquittoUser, missingTools, startMosquitto } from './_mosquitto.ts'

const missing = missingTools(['mosquitto', 'mosquitto_sub', 'mosquitto_pub'])
if (missing.length > 0) {
  t.plan(0, `${missing.join(', ')} not installed: apt-get install -y mosquitto mosquitto-clients`)
} else {
  await clients()
}

interface Run {
  status: number | null
  out: string
}

/** Runs a mosquitto client without blocking this process (L0's broker runs in it), killed after 60 s at the latest. */
function run(tool: string, args: string[]): { done: Promise<Run> } {
  const child = spawn(tool, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', d => {
    out += d
  })
  child.stderr.on('data', d => {
    out += d
  })
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  const done = new Promise<Run>(resolve =>
    child.on('close', status => {
      clearTimeout(timer)
      resolve({ status, out })
    }),
  )
  return { done }
}

function login(host: string, port: number, device: TestDevice, root: string, extra: string[] = []): string[] {
  return [
    '-h',
    host,
    '-p',
    String(port),
    '-V',
    'mqttv311',
    '--cafile',
    root,
    '--cert',
    join(device.dir, 'cert.pem'),
    '--key',
    join(device.dir, 'tls-key.pem'),
    // L0's broker and the export both take the certificate's CN as the client id.
    '-i',
    device.cn,
    ...extra,
  ]
}

async function clients(): Promise<void> {
  const l0 = await makeL0Home()
  const { camera, sensor } = await withHomeLedger(l0, async ledger => ({
    camera: await enrollDirect(l0, ledger, l0.self, { role: 'device', kind: 'camera' }),
    sensor: await enrollDirect(l0, ledger, l0.self, { role: 'device', kind: 'sensor' }),
  }))
  const topics = fleetTopics(l0.domain)
  const root = join(l0.self.dir, 'root.pem')

  t.test("L0's own broker: verification on, 127.0.0.1 and localhost pass, 127.0.0.2 is refused", async t => {
    const names = serverNames({ listen: ['127.0.0.1'] })
    t.notOk(names.ips.includes('127.0.0.2'), '127.0.0.2 is not among the names')
    // Listening on every address, so that 127.0.0.2 reaches the same listener; the certificate names only the defaults.
    const services = await startL0({ home: l0.dir, host: '0.0.0.0', port: 0, serverNames: names, log: () => undefined })
    t.teardown(() => services.close())
    for (const host of ['127.0.0.1', 'localhost']) {
      // The head L0 keeps retained: what any fleet device reads first.
      const sub = await run('mosquitto_sub', [
        ...login(host, services.port, camera, root),
        '-t',
        topics.head,
        '-C',
        '1',
        '-W',
        '30',
        '-F',
        '%x',
      ]).done
      t.equal(sub.status, 0, `${host}: mosquitto_sub logs in: ${sub.out}`)
      t.equal(
        sub.out.trim(),
        Buffer.from(services.miner.miner.latestHeadBytes()!).toString('hex'),
        'and reads the head',
      )
      const pub = await run('mosquitto_pub', [
        ...login(host, services.port, sensor, root),
        '-q',
        '1',
        '-t',
        topics.inbox(camera.cn, sensor.cn),
        '-m',
        'hello',
      ]).done
      t.equal(pub.status, 0, `${host}: mosquitto_pub logs in and publishes (QoS 1, acknowledged): ${pub.out}`)
    }
    const wrong = await run('mosquitto_pub', [
      ...login('127.0.0.2', services.port, sensor, root),
      '-q',
      '1',
      '-t',
      topics.inbox(camera.cn, sensor.cn),
      '-m',
      'x',
    ]).done
    t.not(wrong.status, 0, '127.0.0.2: mosquitto_pub refuses the broker')
    t.match(wrong.out, /TLS|certificate|verify/i, `it says why: ${wrong.out.trim()}`)
    const insecure = await run('mosquitto_pub', [
      ...login('127.0.0.2', services.port, sensor, root, ['--insecure']),
      '-q',
      '1',
      '-t',
      topics.inbox(camera.cn, sensor.cn),
      '-m',
      'x',
    ]).done
    t.equal(insecure.status, 0, '127.0.0.2 with --insecure gets through: only the host name check refused it')
  })

  t.test('the Mosquitto export: verification on, 127.0.0.1 passes, 127.0.0.2 is refused', async t => {
    const port = await freePort()
    const exported = await exportMosquitto({ home: l0.dir, dir: tempDir('kin-mosquitto-clients-'), port })
    t.notOk(exported.serverNames.ips.includes('127.0.0.2'), '127.0.0.2 is not among the names')
    handToMosquittoUser(exported)
    await startMosquitto(t, exported.files.conf)
    // No L0 services behind this Mosquitto: the subscriber logs in, subscribes, and waits out -W for a head.
    const sub = await run('mosquitto_sub', [
      ...login('127.0.0.1', port, camera, root),
      '-d',
      '-t',
      topics.head,
      '-W',
      '2',
    ]).done
    t.match(sub.out, /received CONNACK \(0\)[^]*received SUBACK/, `mosquitto_sub logs in and subscribes: ${sub.out}`)
    const pub = await run('mosquitto_pub', [
      ...login('127.0.0.1', port, sensor, root),
      '-q',
      '1',
      '-t',
      topics.inbox(camera.cn, sensor.cn),
      '-m',
      'hello',
    ]).done
    t.equal(pub.status, 0, `mosquitto_pub logs in and publishes (QoS 1, acknowledged): ${pub.out}`)
    const wrong = await run('mosquitto_pub', [
      ...login('127.0.0.2', port, sensor, root),
      '-q',
      '1',
      '-t',
      topics.inbox(camera.cn, sensor.cn),
      '-m',
      'x',
    ]).done
    t.not(wrong.status, 0, '127.0.0.2: mosquitto_pub refuses the broker')
    const insecure = await run('mosquitto_pub', [
      ...login('127.0.0.2', port, sensor, root, ['--insecure']),
      '-q',
      '1',
      '-t',
      topics.inbox(camera.cn, sensor.cn),
      '-m',
      'x',
    ]).done
    t.equal(insecure.status, 0, '127.0.0.2 with --insecure gets through: only the host name check refused it')
  })
}
