// Challenge-response over the device inbox (PROTOCOL.md §12.4, issue 6 item 5): a real L0 on loopback, enrolled devices.
import t, { type Test } from 'tap'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodeSigning } from '../../runtime/node/signing.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { ChallengeVerifier, answerChallenge } from '../../agent/access/challenge.ts'
import { encodeCbor } from '../../agent/codec/cbor.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import type { Decision } from '../../agent/access/types.ts'
import { openAccessHome, type AccessHome } from '../../runtime/access-home.ts'
import type { GossipClient } from '../../agent/gossip/client.ts'
import { connectDevice } from '../../agent/gossip/login.ts'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import {
  askOverInbox,
  serveInboxChallenges,
  verdictOf,
  type InboxRequester,
  type InboxVerifier,
  type InboxVerifierOptions,
  type IgnoredReason,
} from '../../agent/gossip/challenge-session.ts'
import {
  decodeAccessMessage,
  decodeResultBody,
  encodeAccessAnswer,
  encodeAccessAsk,
  encodeAccessChallenge,
  encodeAccessResult,
  encodeResultBody,
  readInboxMessage,
  MAX_ACCESS_MESSAGE_BYTES,
  MAX_REASON_LENGTH,
  REQUEST_ID_BYTES,
  type AccessResultMessage,
} from '../../agent/gossip/challenge-wire.ts'
import { gossipFleet, until, type GossipDevice } from './_fleet.ts'

const fleet = await gossipFleet(t, ['admin', 'member', 'device', 'device'], { start: 'all' })
const [, member, lock, camera] = fleet.devices as [GossipDevice, GossipDevice, GossipDevice, GossipDevice]
const topics = fleetTopics(fleet.l0.domain)
const der = (d: GossipDevice): Uint8Array => DeviceCertificate.from(d.certPem).der

const homes = new Map<string, AccessHome>()
async function homeOf(d: GossipDevice): Promise<AccessHome> {
  let h = homes.get(d.cn)
  if (h === undefined) {
    h = await openAccessHome(d.home, { audit: false, needKey: true })
    homes.set(d.cn, h)
  }
  return h
}
const clients = new Map<string, GossipClient>()
async function clientOf(d: GossipDevice): Promise<GossipClient> {
  let c = clients.get(d.cn)
  if (c === undefined) {
    c = await connectDevice(
      nodeTransport,
      { url: fleet.url, cn: d.cn, certPem: d.certPem, keyPem: d.keyPem, rootPem: fleet.l0.rootPem, l0Cn: fleet.l0.cn },
      { timeoutMs: 10_000 },
    )
    clients.set(d.cn, c)
  }
  return c
}
t.teardown(async () => {
  for (const c of clients.values()) await c.close().catch(() => undefined)
})

/** A clock the test moves by hand. */
function manualClock(): { now: () => number; advance: (s: number) => void } {
  let skew = 0
  return {
    now: () => Math.floor(Date.now() / 1000) + skew,
    advance: s => {
      skew += s
    },
  }
}

interface Served {
  service: InboxVerifier
  decisions: Decision[]
  ignored: Array<{ reason: IgnoredReason; detail: string; code: string | undefined }>
}

/** The lock's inbox service on its own session (what `kin serve` runs), with what it reported collected. */
async function serveLock(t: Test, extra: Partial<InboxVerifierOptions> = {}): Promise<Served> {
  const home = await homeOf(lock)
  const client = await clientOf(lock)
  const out: Served = { service: undefined as unknown as InboxVerifier, decisions: [], ignored: [] }
  out.service = serveInboxChallenges({
    fleet: fleet.l0.domain,
    self: lock.cn,
    certificateDer: der(lock),
    privateKeyPem: lock.keyPem,
    signing: nodeSigning,
    randomBytes: nodeCrypto.randomBytes,
    clock: { now: () => Math.floor(Date.now() / 1000) },
    decider: home.session,
    onDecision: d => out.decisions.push(d),
    onIgnored: (reason, detail, code) => out.ignored.push({ reason, detail, code }),
    ...extra,
  })
  await out.service.attach(client.session)
  t.teardown(() => out.service.close())
  return out
}

async function requesterOf(d: GossipDevice, key = d.keyPem): Promise<InboxRequester> {
  const home = await homeOf(d)
  return {
    fleet: fleet.l0.domain,
    cn: d.cn,
    certificateDer: der(d),
    privateKeyPem: key,
    signing: nodeSigning,
    randomBytes: nodeCrypto.randomBytes,
    check: home.session,
  }
}

/** A requester driven step by step: ask, take the challenge, answer (what askOverInbox does, with room to misbehave). */
async function rawAsk(
  d: GossipDevice,
  action: string,
): Promise<{
  id: Uint8Array
  challenge: Uint8Array
  client: GossipClient
  answer(bytes: Uint8Array): Promise<AccessResultMessage>
}> {
  const client = await clientOf(d)
  const id = nodeCrypto.randomBytes(REQUEST_ID_BYTES)
  // What the lock's session writes into this device's inbox.
  const inbox = topics.inbox(d.cn, lock.cn)
  await client.subscribe([topics.inboxAll(d.cn)])
  await client.publish(topics.inbox(lock.cn, d.cn), encodeAccessAsk({ requestId: id, requesterCn: d.cn, action }))
  const sameId = (a: Uint8Array): boolean => toHex(a) === toHex(id)
  const challenge = await client.waitFor(
    inbox,
    p => {
      const r = readInboxMessage(p)
      return r.kind === 'message' && r.message.kind === 'challenge' && sameId(r.message.requestId)
        ? r.message.challenge
        : undefined
    },
    { timeoutMs: 5000, code: 'ACCESS_TIMEOUT', message: 'no challenge' },
  )
  return {
    id,
    challenge,
    client,
    async answer(bytes) {
      await client.publish(topics.inbox(lock.cn, d.cn), encodeAccessAnswer({ requestId: id, answer: bytes }))
      return client.waitFor(
        inbox,
        p => {
          const r = readInboxMessage(p)
          return r.kind === 'message' && r.message.kind === 'result' && sameId(r.message.requestId)
            ? r.message
            : undefined
        },
        { timeoutMs: 5000, code: 'ACCESS_TIMEOUT', message: 'no result' },
      )
    },
  }
}

function signedBy(d: GossipDevice, challenge: Uint8Array, action: string, key = d.keyPem): Uint8Array {
  return answerChallenge(
    challenge,
    { certificateDer: der(d), privateKeyPem: key, verifierCn: lock.cn, action },
    nodeSigning,
  )
}

t.test(
  'a permitted peer is allowed over the inbox; the verdict is signed by the lock and checked by the requester',
  async t => {
    const served = await serveLock(t)
    const started = performance.now()
    const outcome = await askOverInbox(await clientOf(member), await requesterOf(member), {
      verifierCn: lock.cn,
      action: 'unlock',
    })
    t.comment(`ask over inbox round trip: ${(performance.now() - started).toFixed(1)} ms`)
    t.equal(outcome.verdict.code, 'ALLOW', outcome.verdict.reason)
    t.equal(outcome.verdict.allow, true)
    t.equal(outcome.verdict.peer, member.cn)
    t.equal(outcome.server.code, 'ALLOW', 'the lock passed the server identity check')
    t.equal(outcome.server.peer, lock.cn)
    await until(() => served.decisions.length === 1, 2000)
    t.equal(served.decisions[0]?.code, 'ALLOW', 'the lock reports the decision it sent')
    t.equal(served.service.stats.results, 1)
  },
)

t.test('a peer the policy refuses is denied with the policy code, the same decision as over TLS', async t => {
  await serveLock(t)
  const outcome = await askOverInbox(await clientOf(camera), await requesterOf(camera), {
    verifierCn: lock.cn,
    action: 'unlock',
  })
  const expected = (await homeOf(lock)).session.decide(der(camera), 'unlock')
  t.equal(outcome.verdict.allow, false)
  t.equal(expected.allow, false)
  t.equal(outcome.verdict.code, expected.code, `the engine says ${expected.code}`)
  t.match(outcome.verdict.code, /^POLICY_/)
  const view = await askOverInbox(await clientOf(camera), await requesterOf(camera), {
    verifierCn: lock.cn,
    action: 'view',
  })
  t.equal(view.verdict.code, 'ALLOW', 'devices may view each other')
})

t.test('a replayed answer is refused CHALLENGE_REPLAYED over the wire', async t => {
  const served = await serveLock(t)
  const raw = await rawAsk(member, 'unlock')
  const answer = signedBy(member, raw.challenge, 'unlock')
  const first = decodeResultBody((await raw.answer(answer)).body)
  t.equal(first.verdict.code, 'ALLOW')
  const again = decodeResultBody((await raw.answer(answer)).body)
  t.equal(again.verdict.code, 'CHALLENGE_REPLAYED', again.verdict.reason)
  t.equal(again.verdict.allow, false)
  t.same(
    served.decisions.map(d => d.code),
    ['ALLOW', 'CHALLENGE_REPLAYED'],
  )
})

t.test("a late answer is refused CHALLENGE_EXPIRED (the lock's clock moved past the deadline)", async t => {
  const clock = manualClock()
  await serveLock(t, { clock, deadline: 30 })
  const raw = await rawAsk(member, 'unlock')
  clock.advance(31)
  const result = decodeResultBody((await raw.answer(signedBy(member, raw.challenge, 'unlock'))).body)
  t.equal(result.verdict.code, 'CHALLENGE_EXPIRED', result.verdict.reason)
})

t.test(
  'an answer signed by another key is refused CHALLENGE_SIGNATURE; one signed by another device for this ask ACCESS_WRONG_PEER',
  async t => {
    await serveLock(t)
    const raw = await rawAsk(member, 'unlock')
    const forged = decodeResultBody((await raw.answer(signedBy(member, raw.challenge, 'unlock', camera.keyPem))).body)
    t.equal(forged.verdict.code, 'CHALLENGE_SIGNATURE', forged.verdict.reason)
    const other = await rawAsk(member, 'view')
    const byCamera = decodeResultBody((await other.answer(signedBy(camera, other.challenge, 'view'))).body)
    t.equal(byCamera.verdict.code, 'ACCESS_WRONG_PEER', byCamera.verdict.reason)
    const genuine = decodeResultBody((await raw.answer(signedBy(member, raw.challenge, 'unlock'))).body)
    t.equal(genuine.verdict.code, 'ALLOW', 'the forged answer did not burn the nonce')
  },
)

t.test(
  'the requester refuses a result it cannot believe: signed by another key, or by another fleet device',
  async t => {
    // A service answering in the lock's inbox whose signature is the camera's key over the lock's certificate.
    const badKey = await serveLock(t, { privateKeyPem: camera.keyPem })
    await t.rejects(
      askOverInbox(await clientOf(member), await requesterOf(member), {
        verifierCn: lock.cn,
        action: 'unlock',
        timeoutMs: 1500,
      }),
      { code: 'CHALLENGE_RESULT_SIGNATURE' },
    )
    badKey.service.close()
    // The camera's own certificate and key: a genuine fleet device, but not the one asked.
    const other = await serveLock(t, { certificateDer: der(camera), privateKeyPem: camera.keyPem })
    await t.rejects(
      askOverInbox(await clientOf(member), await requesterOf(member), {
        verifierCn: lock.cn,
        action: 'unlock',
        timeoutMs: 1500,
      }),
      { code: 'ACCESS_WRONG_PEER' },
    )
    other.service.close()
  },
)

t.test('the requester signs no challenge naming another device (CHALLENGE_MISMATCH)', async t => {
  const client = await clientOf(lock)
  const liar = new ChallengeVerifier({
    self: camera.cn,
    randomBytes: nodeCrypto.randomBytes,
    signing: nodeSigning,
    clock: { now: () => Math.floor(Date.now() / 1000) },
  })
  const stop = client.session.onMessage((topic, payload) => {
    const r = readInboxMessage(payload)
    if (topic !== topics.inbox(lock.cn, member.cn) || r.kind !== 'message' || r.message.kind !== 'ask') return
    void client.publish(
      topics.inbox(r.message.requesterCn, lock.cn),
      encodeAccessChallenge({ requestId: r.message.requestId, challenge: liar.issue(r.message.action) }),
    )
  })
  await client.subscribe([topics.inboxAll(lock.cn)])
  t.teardown(stop)
  await t.rejects(
    askOverInbox(await clientOf(member), await requesterOf(member), { verifierCn: lock.cn, action: 'unlock' }),
    { code: 'CHALLENGE_MISMATCH' },
  )
})

t.test(
  'malformed, foreign and oversize inbox messages are ignored and counted; the service keeps answering',
  async t => {
    const served = await serveLock(t)
    const intruder = await clientOf(camera)
    const inbox = topics.inbox(lock.cn, camera.cn)
    const id = nodeCrypto.randomBytes(REQUEST_ID_BYTES)
    const junk: Array<[string, Uint8Array]> = [
      ['random bytes', nodeCrypto.randomBytes(200)],
      ['an invite reply', encodeCbor(['invite-ok', 'abc'])],
      ['an ask with a short request id', encodeCbor(['access-ask', new Uint8Array(3), member.cn, 'unlock'])],
      ['an ask with a wildcard requester', encodeCbor(['access-ask', id, 'x/+/#', 'unlock'])],
      [
        'an ask in the name of a device of another fleet',
        encodeAccessAsk({
          requestId: nodeCrypto.randomBytes(16),
          requesterCn: 'aaaaaaaaaaaaaaaa.other.example',
          action: 'unlock',
        }),
      ],
      ['an ask with the rule wildcard as action', encodeCbor(['access-ask', id, member.cn, '*'])],
      ['an oversize answer', encodeCbor(['access-answer', id, new Uint8Array(MAX_ACCESS_MESSAGE_BYTES)])],
      ['an answer for no open request', encodeAccessAnswer({ requestId: id, answer: new Uint8Array(10) })],
      [
        'a result sent to a verifier',
        encodeCbor(['access-result', id, new Uint8Array(1), new Uint8Array(1), new Uint8Array(1)]),
      ],
      [
        'trailing bytes after an ask',
        new Uint8Array([...encodeAccessAsk({ requestId: id, requesterCn: member.cn, action: 'unlock' }), 0]),
      ],
    ]
    for (const [, payload] of junk) await intruder.publish(inbox, payload)
    const outcome = await askOverInbox(await clientOf(member), await requesterOf(member), {
      verifierCn: lock.cn,
      action: 'unlock',
    })
    t.equal(outcome.verdict.code, 'ALLOW', 'the service still answers')
    await served.service.idle()
    const ignored = served.service.stats.ignored
    t.equal(ignored.foreign, 2, 'random bytes and the invite reply are not ours')
    t.equal(ignored['sender-mismatch'], 1, 'an ask naming anyone but its sender gets no answer')
    t.equal(ignored['unknown-request'], 1)
    t.equal(ignored['not-for-verifier'], 1)
    t.equal(
      ignored.malformed,
      5,
      served.ignored
        .filter(i => i.reason === 'malformed')
        .map(i => i.detail)
        .join('; '),
    )
    t.ok(
      served.ignored.some(i => /DECODE_OVERSIZE/.test(i.detail)),
      'the oversize answer is named as such',
    )
    t.equal(served.service.stats.asks, 1, 'only the genuine ask opened a request')
    t.throws(
      () => decodeAccessMessage(encodeCbor(['invite-ok', 'abc'])),
      { code: 'DECODE_SHAPE' },
      'the strict decoder names foreign traffic',
    )
  },
)

t.test(
  '[DESIGN "Bounded inputs"] reflection: an ask naming another device as requester is refused INBOX_SENDER_MISMATCH; the named device receives nothing',
  async t => {
    const served = await serveLock(t)
    const victim = await clientOf(member)
    await victim.subscribe([topics.inboxAll(member.cn)])
    const fromLock: Uint8Array[] = []
    const stop = victim.session.onMessage((topic, payload) => {
      if (topic === topics.inbox(member.cn, lock.cn)) fromLock.push(payload)
    })
    t.teardown(stop)
    // The camera's session asks the lock in the member's name: the lock would send the member a challenge it never asked for.
    const eve = await clientOf(camera)
    const reflected = nodeCrypto.randomBytes(REQUEST_ID_BYTES)
    await eve.publish(
      topics.inbox(lock.cn, camera.cn),
      encodeAccessAsk({ requestId: reflected, requesterCn: member.cn, action: 'unlock' }),
    )
    await until(() => served.service.stats.ignored['sender-mismatch'] === 1, 10_000)
    t.equal(served.service.stats.asks, 0, 'no ask was opened')
    const refusal = served.ignored.find(i => i.reason === 'sender-mismatch')
    t.match(refusal?.detail, /^INBOX_SENDER_MISMATCH: /, 'refused with its own code')
    t.equal(refusal?.code, 'INBOX_SENDER_MISMATCH')
    // The member's own ask afterwards: everything the lock sent it is about that request, nothing about the reflected one.
    const outcome = await askOverInbox(victim, await requesterOf(member), { verifierCn: lock.cn, action: 'unlock' })
    t.equal(outcome.verdict.code, 'ALLOW')
    const ids = fromLock.map(p => {
      const r = readInboxMessage(p)
      return r.kind === 'message' ? toHex(r.message.requestId) : r.kind
    })
    t.same(
      ids,
      [outcome.requestId, outcome.requestId],
      'the challenge and the result of its own request, and nothing else',
    )
    t.notOk(ids.includes(toHex(reflected)))
  },
)

t.test('a requester whose verifier does not answer gets ACCESS_TIMEOUT', async t => {
  const started = Date.now()
  await t.rejects(
    askOverInbox(await clientOf(member), await requesterOf(member), {
      verifierCn: camera.cn,
      action: 'view',
      timeoutMs: 400,
    }),
    { code: 'ACCESS_TIMEOUT' },
  )
  t.ok(Date.now() - started < 5000, 'within its own deadline, not the default')
})

t.test('open asks are bounded: the oldest is dropped and its late answer ignored', async t => {
  const served = await serveLock(t, { maxOpenAsks: 2 })
  const first = await rawAsk(member, 'unlock')
  await rawAsk(member, 'view')
  await rawAsk(member, 'view')
  t.equal(served.service.openAsks, 2)
  await first.client.publish(
    topics.inbox(lock.cn, member.cn),
    encodeAccessAnswer({ requestId: first.id, answer: signedBy(member, first.challenge, 'unlock') }),
  )
  await until(() => served.service.stats.ignored['unknown-request'] === 1, 2000)
  t.equal(served.service.stats.ignored['unknown-request'], 1, 'pushed out, so no verdict')
  t.equal(served.service.stats.results, 0)
})

t.test(
  'the wire: every message decodes to what was encoded; a cut or foreign message never throws from readInboxMessage',
  async t => {
    const id = nodeCrypto.randomBytes(REQUEST_ID_BYTES)
    const ask = encodeAccessAsk({ requestId: id, requesterCn: member.cn, action: 'unlock' })
    t.same(decodeAccessMessage(ask), { kind: 'ask', requestId: id, requesterCn: member.cn, action: 'unlock' })
    const challenge = encodeAccessChallenge({ requestId: id, challenge: new Uint8Array([1, 2, 3]) })
    t.same(decodeAccessMessage(challenge), { kind: 'challenge', requestId: id, challenge: new Uint8Array([1, 2, 3]) })
    const verdict = {
      allow: false,
      code: 'POLICY_ACTION',
      reason: 'x'.repeat(10),
      path: [member.cn, lock.cn],
      commonAncestor: lock.cn,
      hops: 1,
      peer: member.cn,
      action: 'unlock',
      time: 7,
    }
    const body = encodeResultBody({ requestId: id, verifierCn: lock.cn, requesterCn: member.cn, verdict })
    t.same(decodeResultBody(body), { requestId: id, verifierCn: lock.cn, requesterCn: member.cn, verdict })
    t.throws(
      () =>
        decodeResultBody(
          encodeResultBody({
            requestId: id,
            verifierCn: lock.cn,
            requesterCn: member.cn,
            verdict: { ...verdict, allow: true },
          }),
        ),
      { code: 'DECODE_FIELD' },
      'an allow must say ALLOW',
    )
    const result = encodeAccessResult({
      requestId: id,
      body,
      certificateDer: der(lock),
      signature: new Uint8Array(256),
    })
    for (const whole of [ask, challenge, result]) {
      for (let cut = 0; cut < whole.length; cut++) {
        const read = readInboxMessage(whole.subarray(0, cut))
        t.not(read.kind, 'message', `cut at ${cut} of ${whole.length}`)
        if (read.kind === 'message') break
      }
    }
    t.equal(
      verdictOf({ ...refusal(), reason: 'r'.repeat(5000) }).reason.length,
      MAX_REASON_LENGTH,
      'a long reason is cut to fit',
    )
  },
)

function refusal(): Decision {
  return {
    allow: false,
    code: 'POLICY_ROLE',
    reason: '',
    path: [],
    commonAncestor: undefined,
    hops: undefined,
    peer: undefined,
    action: 'unlock',
    time: 1,
    retry: false,
    missing: undefined,
  }
}
