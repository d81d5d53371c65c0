// Challenge-response without TLS: one-time nonces, deadlines, signatures by the certificate's key, then the same decision.
import t from 'tap'
import fc from 'fast-check'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodeSigning } from '../../runtime/node/signing.ts'
import { createPortableSigning } from '../../agent/portable/signing.ts'
import type { TlsSigning } from '../../agent/ports/signing.ts'
import {
  ChallengeVerifier,
  answerChallenge,
  challengeSigningInput,
  decodeChallenge,
  decodeChallengeAnswer,
  encodeChallenge,
  encodeChallengeAnswer,
  CHALLENGE_CONTEXT,
  CHALLENGE_NONCE_BYTES,
} from '../../agent/access/challenge.ts'
import { encodeCbor } from '../../agent/codec/cbor.ts'
import { utf8 } from '../../agent/codec/bytes.ts'
import { makeServeHouse } from './_house.ts'
import { nodePki } from '../../runtime/node/pki.ts'

const house = await makeServeHouse()
const lock = house.cn['L3.3'],
  guest = house.cn['L3.4']
const portableSigning = createPortableSigning(nodeCrypto)

/** A clock the test moves by hand. */
function manualClock(start: number): { now: () => number; advance: (s: number) => void } {
  let time = start
  return {
    now: () => time,
    advance: s => {
      time += s
    },
  }
}

function setup(signing: TlsSigning = nodeSigning, options: { deadline?: number; capacity?: number } = {}) {
  const clock = manualClock(house.now)
  const verifier = new ChallengeVerifier({
    self: lock,
    randomBytes: nodeCrypto.randomBytes,
    signing,
    clock,
    ...options,
  })
  const session = house.session(lock)
  return { clock, verifier, session }
}

function guestAnswers(
  challenge: Uint8Array,
  action = 'unlock',
  key = house.fleet.device(guest).secrets.tls.privateKeyPem,
  signing: TlsSigning = nodeSigning,
): Uint8Array {
  return answerChallenge(
    challenge,
    { certificateDer: house.fleet.device(guest).certificate.der, privateKeyPem: key, verifierCn: lock, action },
    signing,
  )
}

for (const [name, signing] of [
  ['node', nodeSigning],
  ['portable', portableSigning],
] as const) {
  t.test(`${name}: a good answer is allowed, then its replay refused CHALLENGE_REPLAYED`, async t => {
    const { verifier, session } = setup(signing)
    const challenge = verifier.issue('unlock')
    const answer = guestAnswers(challenge, 'unlock', undefined, signing)
    const d = verifier.verify(answer, session)
    t.equal(d.code, 'ALLOW', d.reason)
    t.equal(d.peer, guest)
    t.same(d.path, [guest, house.cn['L2.2'], house.cn.L1, house.cn['L2.1'], lock])
    const again = verifier.verify(answer, session)
    t.equal(again.code, 'CHALLENGE_REPLAYED')
    t.equal(again.allow, false)
  })
}

t.test('a late answer is refused CHALLENGE_EXPIRED; one at the deadline is not', async t => {
  const { clock, verifier, session } = setup(nodeSigning, { deadline: 30 })
  const onTime = verifier.issue('unlock')
  const late = verifier.issue('unlock')
  clock.advance(30)
  t.equal(verifier.verify(guestAnswers(onTime), session).code, 'ALLOW', 'exactly 30 s after issue')
  clock.advance(1)
  const d = verifier.verify(guestAnswers(late), session)
  t.equal(d.code, 'CHALLENGE_EXPIRED', d.reason)
  t.equal(d.action, 'unlock')
})

t.test(
  "a signature by another key (Eve's, over the guest's certificate) is refused CHALLENGE_SIGNATURE and does not burn the nonce",
  async t => {
    const { verifier, session } = setup()
    const challenge = verifier.issue('unlock')
    const forged = guestAnswers(challenge, 'unlock', house.eve.keys.privateKeyPem)
    const d = verifier.verify(forged, session)
    t.equal(d.code, 'CHALLENGE_SIGNATURE', d.reason)
    t.equal(d.peer, undefined, 'an unproven certificate names no peer')
    // A signature over other bytes (no domain separation) fails as well.
    const raw = house.fleet.device(guest)
    const bare = encodeChallengeAnswer({
      nonce: decodeChallenge(challenge).nonce,
      certificateDer: raw.certificate.der,
      signature: nodeSigning.sign(raw.secrets.tls.privateKeyPem, challenge),
    })
    t.equal(verifier.verify(bare, session).code, 'CHALLENGE_SIGNATURE', 'the context string is part of what is signed')
    t.equal(verifier.verify(guestAnswers(challenge), session).code, 'ALLOW', 'the genuine answer still gets through')
  },
)

t.test('answers to challenges this verifier never issued are refused CHALLENGE_UNKNOWN', async t => {
  const { verifier, session } = setup()
  const other = setup().verifier
  const elsewhere = other.issue('unlock')
  t.equal(verifier.verify(guestAnswers(elsewhere), session).code, 'CHALLENGE_UNKNOWN')
  const small = setup(nodeSigning, { capacity: 2 })
  const first = small.verifier.issue('unlock')
  small.verifier.issue('view')
  small.verifier.issue('view')
  t.equal(small.verifier.size, 2)
  t.equal(
    small.verifier.verify(guestAnswers(first), small.session).code,
    'CHALLENGE_UNKNOWN',
    'pushed out by newer challenges',
  )
})

t.test('after the nonce is proven, the same decision as over TLS: role, policy and chain still decide', async t => {
  const { verifier, session } = setup()
  const configure = verifier.issue('configure')
  t.equal(verifier.verify(guestAnswers(configure, 'configure'), session).code, 'POLICY_ACTION')
  // Eve signs with her own key over her own certificate from her own CA: the signature holds, the chain does not.
  const fromEve = await house.forge('eve-ca', guest, house.cn['L2.2'])
  const challenge = verifier.issue('unlock')
  const eve = answerChallenge(
    challenge,
    { certificateDer: fromEve.der, privateKeyPem: house.eve.keys.privateKeyPem, verifierCn: lock, action: 'unlock' },
    nodeSigning,
  )
  t.equal(verifier.verify(eve, session).code, 'CERT_CHAIN')
  const garbageCert = encodeChallengeAnswer({
    nonce: decodeChallenge(verifier.issue('unlock')).nonce,
    certificateDer: utf8('not a certificate'),
    signature: new Uint8Array(256),
  })
  t.equal(verifier.verify(garbageCert, session).code, 'CERT_PARSE')
})

t.test(
  'the requester signs only a challenge that names the device and action it asked for (CHALLENGE_MISMATCH)',
  async t => {
    const { verifier } = setup()
    const challenge = verifier.issue('unlock')
    const me = house.fleet.device(guest)
    t.throws(
      () =>
        answerChallenge(
          challenge,
          {
            certificateDer: me.certificate.der,
            privateKeyPem: me.secrets.tls.privateKeyPem,
            verifierCn: house.cn['L2.1'],
            action: 'unlock',
          },
          nodeSigning,
        ),
      { code: 'CHALLENGE_MISMATCH' },
      'relayed from another device',
    )
    t.throws(
      () =>
        answerChallenge(
          challenge,
          {
            certificateDer: me.certificate.der,
            privateKeyPem: me.secrets.tls.privateKeyPem,
            verifierCn: lock,
            action: 'view',
          },
          nodeSigning,
        ),
      { code: 'CHALLENGE_MISMATCH' },
      'for another action',
    )
  },
)

t.test('node and portable RSASSA-PKCS1-v1_5 SHA-256 agree byte for byte and verify each other', async t => {
  const { verifier } = setup()
  const message = challengeSigningInput(decodeChallenge(verifier.issue('unlock')))
  // An RSA key: this compares the two RSASSA-PKCS1-v1_5 implementations (P-256 answers are checked elsewhere).
  const key = await nodePki.generateTlsKeyPair('rsa2048')
  const byNode = nodeSigning.sign(key.privateKeyPem, message)
  const byForge = portableSigning.sign(key.privateKeyPem, message)
  t.same(byForge, byNode, 'PKCS#1 v1.5 is deterministic (RFC 8017 §8.2.1)')
  t.equal(byNode.length, 256)
  for (const s of [nodeSigning, portableSigning]) {
    t.equal(s.verify(key.spkiDer, message, byNode), true, `${s.name} verifies`)
    const flipped = byNode.slice()
    flipped[100]! ^= 1
    t.equal(s.verify(key.spkiDer, message, flipped), false, `${s.name} refuses a flipped bit`)
    t.equal(s.verify(house.eve.keys.spkiDer, message, byNode), false, `${s.name} refuses another key`)
    t.equal(s.verify(utf8('not a key'), message, byNode), false, `${s.name} says false to a garbage key`)
  }
  t.throws(() => nodeSigning.sign('not a key', message), { code: 'BAD_ARGUMENT' })
  t.throws(() => portableSigning.sign('not a key', message), { code: 'BAD_ARGUMENT' })
})

t.test('codecs: round trips, the signed bytes, strict decoding of untrusted input', async t => {
  t.same(Array.from(CHALLENGE_CONTEXT.subarray(-1)), [0], 'the context ends with a zero byte')
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: CHALLENGE_NONCE_BYTES, maxLength: CHALLENGE_NONCE_BYTES }),
      fc.stringMatching(/^[a-z0-9.]{1,60}$/),
      fc.stringMatching(/^[a-z][a-z0-9._-]{0,31}$/),
      fc.integer({ min: 0, max: 0xffffffff }),
      (nonce, verifierCn, action, time) => {
        const c = { nonce, verifierCn, action, time }
        const bytes = encodeChallenge(c)
        const back = decodeChallenge(bytes)
        return (
          Buffer.from(encodeChallenge(back)).equals(Buffer.from(bytes)) &&
          back.action === action &&
          back.time === time &&
          Buffer.from(challengeSigningInput(c)).equals(Buffer.concat([CHALLENGE_CONTEXT, bytes]))
        )
      },
    ),
  )
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: CHALLENGE_NONCE_BYTES, maxLength: CHALLENGE_NONCE_BYTES }),
      fc.uint8Array({ minLength: 1, maxLength: 2000 }),
      fc.uint8Array({ minLength: 1, maxLength: 512 }),
      (nonce, certificateDer, signature) => {
        const a = decodeChallengeAnswer(encodeChallengeAnswer({ nonce, certificateDer, signature }))
        return (
          Buffer.from(a.nonce).equals(Buffer.from(nonce)) &&
          Buffer.from(a.certificateDer).equals(Buffer.from(certificateDer)) &&
          Buffer.from(a.signature).equals(Buffer.from(signature))
        )
      },
    ),
  )
  const nonce = new Uint8Array(16)
  const bad: Array<[string, Uint8Array, string]> = [
    ['empty', new Uint8Array(0), 'DECODE_CBOR'],
    [
      'trailing byte',
      new Uint8Array([...encodeChallenge({ nonce, verifierCn: lock, action: 'unlock', time: 1 }), 0]),
      'DECODE_TRAILING',
    ],
    ['3 items', encodeCbor([nonce, lock, 'unlock']), 'DECODE_SHAPE'],
    ['short nonce', encodeCbor([new Uint8Array(15), lock, 'unlock', 1]), 'DECODE_FIELD'],
    ['wildcard action', encodeCbor([nonce, lock, '*', 1]), 'DECODE_FIELD'],
    ['text time', encodeCbor([nonce, lock, 'unlock', 'now']), 'DECODE_FIELD'],
    ['oversized', new Uint8Array(4096), 'DECODE_OVERSIZE'],
  ]
  for (const [what, bytes, code] of bad) {
    t.throws(() => decodeChallenge(bytes), { code }, `challenge: ${what}`)
  }
  t.throws(
    () => decodeChallengeAnswer(encodeCbor([nonce, new Uint8Array(0), new Uint8Array(1)])),
    { code: 'DECODE_FIELD' },
    'answer: empty certificate',
  )
  t.throws(
    () => decodeChallengeAnswer(encodeCbor([nonce, new Uint8Array(1)])),
    { code: 'DECODE_SHAPE' },
    'answer: 2 items',
  )
  const { verifier, session } = setup()
  const d = verifier.verify(utf8('garbage'), session)
  t.match(d.code, /^DECODE_/, 'garbage is a coded deny, never a throw')
  t.equal(d.allow, false)
})
