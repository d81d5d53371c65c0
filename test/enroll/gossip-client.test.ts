import t, { type Test } from 'tap'
import { KinError, isKinError } from '../../agent/errors.ts'
import { encodeCbor } from '../../agent/codec/cbor.ts'
import { GossipClient } from '../../agent/gossip/client.ts'
import { connectPairing, pairingLoginError } from '../../agent/gossip/login.ts'
import {
  decodeAuthorizePayload,
  decodeCertReply,
  decodeInviteReply,
  encodeAuthorizePayload,
  encodeCertReply,
  encodeInviteReply,
  remoteRefusal,
} from '../../agent/gossip/pair-wire.ts'
import { MAX_PAYLOAD_BYTES } from '../../agent/gossip/topics.ts'
import { derivePairingSecrets } from '../../agent/enroll/pairing.ts'
import { brokerError, parseBrokerUrl } from '../../runtime/node/transport.ts'
import { CONNACK } from '../../agent/ports/transport.ts'
import { MemoryBus } from './_memory-transport.ts'

const opts = {
  url: 'mqtts://memory:1',
  connectTimeoutMs: 1000,
  login: { kind: 'pairing', username: 'u', password: 'p' },
  server: { kind: 'deferred' },
} as const
const bytes = (s: string) => new TextEncoder().encode(s)
const text = (b: Uint8Array) => new TextDecoder().decode(b)

async function codeOf(
  t: Test,
  p: Promise<unknown> | (() => unknown),
  code: string,
  msg: string,
): Promise<KinError | undefined> {
  try {
    await (typeof p === 'function' ? p() : p)
    t.fail(`${msg}: expected ${code}, but it succeeded`)
    return undefined
  } catch (err) {
    t.ok(isKinError(err), `${msg}: a KinError`)
    t.equal((err as KinError).code, code, msg)
    return err as KinError
  }
}

t.test(
  'a message that arrives before its wait is queued; waitFor leaves what accept passes over to other waits',
  async t => {
    const bus = new MemoryBus()
    const a = await GossipClient.connect(bus, { ...opts, clientId: 'a' })
    const b = await GossipClient.connect(bus, { ...opts, clientId: 'b' })
    await a.subscribe(['kin/f/x/#'])
    await b.publish('kin/f/x/one', bytes('early'))
    await new Promise(r => setTimeout(r, 5))
    t.equal(
      text(await a.next('kin/f/x/one', { timeoutMs: 100, code: 'PAIR_TIMEOUT', message: 'none' })),
      'early',
      'the queued message is handed to the later wait',
    )
    const later = a.waitFor('kin/f/x/two', p => (text(p).startsWith('yes') ? text(p) : undefined), {
      timeoutMs: 1000,
      code: 'PAIR_TIMEOUT',
      message: 'none',
    })
    await b.publish('kin/f/x/two', bytes('no: other traffic'))
    await b.publish('kin/f/x/two', bytes('yes: the reply'))
    t.equal(await later, 'yes: the reply', 'the first message accept takes resolves the wait')
    t.equal(
      text(await a.next('kin/f/x/two', { timeoutMs: 100, code: 'PAIR_TIMEOUT', message: 'none' })),
      'no: other traffic',
      'the one it passed over is left for other waits',
    )
    await a.close()
    await b.close()
  },
)

t.test(
  'concurrent waits on one topic each get their own reply, whichever order replies arrive in (one inbox, many invites)',
  async t => {
    const bus = new MemoryBus()
    const a = await GossipClient.connect(bus, { ...opts, clientId: 'a' })
    await a.subscribe(['kin/f/inbox'])
    const ids = ['1', '2', '3', '4']
    const waits = ids.map(id =>
      a.waitFor('kin/f/inbox', p => (text(p) === `reply ${id}` ? id : undefined), {
        timeoutMs: 1000,
        code: 'PAIR_TIMEOUT',
        message: `no reply ${id}`,
      }),
    )
    for (const id of ['3', '1', '4', '2']) await a.publish('kin/f/inbox', bytes(`reply ${id}`))
    t.same(await Promise.all(waits), ids)
    // Replies that came before their waits are found in the queue out of order too.
    for (const id of ['6', '5']) await a.publish('kin/f/inbox', bytes(`reply ${id}`))
    await new Promise(r => setTimeout(r, 5))
    t.equal(
      await a.waitFor('kin/f/inbox', p => (text(p) === 'reply 5' ? '5' : undefined), {
        timeoutMs: 100,
        code: 'PAIR_TIMEOUT',
        message: 'x',
      }),
      '5',
    )
    t.equal(
      await a.waitFor('kin/f/inbox', p => (text(p) === 'reply 6' ? '6' : undefined), {
        timeoutMs: 100,
        code: 'PAIR_TIMEOUT',
        message: 'x',
      }),
      '6',
    )
    await a.close()
  },
)

t.test('a wait ends with the coded timeout it was given, and with the exception accept throws', async t => {
  const bus = new MemoryBus()
  const a = await GossipClient.connect(bus, { ...opts, clientId: 'a' })
  await a.subscribe(['kin/f/#'])
  const err = await codeOf(
    t,
    a.next('kin/f/none', { timeoutMs: 20, code: 'PAIR_CODE_EXPIRED', message: 'nobody came' }),
    'PAIR_CODE_EXPIRED',
    "timeout code is the caller's",
  )
  t.equal(err?.message, 'nobody came')
  const forged = a.waitFor(
    'kin/f/auth',
    () => {
      throw new KinError('PAIR_MAC', 'forged')
    },
    { timeoutMs: 1000, code: 'PAIR_TIMEOUT', message: 'x' },
  )
  await a.publish('kin/f/auth', bytes('forged'))
  await codeOf(t, forged, 'PAIR_MAC', 'a message accept refuses ends the wait with its error')
  // The same for a message that was already queued.
  await a.publish('kin/f/auth2', bytes('forged'))
  await new Promise(r => setTimeout(r, 5))
  await codeOf(
    t,
    a.waitFor(
      'kin/f/auth2',
      () => {
        throw new KinError('PAIR_MAC', 'forged')
      },
      { timeoutMs: 1000, code: 'PAIR_TIMEOUT', message: 'x' },
    ),
    'PAIR_MAC',
    'a queued message is checked too',
  )
  await a.close()
})

t.test(
  'a session closed by the broker rejects pending and later waits; oversized payloads are refused before sending',
  async t => {
    const bus = new MemoryBus()
    const a = await GossipClient.connect(bus, { ...opts, clientId: 'a' })
    await a.subscribe(['kin/f/#'])
    const pending = a.next('kin/f/x', { timeoutMs: 5000, code: 'PAIR_TIMEOUT', message: 'x' })
    bus.sessions[0]!.drop(new KinError('BROKER_CLOSED', 'L0 went away'))
    const err = await codeOf(t, pending, 'BROKER_CLOSED', 'pending wait rejected with the transport error')
    t.equal(err?.message, 'L0 went away')
    await codeOf(
      t,
      a.next('kin/f/y', { timeoutMs: 5000, code: 'PAIR_TIMEOUT', message: 'x' }),
      'BROKER_CLOSED',
      'a later wait fails at once',
    )
    const b = await GossipClient.connect(bus, { ...opts, clientId: 'b' })
    await codeOf(
      t,
      b.publish('kin/f/big', new Uint8Array(MAX_PAYLOAD_BYTES + 1)),
      'BAD_ARGUMENT',
      'payload over the fleet limit',
    )
    t.equal(bus.published.length, 0, 'nothing was sent')
    await b.close()
  },
)

t.test('refused pairing logins become PAIR_* codes that say what to do [MQTT-3.2.2.3]', async t => {
  const refused = (returnCode: number) => new KinError('BROKER_REFUSED', 'refused', { detail: { returnCode } })
  const cases: Array<[number, string]> = [
    [CONNACK.badUsernameOrPassword, 'PAIR_CODE_WRONG'],
    [CONNACK.identifierRejected, 'PAIR_CODE_USED'],
    [CONNACK.notAuthorized, 'PAIR_CODE_EXPIRED'],
  ]
  for (const [rc, code] of cases) {
    const mapped = pairingLoginError(refused(rc)) as KinError
    t.equal(mapped.code, code, `CONNACK ${rc} → ${code}`)
    t.match(mapped.message, /ask the inviter for a new code/, `${code} says what to do`)
  }
  t.equal(
    (pairingLoginError(refused(CONNACK.serverUnavailable)) as KinError).code,
    'BROKER_REFUSED',
    'server unavailable stays a broker refusal',
  )
  const other = new KinError('BROKER_UNREACHABLE', 'down')
  t.equal(pairingLoginError(other), other, 'non-refusals pass through')
  const bus = new MemoryBus()
  bus.connectError = refused(CONNACK.identifierRejected)
  await codeOf(
    t,
    connectPairing(bus, 'mqtts://memory:1', derivePairingSecrets('abcd-efgh-ijkl-mnop'), { timeoutMs: 100 }),
    'PAIR_CODE_USED',
    'connectPairing maps the refusal',
  )
  bus.connectError = undefined
  await connectPairing(bus, 'mqtts://memory:1', derivePairingSecrets('abcd-efgh-ijkl-mnop'), { timeoutMs: 100 })
  const s = bus.sessions[0]!.options
  const { inviteId, loginProof } = derivePairingSecrets('ABCD EFGH IJKL MNOP')
  t.same(
    [s.clientId, s.login, s.server, s.reconnect],
    [
      `pair-${inviteId}`,
      { kind: 'pairing', username: `pair:${inviteId}`, password: loginProof },
      { kind: 'deferred' },
      false,
    ],
    'docs/PAIRING.md step 2: client id pair-<id>, user pair:<id>, password = login proof, never reconnecting',
  )
})

t.test('mqtt.js and TLS errors become BROKER_* codes; broker addresses are mqtts only', async t => {
  const withCode = (code: unknown, message = 'x') => Object.assign(new Error(message), { code })
  t.equal(brokerError(withCode(5, 'Connection refused: Not authorized'), 'u').code, 'BROKER_REFUSED')
  t.equal(brokerError(withCode(5), 'u').detail?.returnCode, 5)
  t.equal(brokerError(withCode('ECONNREFUSED'), 'u').code, 'BROKER_UNREACHABLE')
  t.equal(brokerError(withCode('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), 'u').code, 'BROKER_IDENTITY')
  t.equal(brokerError(withCode('ERR_TLS_CERT_ALTNAME_INVALID'), 'u').code, 'BROKER_IDENTITY')
  t.equal(brokerError(withCode('ECONNRESET'), 'u').code, 'BROKER_CLOSED')
  t.same(parseBrokerUrl('mqtts://10.0.0.2:8884'), { host: '10.0.0.2', port: 8884 })
  t.same(parseBrokerUrl('mqtts://l0.smith.home.arpa'), { host: 'l0.smith.home.arpa', port: 8883 }, 'default port 8883')
  t.same(parseBrokerUrl('mqtts://[::1]:9000'), { host: '::1', port: 9000 })
  for (const bad of ['mqtt://h:1883', 'h:8883', 'mqtts://:1', 'wss://h'])
    t.throws(() => parseBrokerUrl(bad), { code: 'BAD_ARGUMENT' }, `refuses ${bad}`)
})

t.test('pairing payloads decode strictly; L0 refusal codes are kept only when kinship knows them', async t => {
  const ev = new Uint8Array(300).fill(7)
  t.same(decodeAuthorizePayload(encodeAuthorizePayload(ev, 'PEM')), { authorizeBytes: ev, rootPem: 'PEM' })
  t.throws(() => decodeAuthorizePayload(encodeCbor([ev])), { code: 'DECODE_SHAPE' })
  t.throws(() => decodeAuthorizePayload(encodeCbor([new Uint8Array(5000), 'x'])), { code: 'DECODE_FIELD' })
  t.throws(() => decodeAuthorizePayload(new Uint8Array([0xff])), { code: /^DECODE_/ })
  const ok = { ok: true as const, certPem: 'C', lineage: [ev, ev] }
  t.same(decodeCertReply(encodeCertReply(ok)), ok)
  t.same(decodeCertReply(encodeCertReply({ ok: false, code: 'NONCE_REUSED', message: 'm' })), {
    ok: false,
    code: 'NONCE_REUSED',
    message: 'm',
  })
  t.throws(() => decodeCertReply(encodeCbor(['ok', 'C', ['not bytes']])), { code: 'DECODE_FIELD' })
  t.throws(() => decodeCertReply(encodeCbor(['maybe', 'a', 'b'])), { code: 'DECODE_SHAPE' })
  t.same(decodeInviteReply(encodeInviteReply({ ok: true, inviteId: 'ab' })), { ok: true, inviteId: 'ab' })
  t.same(
    decodeInviteReply(encodeInviteReply({ ok: false, inviteId: 'ab', code: 'ROLE_CANNOT_DELEGATE', message: 'no' })),
    { ok: false, inviteId: 'ab', code: 'ROLE_CANNOT_DELEGATE', message: 'no' },
  )
  t.equal(
    decodeInviteReply(new Uint8Array([0xff, 0x00])),
    undefined,
    'garbage on the inbox is other traffic, not an error',
  )
  t.equal(decodeInviteReply(encodeCbor(['challenge', 'x'])), undefined)
  t.equal(remoteRefusal('ROLE_CANNOT_DELEGATE', 'no', 'INVITE_REFUSED', 'L0 refused').code, 'ROLE_CANNOT_DELEGATE')
  const odd = remoteRefusal('MADE_UP', 'no', 'INVITE_REFUSED', 'L0 refused')
  t.equal(odd.code, 'INVITE_REFUSED', 'an unknown remote code falls back')
  t.equal(odd.detail?.remoteCode, 'MADE_UP', 'and is kept in detail')
})
