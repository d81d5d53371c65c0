import t from 'tap'
import { readFileSync } from 'node:fs'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { portableCrypto } from '../../agent/portable/crypto.ts'
import { concatBytes, fromHex, toHex, utf8 } from '../../agent/codec/bytes.ts'
import { decodeCbor, encodeCbor, type CborValue } from '../../agent/codec/cbor.ts'
import { isKinError } from '../../agent/errors.ts'
import {
  EVENT_SIGNING_PREFIX,
  MAX_EVENT_BYTES,
  decodeEvent,
  encodeEvent,
  readEvent,
  signEvent,
  signingInput,
  verifyEventSignature,
} from '../../agent/ledger/event.ts'
import {
  base32,
  cnOf,
  deriveLabel,
  labelFromBase32,
  labelOfCn,
  parentCnOfMarker,
  parentMarker,
  validateFleetDomain,
} from '../../agent/ledger/names.ts'
import { EVENT_TYPE, REVOKE_REASON, ROLE, type LedgerEvent, type UnsignedEvent } from '../../agent/ledger/types.ts'
import { eventToJson, unsignedFromJson, type Json } from '../vectors/ledger/fields.ts'
import { LedgerFleet, T0, codeOf } from '../helpers/ledger-fleet.ts'

const encodings = JSON.parse(readFileSync(new URL('../vectors/ledger/encodings.json', import.meta.url), 'utf8'))
const sizes = JSON.parse(readFileSync(new URL('../vectors/ledger/sizes.json', import.meta.url), 'utf8'))

t.test('encoding vectors cover every event type', async t => {
  t.same(
    encodings.vectors.map((v: { fields: { type: string } }) => v.fields.type).sort(),
    Object.keys(EVENT_TYPE).sort(),
  )
})

for (const crypto of [nodeCrypto, portableCrypto]) {
  t.test(
    `${crypto.name}: encoding vectors re-encode, re-sign and hash to the recorded bytes, signature and id`,
    async t => {
      t.equal(toHex(EVENT_SIGNING_PREFIX), encodings.signingPrefix)
      for (const v of encodings.vectors) {
        const unsigned = unsignedFromJson(v.fields)
        const seed = fromHex(v.signerSeed)
        t.equal(toHex(crypto.ed25519PublicKey(seed)), v.signerPublicKey, `${v.name}: signer public key`)
        t.equal(toHex(signingInput(unsigned)), v.signingInput, `${v.name}: signing input`)
        t.equal(toHex(crypto.ed25519Sign(fromHex(v.signingInput), seed)), v.signature, `${v.name}: signature`)
        const event = { ...unsigned, signature: fromHex(v.signature) } as LedgerEvent
        t.equal(toHex(encodeEvent(event)), v.bytes, `${v.name}: canonical bytes`)
        t.equal(toHex(crypto.sha256(fromHex(v.bytes))), v.id, `${v.name}: id = SHA-256(bytes)`)
        const signed = signEvent(crypto, unsigned, seed)
        t.equal(signed.idHex, v.id, `${v.name}: signEvent gives the same id`)
        t.equal(toHex(signed.bytes), v.bytes, `${v.name}: signEvent gives the same bytes`)
        const read = readEvent(crypto, fromHex(v.bytes))
        t.same(eventToJson(read.event), v.fields, `${v.name}: decoding gives back the fields`)
        t.equal(read.idHex, v.id)
        t.ok(verifyEventSignature(crypto, read.event, fromHex(v.signerPublicKey)), `${v.name}: signature verifies`)
        t.equal(cnOf(read.event.subject, encodings.domain), v.subjectCn, `${v.name}: subject CN`)
      }
    },
  )
}

t.test(
  'the signing input is the prefix "kinship/event/v1\\0" then the CBOR array of the first seven fields',
  async t => {
    t.equal(new TextDecoder().decode(EVENT_SIGNING_PREFIX), 'kinship/event/v1\0')
    for (const v of encodings.vectors) {
      const top = decodeCbor(fromHex(v.bytes)) as CborValue[]
      t.equal(toHex(concatBytes(EVENT_SIGNING_PREFIX, encodeCbor(top.slice(0, 7)))), v.signingInput, v.name)
      t.equal(toHex(top[7] as Uint8Array), v.signature, `${v.name}: the eighth field is the signature`)
      // Domain separation: the same key's signature over the bare CBOR is a different signature.
      t.notOk(
        nodeCrypto.ed25519Verify(fromHex(v.signature), encodeCbor(top.slice(0, 7)), fromHex(v.signerPublicKey)),
        `${v.name}: no signature without the prefix`,
      )
    }
  },
)

t.test('wire numbers of types, roles and reasons', async t => {
  t.same(EVENT_TYPE, { genesis: 0, authorize: 1, certified: 2, revoke: 3, rekey: 4, policy: 5 })
  t.same(ROLE, { admin: 0, member: 1, device: 2, guest: 3 })
  t.same(REVOKE_REASON, { compromised: 0, lost: 1, retired: 2 })
  for (const v of encodings.vectors) {
    const top = decodeCbor(fromHex(v.bytes)) as CborValue[]
    t.equal(top[0], 1, `${v.name}: version 1`)
    t.equal(top[1], EVENT_TYPE[v.fields.type as keyof typeof EVENT_TYPE], `${v.name}: type number`)
  }
})

t.test('labels and CNs (names.ts)', async t => {
  // RFC 4648 §10 test vectors, lowercase and without padding.
  const rfc: Array<[string, string]> = [
    ['', ''],
    ['f', 'my'],
    ['fo', 'mzxq'],
    ['foo', 'mzxw6'],
    ['foob', 'mzxw6yq'],
    ['fooba', 'mzxw6ytb'],
    ['foobar', 'mzxw6ytboi'],
  ]
  for (const [input, out] of rfc) t.equal(base32(utf8(input)), out, `BASE32("${input}")`)
  const label = fromHex('00443214c74254b635cf')
  t.equal(base32(label), 'abcdefghijklmnop')
  t.equal(toHex(labelFromBase32('abcdefghijklmnop')), toHex(label))
  t.equal(toHex(labelFromBase32(base32(fromHex('ffffffffffffffffffff')))), 'ffffffffffffffffffff')
  for (const bad of [
    'ABCDEFGHIJKLMNOP',
    'abcdefghijklmno',
    'abcdefghijklmnopq',
    'abcdefghijklmno1',
    'abcdefghijklmno0',
  ]) {
    t.equal(
      codeOf(() => labelFromBase32(bad)),
      'CERT_NAMES',
      `"${bad}" is not a label`,
    )
  }
  t.equal(cnOf(label, 'smith.home.arpa'), 'abcdefghijklmnop.smith.home.arpa')
  t.equal(toHex(labelOfCn('abcdefghijklmnop.smith.home.arpa', 'smith.home.arpa')), toHex(label))
  t.equal(
    codeOf(() => labelOfCn('abcdefghijklmnop.jones.home.arpa', 'smith.home.arpa')),
    'CERT_NAMES',
  )
  t.equal(
    codeOf(() => labelOfCn('x.abcdefghijklmnop.smith.home.arpa', 'smith.home.arpa')),
    'CERT_NAMES',
  )
  // DESIGN.md "Names": the parent marker is a URI, kin://<fleet domain>/parent/<parent label>, never a DNS name.
  t.equal(parentMarker('abcdefghijklmnop.smith.home.arpa'), 'kin://smith.home.arpa/parent/abcdefghijklmnop')
  t.equal(
    parentCnOfMarker('kin://smith.home.arpa/parent/abcdefghijklmnop'),
    'abcdefghijklmnop.smith.home.arpa',
    'marker → CN round-trips',
  )
  for (const bad of [
    'parent.abcdefghijklmnop.smith.home.arpa',
    'https://smith.home.arpa/parent/abcdefghijklmnop',
    'kin://smith.home.arpa/parent/abcdefghijklmnop?x',
    'kin://smith.home.arpa:80/parent/abcdefghijklmnop',
    'kin://user@smith.home.arpa/parent/abcdefghijklmnop',
    'kin://smith.home.arpa/parent/abcdefghijklmnop/x',
    'kin://Smith.home.arpa/parent/abcdefghijklmnop',
    'kin:///parent/abcdefghijklmnop',
    'kin://smith.home.arpa/parent/',
  ]) {
    t.equal(parentCnOfMarker(bad), undefined, `"${bad}" is not a parent marker`)
  }
  t.equal(
    codeOf(() => parentMarker('l0')),
    'CERT_NAMES',
    'a marker needs a CN of the form <label>.<domain>',
  )

  // label = SHA-256("kinship/label/v1\0" ‖ nonce ‖ spkiHash ‖ ledgerKey)[0..10), computed here without names.ts.
  for (const v of encodings.vectors.filter((x: { name: string }) => x.name === 'genesis' || x.name === 'authorize')) {
    const b = v.fields.body
    const digest = nodeCrypto.sha256(
      concatBytes(utf8('kinship/label/v1\0'), fromHex(b.nonce), fromHex(b.spkiHash), fromHex(b.ledgerKey)),
    )
    t.equal(toHex(digest.subarray(0, 10)), v.fields.subject, `${v.name}: subject label derived from nonce and keys`)
    for (const crypto of [nodeCrypto, portableCrypto]) {
      t.equal(
        toHex(deriveLabel(crypto, fromHex(b.nonce), fromHex(b.spkiHash), fromHex(b.ledgerKey))),
        v.fields.subject,
        `${v.name}: deriveLabel (${crypto.name})`,
      )
    }
  }
})

t.test('fleet domains', async t => {
  for (const ok of ['smith.home.arpa', 'a.b', 'x-1.example.org', `${'a'.repeat(35)}.home.arpa`])
    t.equal(validateFleetDomain(ok), ok)
  const bad = [
    '',
    'localhost',
    'Smith.home.arpa',
    'smith..arpa',
    '-a.home.arpa',
    'a-.home.arpa',
    'home.123',
    'smith.home.arpa.',
    'smith home.arpa',
    'smïth.home.arpa',
  ]
  for (const d of bad)
    t.equal(
      codeOf(() => validateFleetDomain(d)),
      'FLEET_DOMAIN',
      JSON.stringify(d),
    )
  // Longer than 45 characters: the root's CN would pass X.509's 64 (RFC 5280 ub-common-name).
  for (const d of [`${'a'.repeat(36)}.home.arpa`, `${'a'.repeat(63)}.home.arpa`, `${'a.'.repeat(100)}bc`])
    t.equal(
      codeOf(() => validateFleetDomain(d)),
      'FLEET_DOMAIN_TOO_LONG',
      JSON.stringify(d),
    )
})

t.test('field limits are enforced on encode and decode alike', async t => {
  const f = LedgerFleet.create({ tag: 'limits' })
  const base = f.authorizeUnsigned(f.l0, { role: 'device', time: T0 + 10 }).unsigned as Extract<
    UnsignedEvent,
    { type: 'authorize' }
  >
  const withBody = (over: Record<string, unknown>): LedgerEvent =>
    ({ ...base, body: { ...base.body, ...over }, signature: new Uint8Array(64) }) as LedgerEvent
  const accepted = (over: Record<string, unknown>): boolean => {
    try {
      const bytes = encodeEvent(withBody(over))
      decodeEvent(bytes)
      return true
    } catch (e) {
      if (!isKinError(e, 'DECODE_FIELD') && !isKinError(e, 'DECODE_SHAPE')) throw e
      return false
    }
  }
  t.ok(accepted({ name: 'x'.repeat(64) }), 'name: 64 bytes')
  t.notOk(accepted({ name: 'x'.repeat(65) }), 'name: 65 bytes')
  t.notOk(accepted({ name: '€'.repeat(22) }), 'name: 22 characters but 66 bytes of UTF-8')
  t.ok(accepted({ kind: 'k'.repeat(16) }), 'kind: 16 bytes')
  t.notOk(accepted({ kind: 'k'.repeat(17) }), 'kind: 17 bytes')
  t.ok(accepted({ nonce: new Uint8Array(12) }), 'nonce: 12 bytes')
  t.ok(accepted({ nonce: new Uint8Array(32) }), 'nonce: 32 bytes')
  t.notOk(accepted({ nonce: new Uint8Array(11) }), 'nonce: 11 bytes')
  t.notOk(accepted({ nonce: new Uint8Array(33) }), 'nonce: 33 bytes')
  t.notOk(accepted({ spkiHash: new Uint8Array(31) }), 'spkiHash: 31 bytes')
  t.ok(accepted({ depth: 15 }), 'depth 15')
  t.notOk(accepted({ depth: 16 }), 'depth 16')
  t.ok(accepted({ notAfter: 0xffffffff }), 'notAfter 2^32-1')
  t.equal(
    codeOf(() => encodeEvent(withBody({ notAfter: 2 ** 32 }))),
    'DECODE_FIELD',
    'notAfter 2^32 cannot be written',
  )
  t.equal(
    codeOf(() => encodeEvent({ ...withBody({}), signature: new Uint8Array(63) } as LedgerEvent)),
    'DECODE_FIELD',
    'signature of 63 bytes is never written',
  )
  t.equal(
    codeOf(() => encodeEvent({ ...withBody({}), links: [] } as LedgerEvent)),
    'DECODE_SHAPE',
    'authorize without its link is never written',
  )

  const policy = (body: Record<string, unknown>): boolean => {
    const u = f.policy(f.l0, f.l0, {}, T0 + 10, false).event
    try {
      encodeEvent({ ...u, body: { ...u.body, ...body } } as LedgerEvent)
      return true
    } catch (e) {
      if (!isKinError(e)) throw e
      return false
    }
  }
  const rule = { action: 'unlock', roles: ['guest'], from: 0, to: 86400 }
  t.ok(policy({ anchors: Array.from({ length: 16 }, () => new Uint8Array(10)) }), '16 anchors')
  t.notOk(policy({ anchors: Array.from({ length: 17 }, () => new Uint8Array(10)) }), '17 anchors')
  t.ok(policy({ rules: Array.from({ length: 32 }, () => rule) }), '32 rules')
  t.notOk(policy({ rules: Array.from({ length: 33 }, () => rule) }), '33 rules')
  t.notOk(policy({ rules: [{ ...rule, to: 86401 }] }), 'window end past 86400')
  t.notOk(policy({ rules: [{ ...rule, action: 'a'.repeat(33) }] }), 'action of 33 bytes')
  t.notOk(policy({ maxHops: 65 }), 'maxHops 65')
  t.ok(policy({ maxHops: 64 }), 'maxHops 64')
})

t.test('decoding: the limit of 4096 bytes per event is exact', async t => {
  const f = LedgerFleet.create({ tag: 'oversize' })
  const u = f.policy(f.l0, f.l0, {}, T0 + 10, false).event
  const top = decodeCbor(encodeEvent(u)) as CborValue[]
  // Pad with an over-long action text until the event is exactly at and just over the limit; the limit check comes first.
  const sized = (n: number): Uint8Array => {
    for (let len = 0; len < 5000; len++) {
      const body = [...(top[6] as CborValue[])]
      body[4] = [['a'.repeat(len), [], 0, 0]]
      const bytes = encodeCbor([...top.slice(0, 6), body, top[7]!])
      if (bytes.length === n) return bytes
    }
    throw new Error(`no event of ${n} bytes`)
  }
  t.equal(
    codeOf(() => decodeEvent(sized(MAX_EVENT_BYTES))),
    'DECODE_FIELD',
    '4096 bytes: read, then the 32-byte action limit refuses it',
  )
  t.equal(
    codeOf(() => decodeEvent(sized(MAX_EVENT_BYTES + 1))),
    'DECODE_OVERSIZE',
    '4097 bytes: refused before parsing',
  )
})

t.test('per-device size: authorize + certified of a device with a 12-character name', async t => {
  let pair = 0
  for (const ev of sizes.events) {
    const bytes = fromHex(ev.bytes)
    t.equal(bytes.length, ev.total, `${ev.type}: total`)
    t.equal(
      ev.fields.reduce((n: number, x: { bytes: number }) => n + x.bytes, 0),
      ev.total,
      `${ev.type}: the breakdown sums to the total`,
    )
    const e = decodeEvent(bytes)
    t.equal(e.type, ev.type)
    if (e.type === 'authorize') t.equal(utf8(e.body.name).length, 12)
    pair += bytes.length
  }
  t.equal(pair, sizes.pairTotal)
  // Recompute the pair from a fresh fleet: the sizes do not depend on the keys or the tag.
  const f = LedgerFleet.create({ tag: 'size-check' })
  const lap = f.enroll(f.l0, { role: 'admin', name: 'laptop', time: T0 + 100 })
  const dev = f.enroll(lap, { role: 'device', kind: 'lock', name: 'back-door-22', time: T0 + 200 })
  const mine = f.events.filter(e => e.event.type !== 'genesis' && f.subjectCn(e) === dev)
  t.equal(
    mine.reduce((n, e) => n + e.bytes.length, 0),
    sizes.pairTotal,
    'any 12-character device name costs the same',
  )
  const doc = readFileSync(new URL('../../docs/PROTOCOL.md', import.meta.url), 'utf8')
  t.match(doc, new RegExp(`\\*\\*${sizes.pairTotal} bytes\\*\\*`), 'docs/PROTOCOL.md states the measured pair size')
})

t.test('readable JSON form round-trips every vector', async t => {
  for (const v of encodings.vectors) {
    const { signature: _signature, ...unsignedFields } = v.fields as { [k: string]: Json }
    t.same(eventToJson(unsignedFromJson(v.fields)), unsignedFields, v.name)
  }
})
