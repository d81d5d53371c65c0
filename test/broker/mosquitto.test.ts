import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { join } from 'node:path'
import {
  connectDevice,
  end,
  enrollDirect,
  makeInvite,
  makeL0Home,
  nextMessage,
  registerInvite,
  startTestL0,
  subscribeGranted,
  withHomeLedger,
  type TestDevice,
} from './_fleet.ts'
import { runClient, type ClientRun } from './_mosquitto.ts'

// Debian's mosquitto-clients; .ci/run installs them. Missing tools are a failure, never a silent skip.
const missing = ['mosquitto_sub', 'mosquitto_pub', 'stdbuf'].filter(
  tool => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0,
)
if (missing.length > 0) {
  t.fail(
    `${missing.join(', ')} not installed: run 'apt-get install -y mosquitto-clients coreutils' (CI's .ci/run installs mosquitto-clients) to test L0 with a third-party MQTT client`,
  )
} else {
  await interop()
}

async function interop(): Promise<void> {
  const l0 = await makeL0Home()
  const { phone, tablet } = await withHomeLedger(l0, async ledger => ({
    phone: await enrollDirect(l0, ledger, l0.self, { role: 'member' }),
    tablet: await enrollDirect(l0, ledger, l0.self, { role: 'member' }),
  }))
  const { services } = await startTestL0(l0)
  t.teardown(() => services.close())
  const topics = services.topics

  /**
   * Common options, host name verification on: L0's server certificates name 127.0.0.1 beside its CN, and the chain
   * to the fleet root (--cafile) is verified as well.
   */
  const tls = (dev: TestDevice | undefined, insecure = false): string[] => [
    '-h',
    services.host,
    '-p',
    String(services.port),
    '-V',
    'mqttv311',
    '--cafile',
    join(l0.self.dir, 'root.pem'),
    ...(insecure ? ['--insecure'] : []),
    ...(dev === undefined
      ? []
      : ['--cert', join(dev.dir, 'cert.pem'), '--key', join(dev.dir, 'tls-key.pem'), '-i', dev.cn]),
  ]

  const run = (tool: string, args: string[]): Promise<ClientRun> => runClient(tool, args).done

  t.test('mosquitto_sub with a device certificate receives on its own inbox', async t => {
    // -d prints the SUBACK, so the message is published only once the subscription stands; -C 1 exits after one
    // message. stdbuf makes its stdout line-buffered: through a pipe it would otherwise show nothing until it exits.
    const sub = spawn(
      'stdbuf',
      [
        '-oL',
        'mosquitto_sub',
        ...tls(phone),
        '-d',
        '-q',
        '1',
        '-t',
        topics.inboxAll(phone.cn),
        '-v',
        '-C',
        '1',
        '-W',
        '30',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let out = ''
    const subscribed = new Promise<void>(resolve =>
      sub.stdout.on('data', d => {
        out += d
        if (/SUBACK/.test(out)) resolve()
      }),
    )
    const exited = new Promise<number | null>(resolve => sub.on('close', code => resolve(code)))
    await subscribed
    t.match(out, /Subscribed \(mid: \d+\): 1/, 'granted QoS 1')
    // The tablet under a foreign sender label (L0's): dropped, and the connection with it; the phone sees nothing of it.
    const forged = await run('mosquitto_pub', [
      ...tls(tablet),
      '-q',
      '1',
      '-t',
      topics.inbox(phone.cn, services.cn),
      '-m',
      'forged in the name of L0',
    ])
    t.not(forged.status, 0, 'a publish into another inbox under a foreign sender label is refused')
    t.match(forged.out, /connection was lost/i)
    const pub = await run('mosquitto_pub', [
      ...tls(tablet),
      '-q',
      '1',
      '-t',
      topics.inbox(phone.cn, tablet.cn),
      '-m',
      'hello from the tablet',
    ])
    t.equal(pub.status, 0, `mosquitto_pub to another device's inbox under its own CN: ${pub.out}`)
    t.equal(await exited, 0)
    t.match(
      out,
      new RegExp(`${topics.inbox(phone.cn, tablet.cn).replace(/\./g, '\\.')} hello from the tablet`),
      "the first message the phone gets is the tablet's, under its sender label",
    )
    t.notMatch(out, /forged/)
  })

  t.test('mosquitto_sub with a device certificate reads the retained head L0 signed (-C 1)', async t => {
    const r = await run('mosquitto_sub', [...tls(phone), '-t', topics.head, '-C', '1', '-W', '20', '-F', '%x'])
    t.equal(r.status, 0, r.out)
    t.equal(
      r.out.trim(),
      Buffer.from(services.miner.miner.latestHeadBytes()!).toString('hex'),
      "byte for byte the miner's latest head",
    )
  })

  t.test("mosquitto_sub on kin/# or another device's inbox is denied", async t => {
    for (const filter of ['kin/#', topics.inboxAll(tablet.cn), topics.submitAll]) {
      const r = await run('mosquitto_sub', [...tls(phone), '-t', filter, '-C', '1', '-W', '10'])
      t.match(r.out, /All subscription requests were denied/, filter)
    }
  })

  t.test('mosquitto_pub is refused for another client id, no certificate, and topics it may not publish', async t => {
    const wrongId = await run('mosquitto_pub', [
      ...tls(phone).slice(0, -2),
      '-i',
      tablet.cn,
      '-q',
      '1',
      '-t',
      topics.inbox(tablet.cn, phone.cn),
      '-m',
      'x',
    ])
    t.not(wrongId.status, 0)
    t.match(wrongId.out, /identifier rejected/)
    const anonymous = await run('mosquitto_pub', [
      ...tls(undefined),
      '-i',
      'anyone',
      '-q',
      '1',
      '-t',
      `${topics.base}/dev/${tablet.cn.slice(0, 16)}/inbox/anyone`,
      '-m',
      'x',
    ])
    t.not(anonymous.status, 0)
    t.match(anonymous.out, /not authori[sz]ed/)
    for (const topic of [topics.head, topics.submit(tablet.cn), topics.syncResp(phone.cn)]) {
      const r = await run('mosquitto_pub', [...tls(phone), '-q', '1', '-t', topic, '-m', 'x'])
      t.not(r.status, 0, `${topic}: the broker drops the connection instead of acknowledging`)
      t.match(r.out, /connection was lost/i, topic)
    }
    const ok = await run('mosquitto_pub', [...tls(phone), '-q', '1', '-t', topics.syncReq(phone.cn), '-m', 'x'])
    t.equal(ok.status, 0, 'its own sync request topic is fine')
  })

  t.test(
    'a pairing login from mosquitto_pub: wrong code refused, right code admitted to its own pairing topic only',
    async t => {
      const parent = await connectDevice(services, phone)
      const invite = makeInvite(phone, { role: 'device' })
      t.same(await registerInvite(services, parent, phone, invite.registration), ['invite-ok', invite.invite.inviteId])
      const id = invite.invite.inviteId
      t.same(await subscribeGranted(parent, [topics.pairAll(id)]), [1])
      const pairing = (password: string) => [...tls(undefined), '-i', `pair-${id}`, '-u', `pair:${id}`, '-P', password]
      const wrong = await run('mosquitto_pub', [
        ...pairing('0'.repeat(32)),
        '-q',
        '1',
        '-t',
        topics.pair(id, 'request'),
        '-m',
        'x',
      ])
      t.match(wrong.out, /bad user name or password/)
      const request = nextMessage(parent, topics.pair(id, 'request'))
      const right = await run('mosquitto_pub', [
        ...pairing(invite.secrets.loginProof),
        '-q',
        '1',
        '-t',
        topics.pair(id, 'request'),
        '-m',
        'sealed request',
      ])
      t.equal(right.status, 0, right.out)
      t.equal((await request).toString(), 'sealed request', 'the parent received it')
      const used = await run('mosquitto_pub', [
        ...pairing(invite.secrets.loginProof),
        '-q',
        '1',
        '-t',
        topics.pair(id, 'request'),
        '-m',
        'x',
      ])
      t.match(used.out, /identifier rejected/, 'the code was used up by the first login')
      await end(parent)
    },
  )

  t.test(
    "without --insecure the host name check passes: L0's server certificate names 127.0.0.1 beside its CN (mosquitto-clients.test.ts refuses a host it does not name)",
    async t => {
      const r = await run('mosquitto_pub', [...tls(phone, false), '-q', '1', '-t', topics.syncReq(phone.cn), '-m', 'x'])
      t.equal(r.status, 0, r.out)
    },
  )
}
