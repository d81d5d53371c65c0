// The Espruino shims run as Espruino modules against a stand-in Espruino (_espruino-fake.ts) that behaves as the
// real interpreter and MQTT module do: the ledger file on StorageFile with torn appends and interrupted replaces,
// SHA-256 and HMAC against node:crypto, delegated verdicts with every refusal (a replay across a reboot included),
// the agent asking a verifier that decides with the full agent, and the transport against the module's faults.
// espruino-real.test.ts runs the same files on a real Espruino interpreter. Not a test on hardware.
import t from 'tap'
import { createHmac } from 'node:crypto'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { concatBytes, toHex } from '../../agent/codec/bytes.ts'
import { scanRecords } from '../../agent/ledger/store.ts'
import { replayRecords } from '../../agent/ledger/persistent.ts'
import { decide } from '../../agent/access/decide.ts'
import { houseFleet } from '../helpers/ledger-fleet.ts'
import { House, NOW } from '../helpers/access-house.ts'
import {
  espruinoRegExp,
  fakeEspruino,
  loadShim,
  rebootEspruino,
  STORAGE_FILE_NAME_MAX,
  type FakeEspruino,
} from './_espruino-fake.ts'
import { fleetTopics } from '../../agent/gossip/topics.ts'

interface ShimFile {
  size(): Promise<number>
  read(): Promise<Uint8Array>
  append(bytes: Uint8Array): Promise<void>
  replace(bytes: Uint8Array): Promise<void>
  close(): Promise<void>
}
interface ShimCrypto {
  sha256(data: Uint8Array): Uint8Array
  hmacKey(key: Uint8Array): { mac(message: Uint8Array | string): Uint8Array }
  hmacSha256(key: Uint8Array, message: Uint8Array | string): Uint8Array
  randomBytes(n: number): Uint8Array
  equalBytes(a: Uint8Array, b: Uint8Array): boolean
}
interface ShimClock {
  now(): number
  trusted(): boolean
  adopt(seconds: number): boolean
}
interface Verdict {
  allow: boolean
  code: string
  peer: string
  action: string
  time: number
}
interface ShimVerdicts {
  request(action: string, hint?: string): { nonce: string; line: string }
  accept(line: string): Verdict
  pending: Record<string, unknown>
}

function storageOf(env: FakeEspruino): { openAppendFile(name: string): Promise<ShimFile> } {
  return loadShim<{ espruinoStorage(s?: unknown): { openAppendFile(name: string): Promise<ShimFile> } }>(
    'storage.js',
    env,
  ).espruinoStorage()
}
function cryptoOf(env: FakeEspruino): ShimCrypto {
  return loadShim<{ espruinoCrypto(): ShimCrypto }>('crypto.js', env).espruinoCrypto()
}
function clockOf(env: FakeEspruino): ShimClock {
  return loadShim<{ espruinoClock(): ShimClock }>('clock.js', env).espruinoClock()
}
function verdictsOf(
  env: FakeEspruino,
  self: string,
  key: Uint8Array,
  clock = clockOf(env),
  ttl?: number,
  crypto: ShimCrypto = cryptoOf(env),
): ShimVerdicts {
  const { DelegatedVerdicts } = loadShim<{ DelegatedVerdicts: new (o: object) => ShimVerdicts }>('verdict.js', env)
  return new DelegatedVerdicts({ self, key, crypto, clock, ttl })
}

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p)
    return 'ok'
  } catch (e) {
    return (e as { code?: string }).code ?? `UNCODED: ${String(e)}`
  }
}

const { f } = houseFleet('espruino-shims')
const events = f.ledger.state.log.map(e => e.bytes)

t.test('storage: the ledger file on StorageFile, base64 lines, never a 0xFF', async t => {
  const env = fakeEspruino()
  const storage = storageOf(env)
  const file = await storage.openAppendFile('ledger')
  t.equal(await file.size(), 0)
  for (const e of events) await file.append(e)
  const whole = concatBytes(...events)
  t.same(await file.read(), whole)
  t.equal(await file.size(), whole.length)
  t.ok(
    [...env.storage.files.values()].every(text => !text.includes('\xff')),
    'no character 255 reached the flash',
  )
  t.ok(whole.includes(0xff) || events.length > 0, 'the events are binary CBOR')
  t.ok(
    [...env.storage.files.keys()].every(n => n.length <= STORAGE_FILE_NAME_MAX),
    'StorageFile names fit',
  )

  const reopened = await storageOf(env).openAppendFile('ledger')
  const content = await reopened.read()
  t.same(content, whole, 'reopened, the same bytes')
  const ledger = replayRecords(nodeCrypto, scanRecords(content).records)
  t.equal(ledger.size, events.length, 'and they are the fleet ledger, every event verified')

  t.equal(await codeOf(storage.openAppendFile('x'.repeat(25))), 'BAD_ARGUMENT', 'a name too long for NAME.a is refused')
  await file.close()
  t.equal(await codeOf(file.append(events[0]!)), 'STORAGE_IO', 'a closed file refuses appends')
})

t.test('storage: a torn append is dropped on reopen, and the next append starts clean', async t => {
  const env = fakeEspruino()
  const file = await storageOf(env).openAppendFile('ledger')
  await file.append(events[0]!)
  await file.append(events[1]!)
  env.storage.tearAfter = 37
  t.not(await codeOf(file.append(events[2]!)), 'ok', 'the append cut by power loss fails')
  const after = await storageOf(env).openAppendFile('ledger')
  t.same(await after.read(), concatBytes(events[0]!, events[1]!), 'the torn line is not read')
  await after.append(events[2]!)
  const again = await storageOf(env).openAppendFile('ledger')
  t.same(
    await again.read(),
    concatBytes(events[0]!, events[1]!, events[2]!),
    'the next append starts on a line of its own',
  )
})

t.test('storage: damage in the middle is reported with its offset, never skipped', async t => {
  const env = fakeEspruino()
  const file = await storageOf(env).openAppendFile('ledger')
  for (const e of events.slice(0, 3)) await file.append(e)
  const [name, text] = [...env.storage.files.entries()].find(([, v]) => v.length > 0)!
  const firstLine = text.indexOf('\n') + 1
  env.storage.files.set(name, text.slice(0, firstLine + 5) + '!' + text.slice(firstLine + 6))
  const opened = storageOf(env).openAppendFile('ledger')
  const code = await codeOf(opened)
  t.equal(code, 'STORAGE_DAMAGED')
  await opened.catch((e: Error) => t.match(e.message, new RegExp(`byte offset ${firstLine}\\b`), e.message))
})

t.test('storage: replace is all or nothing across a power loss', async t => {
  const env = fakeEspruino()
  const file = await storageOf(env).openAppendFile('ledger')
  for (const e of events) await file.append(e)
  await file.replace(concatBytes(events[0]!, events[1]!))
  await file.append(events[2]!)
  t.same(
    await (await storageOf(env).openAppendFile('ledger')).read(),
    concatBytes(events[0]!, events[1]!, events[2]!),
    'replaced, then appended, then reopened',
  )

  // Power fails while the new content is written: the old content stays.
  const before = await (await storageOf(env).openAppendFile('ledger')).read()
  const current = await storageOf(env).openAppendFile('ledger')
  env.storage.tearAfter = 20
  t.not(await codeOf(current.replace(concatBytes(...events))), 'ok', 'the interrupted replace fails')
  t.same(
    await (await storageOf(env).openAppendFile('ledger')).read(),
    before,
    'reopened: the content before the replace',
  )
  t.equal([...env.storage.files.values()].filter(v => v.length > 0).length, 1, 'the half-written copy was erased')
})

t.test('crypto: SHA-256 and HMAC-SHA256 (RFC 4231) on the native hash', async t => {
  const c = cryptoOf(fakeEspruino())
  for (const n of [0, 1, 55, 56, 64, 1000]) {
    const data = nodeCrypto.randomBytes(n)
    t.same(c.sha256(data), nodeCrypto.sha256(data), `SHA-256 of ${n} bytes`)
    const key = nodeCrypto.randomBytes((n % 100) + 1)
    t.same(
      c.hmacSha256(key, data),
      new Uint8Array(createHmac('sha256', key).update(data).digest()),
      `HMAC with a ${key.length}-byte key`,
    )
  }
  // RFC 4231 §4.2 (test case 1) and §4.7 (test case 6: a key longer than the block).
  t.equal(
    toHex(c.hmacSha256(new Uint8Array(20).fill(0x0b), 'Hi There')),
    'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
  )
  t.equal(
    toHex(c.hmacSha256(new Uint8Array(131).fill(0xaa), 'Test Using Larger Than Block-Size Key - Hash Key First')),
    '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
  )
  const r = c.randomBytes(37)
  t.equal(r.length, 37)
  t.not(toHex(r), toHex(c.randomBytes(37)), 'random bytes differ')
  t.ok(
    c.equalBytes(Uint8Array.of(1, 2), Uint8Array.of(1, 2)) && !c.equalBytes(Uint8Array.of(1, 2), Uint8Array.of(1, 3)),
  )
})

// The verifier's side, per the wire format in verdict.js and docs/DEVICES.md (a Node verifier would do this).
function verdictLine(key: Uint8Array, fields: string[]): string {
  const body = ['kin-verdict-1', ...fields].join('|')
  return `${body}|${createHmac('sha256', key).update(body, 'latin1').digest('hex')}`
}
function requestFields(key: Uint8Array, line: string): string[] {
  const fields = line.split('|')
  const mac = createHmac('sha256', key).update(fields.slice(0, -1).join('|'), 'latin1').digest('hex')
  if (mac !== fields[fields.length - 1]) throw new Error('request MAC does not verify')
  return fields
}

t.test(
  'verdicts: accepted only MACed, for this device, for an open challenge, in time, for the action asked',
  async t => {
    const env = fakeEspruino()
    env.clockMs = 1_800_000_000_000
    const key = nodeCrypto.randomBytes(32)
    const clock = clockOf(env)
    const v = verdictsOf(env, 'lock.smith.home.arpa', key, clock, 30)
    const ask = (action = 'unlock') => requestFields(key, v.request(action, 'guest-phone').line)

    const r1 = ask()
    t.same(
      r1.slice(0, 2).concat(r1.slice(3, 5)),
      ['kin-request-1', 'lock.smith.home.arpa', 'unlock', 'guest-phone'],
      'the request names device, action and peer, MACed',
    )
    const good = verdictLine(key, [
      'lock.smith.home.arpa',
      r1[2]!,
      'guest.smith.home.arpa',
      'unlock',
      '1',
      'ALLOW',
      '1800000005',
    ])
    t.same(v.accept(good), {
      allow: true,
      code: 'ALLOW',
      peer: 'guest.smith.home.arpa',
      action: 'unlock',
      time: 1800000005,
    })
    t.equal(await codeOf(() => v.accept(good)), 'VERDICT_UNKNOWN_CHALLENGE', 'a replay is refused')
    t.ok(clock.trusted() && env.setTimes.includes(1800000005), 'the untrusted clock adopted the MACed time')

    const r2 = ask()
    const deny = verdictLine(key, [
      'lock.smith.home.arpa',
      r2[2]!,
      'camera.smith.home.arpa',
      'unlock',
      '0',
      'POLICY_ACTION',
      '1800000006',
    ])
    t.match(v.accept(deny), { allow: false, code: 'POLICY_ACTION' }, 'a deny passes through as a deny')

    const r3 = ask()
    const otherKey = nodeCrypto.randomBytes(32)
    t.equal(
      await codeOf(() =>
        v.accept(verdictLine(otherKey, ['lock.smith.home.arpa', r3[2]!, 'eve', 'unlock', '1', 'ALLOW', '1'])),
      ),
      'VERDICT_MAC',
      'another key',
    )
    const tampered = verdictLine(key, [
      'lock.smith.home.arpa',
      r3[2]!,
      'eve',
      'unlock',
      '0',
      'POLICY_ROLE',
      '1',
    ]).replace('|0|POLICY_ROLE|', '|1|POLICY_ROLE|')
    t.equal(await codeOf(() => v.accept(tampered)), 'VERDICT_MAC', 'a deny turned into an allow')
    t.equal(
      await codeOf(() =>
        v.accept(verdictLine(key, ['camera.smith.home.arpa', r3[2]!, 'eve', 'unlock', '1', 'ALLOW', '1'])),
      ),
      'VERDICT_NOT_MINE',
    )
    t.equal(
      await codeOf(() =>
        v.accept(verdictLine(key, ['lock.smith.home.arpa', 'ff'.repeat(16), 'eve', 'unlock', '1', 'ALLOW', '1'])),
      ),
      'VERDICT_UNKNOWN_CHALLENGE',
      'a challenge never issued',
    )
    t.equal(
      await codeOf(() =>
        v.accept(verdictLine(key, ['lock.smith.home.arpa', r3[2]!, 'eve', 'configure', '1', 'ALLOW', '1'])),
      ),
      'VERDICT_ACTION',
      'another action',
    )
    t.equal(
      await codeOf(() =>
        v.accept(verdictLine(key, ['lock.smith.home.arpa', r3[2]!, 'eve', 'unlock', '1', 'ALLOW', '1'])),
      ),
      'VERDICT_UNKNOWN_CHALLENGE',
      'the challenge was used up by the refused verdict',
    )

    const r4 = ask()
    env.clockMs += 31_000
    t.equal(
      await codeOf(() =>
        v.accept(verdictLine(key, ['lock.smith.home.arpa', r4[2]!, 'guest', 'unlock', '1', 'ALLOW', '1'])),
      ),
      'VERDICT_EXPIRED',
    )
    t.equal(await codeOf(() => v.accept('kin-verdict-1|too|short')), 'VERDICT_FORMAT')
    t.equal(await codeOf(() => v.request('un|lock')), 'BAD_ARGUMENT', 'fields cannot smuggle a separator')
  },
)

t.test('the agent over MQTT: it asks, a verifier decides with the full agent, it acts on the verdict', async t => {
  const house = new House()
  const env = fakeEspruino()
  env.clockMs = NOW * 1000
  const fleet = 'smith.home.arpa'
  const lockCn = house.cn['L3.3'],
    verifierCn = house.cn['L2.1']
  const key = nodeCrypto.randomBytes(32)
  const { espruinoTransport } = loadShim<{ espruinoTransport(): { connect(o: object): Promise<unknown> } }>(
    'transport.js',
    env,
  )
  const { espruinoAgent } = loadShim<{
    espruinoAgent(o: object): { inbox: string; ask(action: string, hint: string): Promise<string> }
  }>('agent.js', env)

  // The verifier (the lock's parent, a phone running the full agent): decides as the lock, MACs the verdict.
  const inboxOf = (cn: string, sender: string) => fleetTopics(fleet).inbox(cn, sender)
  env.broker.nodeSubscribers.set(inboxOf(verifierCn, lockCn), message => {
    const [, device, nonce, action, peerName] = requestFields(key, message)
    const d = decide({ certificate: house.cert(peerName!), action: action! }, house.context('L3.3'))
    env.broker.publishFromNode(
      inboxOf(device!, verifierCn),
      verdictLine(key, [device!, nonce!, d.peer ?? '-', action!, d.allow ? '1' : '0', d.code, String(NOW)]),
    )
  })

  const session = await espruinoTransport().connect({
    host: '192.0.2.1',
    port: 1883,
    clientId: lockCn,
    username: lockCn,
    password: 'x',
  })
  const seen: { error: string | undefined; verdict: Verdict | undefined }[] = []
  let wake: () => void = () => {}
  const agent = espruinoAgent({
    fleet,
    self: lockCn,
    verifier: verifierCn,
    session,
    verdicts: verdictsOf(env, lockCn, key),
    onVerdict: (error: { code?: string } | undefined, verdict: Verdict | undefined) => {
      seen.push({ error: error?.code, verdict })
      wake()
    },
  })
  t.equal(agent.inbox, inboxOf(lockCn, verifierCn), 'it reads what the verifier writes into its inbox')
  const next = () =>
    new Promise<void>(resolve => {
      wake = resolve
    })

  for (const [peer, action, expected] of [
    ['L3.4', 'unlock', 'ALLOW'],
    ['L3.1', 'configure', 'POLICY_ACTION'],
    ['L2.2', 'unlock', 'ALLOW'],
  ] as const) {
    const arrived = next()
    await agent.ask(action, peer)
    await arrived
    const last = seen[seen.length - 1]!
    const direct = decide({ certificate: house.cert(peer), action }, house.context('L3.3'))
    t.equal(last.error, undefined)
    t.equal(last.verdict?.code, expected, `${peer} ${action}: ${expected}`)
    t.equal(last.verdict?.allow, direct.allow, 'the device acts as the full agent decided')
  }

  // An "allow" under the verifier's label that the verifier did not MAC (a broker that does not hold the sender rule).
  const forged = next()
  env.broker.publishFromNode(
    inboxOf(lockCn, verifierCn),
    verdictLine(nodeCrypto.randomBytes(32), [lockCn, '00'.repeat(16), 'eve', 'unlock', '1', 'ALLOW', String(NOW)]),
  )
  await forged
  t.same(
    seen[seen.length - 1],
    { error: 'VERDICT_MAC', verdict: undefined },
    'a verdict not from the verifier is refused',
  )
  t.ok(
    env.broker.published.every(p => p.qos === 1 && !p.message.includes('\n')),
    'requests go out at QoS 1, one line each',
  )
})

t.test('the stand-in reads RegExp as Espruino does: no "?", no {m,n}, no backreferences', async t => {
  t.notOk(espruinoRegExp('^a?$').test('a'), '"?" is a plain character')
  t.ok(espruinoRegExp('^a?$').test('a?'))
  t.notOk(espruinoRegExp('^a{0,2}$').test('aa'), '{m,n} is plain characters')
  t.notOk(espruinoRegExp('^[A-Za-z0-9+\\/]*={0,2}$').test('QUJD'), 'the base64 check storage.js used never matched')
  t.ok(
    espruinoRegExp('^[A-Za-z0-9+\\/]*$').test('QU+/') && espruinoRegExp('[|\\r\\n]').test('a|b'),
    '"*" and classes work',
  )
  t.ok(espruinoRegExp('^[?{]+$').test('?{'), 'inside a class they are characters anyway')
  t.throws(() => espruinoRegExp('(a)\\1'), /Backreferences/)
  const env = fakeEspruino()
  const file = await storageOf(env).openAppendFile('ledger')
  await file.append(Uint8Array.of(1, 2, 3, 4))
  await file.append(Uint8Array.of(5))
  t.same(
    await (await storageOf(env).openAppendFile('ledger')).read(),
    Uint8Array.of(1, 2, 3, 4, 5),
    'padded lines reopen',
  )
})

t.test("crypto: the key's HMAC pads are computed once; verdicts use the keyed MAC", async t => {
  const env = fakeEspruino()
  const c = cryptoOf(env)
  const key = nodeCrypto.randomBytes(32)
  const keyed = c.hmacKey(key)
  for (const m of ['', 'kin-verdict-1|a|b', 'x'.repeat(200)]) {
    t.equal(
      toHex(keyed.mac(m)),
      createHmac('sha256', key).update(m, 'latin1').digest('hex'),
      `${m.length}-character message`,
    )
  }
  t.equal(
    toHex(keyed.mac(Uint8Array.of(0, 255, 128))),
    createHmac('sha256', key)
      .update(Uint8Array.of(0, 255, 128))
      .digest('hex'),
    'bytes',
  )
  let keyings = 0,
    oneShots = 0
  const counting: ShimCrypto = {
    ...c,
    hmacKey: k => {
      keyings++
      return c.hmacKey(k)
    },
    hmacSha256: (k, m) => {
      oneShots++
      return c.hmacSha256(k, m)
    },
  }
  const v = verdictsOf(env, 'lock', key, clockOf(env), 30, counting)
  for (let i = 0; i < 3; i++) {
    const nonce = v.request('unlock', 'p').nonce
    t.equal(v.accept(verdictLine(key, ['lock', nonce, 'p', 'unlock', '1', 'ALLOW', '1'])).allow, true)
  }
  t.same({ keyings, oneShots }, { keyings: 1, oneShots: 0 }, 'pads once at construction, none per message')
})

t.test(
  'verdicts: E.hwRand() repeats after a reboot, nonces do not, and a recorded ALLOW cannot be replayed',
  async t => {
    const key = nodeCrypto.randomBytes(32)
    const first = fakeEspruino()
    const beforeRand = [first.hwRand(), first.hwRand()]
    const again = rebootEspruino(first)
    t.same(
      [again.hwRand(), again.hwRand()],
      beforeRand,
      "the stand-in's E.hwRand() starts over at every boot, as the Linux build's",
    )
    t.equal(
      toHex(cryptoOf(rebootEspruino(first)).randomBytes(12)),
      toHex(cryptoOf(rebootEspruino(first)).randomBytes(12)),
      'so random bytes alone repeat',
    )

    const boot1 = rebootEspruino(first)
    const v1 = verdictsOf(boot1, 'lock', key)
    const asked = v1.request('unlock', 'guest').nonce
    const recorded = verdictLine(key, ['lock', asked, 'guest', 'unlock', '1', 'ALLOW', '1'])
    t.equal(v1.accept(recorded).allow, true, 'the ALLOW an eavesdropper records')

    const boot2 = rebootEspruino(boot1)
    const v2 = verdictsOf(boot2, 'lock', key)
    const next = v2.request('unlock', 'guest').nonce
    t.not(next, asked, 'the first challenge after the reboot is new')
    t.ok(parseInt(next.slice(0, 8), 16) > parseInt(asked.slice(0, 8), 16), 'its counter is higher')
    t.equal(
      await codeOf(() => v2.accept(recorded)),
      'VERDICT_UNKNOWN_CHALLENGE',
      'the recorded ALLOW is refused after the reboot',
    )

    const seen = new Set<string>()
    let env = boot2
    for (let boot = 0; boot < 5; boot++) {
      env = rebootEspruino(env)
      const v = verdictsOf(env, 'lock', key)
      for (let i = 0; i < 20; i++) seen.add(v.request('unlock', 'p').nonce)
    }
    t.equal(seen.size, 100, '100 challenges over 5 boots, all different')
    t.ok(Number(env.storage.read('kin-nonce')) >= 100, 'the counter in Storage covers every value used')
    env.storage.full = true
    const v = verdictsOf(rebootEspruino(env), 'lock', key)
    t.equal(
      await codeOf(() => v.request('unlock', 'p')),
      'STORAGE_IO',
      'no nonce when the counter cannot be written first',
    )
    t.same(Object.keys(v.pending), [], 'and no challenge is opened')
    env.storage.plain.set('kin-nonce', 'junk')
    t.equal(
      await codeOf(() => verdictsOf(rebootEspruino(env), 'lock', key)),
      'STORAGE_DAMAGED',
      'a counter file that is not a number',
    )
  },
)

interface ShimSession {
  subscribe(f: string[]): Promise<void>
  onStatus(l: (s: string, why?: string) => void): void
  publish(t: string, p: Uint8Array): Promise<void>
  onMessage(l: (t: string, p: Uint8Array) => void): void
  end(): Promise<void>
}
interface Coded {
  code?: string
  message?: string
  detail?: { returnCode?: number }
}

async function settle(p: Promise<unknown>, ms = 20_000): Promise<Coded | 'ok' | 'no answer'> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<'no answer'>(resolve => {
    timer = setTimeout(() => resolve('no answer'), ms)
  })
  try {
    return await Promise.race([
      p.then(
        () => 'ok' as const,
        (e: Coded) => e,
      ),
      deadline,
    ])
  } finally {
    clearTimeout(timer)
  }
}

t.test(
  "transport: the module's faults are not the device's — refusals, unreachable brokers and TLS failures are coded",
  async t => {
    const env = fakeEspruino()
    env.timerCapMs = 5
    const { espruinoTransport } = loadShim<{ espruinoTransport(): { connect(o: object): Promise<ShimSession> } }>(
      'transport.js',
      env,
    )
    for (const rc of [4, 5]) {
      env.broker.refuse = rc
      const refused = await settle(
        espruinoTransport().connect({ host: 'h', clientId: 'c', username: 'c', password: 'wrong' }),
      )
      t.match(
        refused,
        { code: 'BROKER_REFUSED', detail: { returnCode: rc } },
        `CONNACK ${rc} is a refusal, though the module says "connected"`,
      )
    }
    env.broker.refuse = undefined
    env.broker.up = false
    t.match(
      await settle(espruinoTransport().connect({ host: 'h', clientId: 'c' })),
      { code: 'BROKER_UNREACHABLE' },
      'no socket: unreachable, though the module emits "error"',
    )
    env.broker.up = true
    env.broker.tlsFails = true
    env.timerCapMs = 3000
    const tls = { ca: 'ca', key: 'key', cert: 'cert' }
    const failed = await settle(espruinoTransport().connect({ host: 'h', clientId: 'c', tls }))
    t.match(
      failed,
      { code: 'BROKER_IDENTITY', message: /mbedtls_ssl_handshake returned -0x7780/ },
      "a handshake the broker aborts, with mbedTLS's error",
    )
    await new Promise(resolve => setTimeout(resolve, 1500))
    t.same(env.uncaught, [], 'and nothing escaped to the interpreter as uncaught')
    t.equal(env.uncaughtListeners.length, 0, 'the uncaughtException listener is gone once the attempt is over')
  },
)

t.test(
  'transport: a dropped session comes back and subscribes again; a refused login backs off instead of hammering',
  async t => {
    const env = fakeEspruino()
    env.timerCapMs = 5
    const { espruinoTransport } = loadShim<{ espruinoTransport(): { connect(o: object): Promise<ShimSession> } }>(
      'transport.js',
      env,
    )
    const session = await espruinoTransport().connect({ host: 'h', clientId: 'c' })
    await session.subscribe(['a/b'])
    const statuses: string[] = []
    let wake: () => void = () => {}
    session.onStatus(s => {
      statuses.push(s)
      wake()
    })
    const waitFor = async (count: number): Promise<void> => {
      const until = Date.now() + 20_000
      while (statuses.length < count && Date.now() < until)
        await new Promise<void>(resolve => {
          wake = resolve
          setTimeout(resolve, 100)
        })
    }
    const got: Uint8Array[] = []
    session.onMessage((_topic, payload) => got.push(payload))
    const client = [...env.broker.clients][0]!
    client.drop()
    await waitFor(2)
    t.same(statuses, ['offline', 'online'], 'offline, then online again after the backoff')
    t.ok(client.subscriptions.has('a/b'), 'subscribed again')
    const binary = Uint8Array.of(0, 255, 10, 13, 128)
    await session.publish('a/b', binary)
    await new Promise(resolve => setTimeout(resolve, 20))
    t.same(got[0], binary, 'binary payloads survive the 8-bit string module both ways')
    t.equal(env.broker.published.at(-1)?.qos, 1, 'published at QoS 1 ({ qos: 1 }; a bare 1 would send QoS 0)')

    env.broker.refuse = 5
    env.timerDelays.length = 0
    client.drop()
    await waitFor(6)
    await session.end()
    t.same(statuses.slice(2, 6), ['offline', 'refused', 'refused', 'refused'], 'each refused login is reported')
    t.same(
      env.timerDelays.filter(ms => ms !== 10_000).slice(0, 4),
      [1000, 2000, 4000, 8000],
      'and the wait between logins doubles',
    )
  },
)
