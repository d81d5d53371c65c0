// The Espruino shims run as Espruino modules against a stand-in Espruino (_espruino-fake.ts): the ledger file on
// StorageFile with torn appends and interrupted replaces, SHA-256 and HMAC against node:crypto, delegated verdicts
// with every refusal, and the agent asking a verifier that decides with the full agent. Not a test on hardware.
import t from 'tap'
import { createHmac } from 'node:crypto'
import { nodeCrypto } from '../../firmware-shims/node/crypto.ts'
import { concatBytes, toHex } from '../../agent/codec/bytes.ts'
import { scanRecords } from '../../agent/ledger/store.ts'
import { replayRecords } from '../../agent/ledger/persistent.ts'
import { decide } from '../../agent/access/decide.ts'
import { houseFleet } from '../helpers/ledger-fleet.ts'
import { House, NOW } from '../helpers/access-house.ts'
import { fakeEspruino, loadShim, STORAGE_FILE_NAME_MAX, type FakeEspruino } from './_espruino-fake.ts'

interface ShimFile {
  size(): Promise<number>
  read(): Promise<Uint8Array>
  append(bytes: Uint8Array): Promise<void>
  replace(bytes: Uint8Array): Promise<void>
  close(): Promise<void>
}
interface ShimCrypto {
  sha256(data: Uint8Array): Uint8Array
  hmacSha256(key: Uint8Array, message: Uint8Array | string): Uint8Array
  randomBytes(n: number): Uint8Array
  equalBytes(a: Uint8Array, b: Uint8Array): boolean
}
interface ShimClock { now(): number; trusted(): boolean; adopt(seconds: number): boolean }
interface Verdict { allow: boolean; code: string; peer: string; action: string; time: number }
interface ShimVerdicts { request(action: string, hint?: string): { nonce: string; line: string }; accept(line: string): Verdict; pending: Record<string, unknown> }

function storageOf(env: FakeEspruino): { openAppendFile(name: string): Promise<ShimFile> } {
  return loadShim<{ espruinoStorage(s?: unknown): { openAppendFile(name: string): Promise<ShimFile> } }>('storage.js', env).espruinoStorage()
}
function cryptoOf(env: FakeEspruino): ShimCrypto {
  return loadShim<{ espruinoCrypto(): ShimCrypto }>('crypto.js', env).espruinoCrypto()
}
function clockOf(env: FakeEspruino): ShimClock {
  return loadShim<{ espruinoClock(): ShimClock }>('clock.js', env).espruinoClock()
}
function verdictsOf(env: FakeEspruino, self: string, key: Uint8Array, clock = clockOf(env), ttl?: number): ShimVerdicts {
  const { DelegatedVerdicts } = loadShim<{ DelegatedVerdicts: new (o: object) => ShimVerdicts }>('verdict.js', env)
  return new DelegatedVerdicts({ self, key, crypto: cryptoOf(env), clock, ttl })
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
  t.ok([...env.storage.files.values()].every(text => !text.includes('\xff')), 'no character 255 reached the flash')
  t.ok(whole.includes(0xff) || events.length > 0, 'the events are binary CBOR')
  t.ok([...env.storage.files.keys()].every(n => n.length <= STORAGE_FILE_NAME_MAX), 'StorageFile names fit')

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
  t.same(await again.read(), concatBytes(events[0]!, events[1]!, events[2]!), 'the next append starts on a line of its own')
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
  t.same(await (await storageOf(env).openAppendFile('ledger')).read(), concatBytes(events[0]!, events[1]!, events[2]!), 'replaced, then appended, then reopened')

  // Power fails while the new content is written: the old content stays.
  const before = await (await storageOf(env).openAppendFile('ledger')).read()
  const current = await storageOf(env).openAppendFile('ledger')
  env.storage.tearAfter = 20
  t.not(await codeOf(current.replace(concatBytes(...events))), 'ok', 'the interrupted replace fails')
  t.same(await (await storageOf(env).openAppendFile('ledger')).read(), before, 'reopened: the content before the replace')
  t.equal([...env.storage.files.values()].filter(v => v.length > 0).length, 1, 'the half-written copy was erased')
})

t.test('crypto: SHA-256 and HMAC-SHA256 (RFC 4231) on the native hash', async t => {
  const c = cryptoOf(fakeEspruino())
  for (const n of [0, 1, 55, 56, 64, 1000]) {
    const data = nodeCrypto.randomBytes(n)
    t.same(c.sha256(data), nodeCrypto.sha256(data), `SHA-256 of ${n} bytes`)
    const key = nodeCrypto.randomBytes(n % 100 + 1)
    t.same(c.hmacSha256(key, data), new Uint8Array(createHmac('sha256', key).update(data).digest()), `HMAC with a ${key.length}-byte key`)
  }
  // RFC 4231 §4.2 (test case 1) and §4.7 (test case 6: a key longer than the block).
  t.equal(toHex(c.hmacSha256(new Uint8Array(20).fill(0x0b), 'Hi There')), 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7')
  t.equal(toHex(c.hmacSha256(new Uint8Array(131).fill(0xaa), 'Test Using Larger Than Block-Size Key - Hash Key First')),
    '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54')
  const r = c.randomBytes(37)
  t.equal(r.length, 37)
  t.not(toHex(r), toHex(c.randomBytes(37)), 'random bytes differ')
  t.ok(c.equalBytes(Uint8Array.of(1, 2), Uint8Array.of(1, 2)) && !c.equalBytes(Uint8Array.of(1, 2), Uint8Array.of(1, 3)))
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

t.test('verdicts: accepted only MACed, for this device, for an open challenge, in time, for the action asked', async t => {
  const env = fakeEspruino()
  env.clockMs = 1_800_000_000_000
  const key = nodeCrypto.randomBytes(32)
  const clock = clockOf(env)
  const v = verdictsOf(env, 'lock.smith.home.arpa', key, clock, 30)
  const ask = (action = 'unlock') => requestFields(key, v.request(action, 'guest-phone').line)

  const r1 = ask()
  t.same(r1.slice(0, 2).concat(r1.slice(3, 5)), ['kin-request-1', 'lock.smith.home.arpa', 'unlock', 'guest-phone'], 'the request names device, action and peer, MACed')
  const good = verdictLine(key, ['lock.smith.home.arpa', r1[2]!, 'guest.smith.home.arpa', 'unlock', '1', 'ALLOW', '1800000005'])
  t.same(v.accept(good), { allow: true, code: 'ALLOW', peer: 'guest.smith.home.arpa', action: 'unlock', time: 1800000005 })
  t.equal(await codeOf(() => v.accept(good)), 'VERDICT_UNKNOWN_CHALLENGE', 'a replay is refused')
  t.ok(clock.trusted() && env.setTimes.includes(1800000005), 'the untrusted clock adopted the MACed time')

  const r2 = ask()
  const deny = verdictLine(key, ['lock.smith.home.arpa', r2[2]!, 'camera.smith.home.arpa', 'unlock', '0', 'POLICY_ACTION', '1800000006'])
  t.match(v.accept(deny), { allow: false, code: 'POLICY_ACTION' }, 'a deny passes through as a deny')

  const r3 = ask()
  const otherKey = nodeCrypto.randomBytes(32)
  t.equal(await codeOf(() => v.accept(verdictLine(otherKey, ['lock.smith.home.arpa', r3[2]!, 'eve', 'unlock', '1', 'ALLOW', '1']))), 'VERDICT_MAC', 'another key')
  const tampered = verdictLine(key, ['lock.smith.home.arpa', r3[2]!, 'eve', 'unlock', '0', 'POLICY_ROLE', '1']).replace('|0|POLICY_ROLE|', '|1|POLICY_ROLE|')
  t.equal(await codeOf(() => v.accept(tampered)), 'VERDICT_MAC', 'a deny turned into an allow')
  t.equal(await codeOf(() => v.accept(verdictLine(key, ['camera.smith.home.arpa', r3[2]!, 'eve', 'unlock', '1', 'ALLOW', '1']))), 'VERDICT_NOT_MINE')
  t.equal(await codeOf(() => v.accept(verdictLine(key, ['lock.smith.home.arpa', 'ff'.repeat(16), 'eve', 'unlock', '1', 'ALLOW', '1']))), 'VERDICT_UNKNOWN_CHALLENGE', 'a challenge never issued')
  t.equal(await codeOf(() => v.accept(verdictLine(key, ['lock.smith.home.arpa', r3[2]!, 'eve', 'configure', '1', 'ALLOW', '1']))), 'VERDICT_ACTION', 'another action')
  t.equal(await codeOf(() => v.accept(verdictLine(key, ['lock.smith.home.arpa', r3[2]!, 'eve', 'unlock', '1', 'ALLOW', '1']))), 'VERDICT_UNKNOWN_CHALLENGE', 'the challenge was used up by the refused verdict')

  const r4 = ask()
  env.clockMs += 31_000
  t.equal(await codeOf(() => v.accept(verdictLine(key, ['lock.smith.home.arpa', r4[2]!, 'guest', 'unlock', '1', 'ALLOW', '1']))), 'VERDICT_EXPIRED')
  t.equal(await codeOf(() => v.accept('kin-verdict-1|too|short')), 'VERDICT_FORMAT')
  t.equal(await codeOf(() => v.request('un|lock')), 'BAD_ARGUMENT', 'fields cannot smuggle a separator')
})

t.test('the agent over MQTT: it asks, a verifier decides with the full agent, it acts on the verdict', async t => {
  const house = new House()
  const env = fakeEspruino()
  env.clockMs = NOW * 1000
  const fleet = 'smith.home.arpa'
  const lockCn = house.cn['L3.3'], verifierCn = house.cn['L2.1']
  const key = nodeCrypto.randomBytes(32)
  const { espruinoTransport } = loadShim<{ espruinoTransport(): { connect(o: object): Promise<unknown> } }>('transport.js', env)
  const { espruinoAgent } = loadShim<{ espruinoAgent(o: object): { inbox: string; ask(action: string, hint: string): Promise<string> } }>('agent.js', env)

  // The verifier (the lock's parent, a phone running the full agent): decides as the lock, MACs the verdict.
  const inboxOf = (cn: string, sender: string) => `kin/${fleet}/dev/${cn}/inbox/${sender}`
  env.broker.nodeSubscribers.set(inboxOf(verifierCn, lockCn), message => {
    const [, device, nonce, action, peerName] = requestFields(key, message)
    const d = decide({ certificate: house.cert(peerName!), action: action! }, house.context('L3.3'))
    env.broker.publishFromNode(inboxOf(device!, verifierCn), verdictLine(key, [device!, nonce!, d.peer ?? '-', action!, d.allow ? '1' : '0', d.code, String(NOW)]))
  })

  const session = await espruinoTransport().connect({ host: '192.0.2.1', port: 1883, clientId: lockCn, username: lockCn, password: 'x' })
  const seen: { error: string | undefined; verdict: Verdict | undefined }[] = []
  let wake: () => void = () => {}
  const agent = espruinoAgent({
    fleet, self: lockCn, verifier: verifierCn, session, verdicts: verdictsOf(env, lockCn, key),
    onVerdict: (error: { code?: string } | undefined, verdict: Verdict | undefined) => { seen.push({ error: error?.code, verdict }); wake() },
  })
  t.equal(agent.inbox, inboxOf(lockCn, verifierCn), 'it reads what the verifier writes into its inbox')
  const next = () => new Promise<void>(resolve => { wake = resolve })

  for (const [peer, action, expected] of [['L3.4', 'unlock', 'ALLOW'], ['L3.1', 'configure', 'POLICY_ACTION'], ['L2.2', 'unlock', 'ALLOW']] as const) {
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
  env.broker.publishFromNode(inboxOf(lockCn, verifierCn), verdictLine(nodeCrypto.randomBytes(32), [lockCn, '00'.repeat(16), 'eve', 'unlock', '1', 'ALLOW', String(NOW)]))
  await forged
  t.same(seen[seen.length - 1], { error: 'VERDICT_MAC', verdict: undefined }, 'a verdict not from the verifier is refused')
  t.ok(env.broker.published.every(p => p.qos === 1 && !p.message.includes('\n')), 'requests go out at QoS 1, one line each')
})

t.test('transport: refused and unreachable brokers are coded; a dropped session comes back and subscribes again', async t => {
  const env = fakeEspruino()
  const { espruinoTransport } = loadShim<{ espruinoTransport(): { connect(o: object): Promise<{ subscribe(f: string[]): Promise<void>; onStatus(l: (s: string) => void): void; publish(t: string, p: Uint8Array): Promise<void>; onMessage(l: (t: string, p: Uint8Array) => void): void } > } }>('transport.js', env)
  env.broker.refuse = 'NOT_AUTHORIZED'
  t.equal(await codeOf(espruinoTransport().connect({ host: 'h', clientId: 'c' })), 'BROKER_REFUSED')
  env.broker.refuse = undefined
  env.broker.up = false
  t.equal(await codeOf(espruinoTransport().connect({ host: 'h', clientId: 'c' })), 'BROKER_UNREACHABLE')
  env.broker.up = true
  const session = await espruinoTransport().connect({ host: 'h', clientId: 'c' })
  await session.subscribe(['a/b'])
  const statuses: string[] = []
  session.onStatus(s => statuses.push(s))
  const got: Uint8Array[] = []
  session.onMessage((_topic, payload) => got.push(payload))
  const client = [...env.broker.clients][0]!
  client.drop()
  await new Promise(resolve => setTimeout(resolve, 1200))
  t.same(statuses, ['offline', 'online'], 'offline, then online again after the backoff')
  t.ok(client.subscriptions.has('a/b'), 'subscribed again')
  const binary = Uint8Array.of(0, 255, 10, 13, 128)
  await session.publish('a/b', binary)
  await new Promise(resolve => setImmediate(resolve))
  t.same(got[0], binary, 'binary payloads survive the 8-bit string module both ways')
})
