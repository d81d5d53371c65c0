import t from 'tap'
import fc from 'fast-check'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { portableCrypto } from '../../agent/portable/crypto.ts'
import type { CryptoProvider } from '../../agent/ports/platform.ts'
import { bytesEqual, concatBytes, utf8 } from '../../agent/codec/bytes.ts'
import { decodeCbor, encodeCbor, type CborValue } from '../../agent/codec/cbor.ts'
import { DecodeError, KinError } from '../../agent/errors.ts'
import { decodeEvent, encodeEvent, readEvent, signEvent } from '../../agent/ledger/event.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import {
  EVENT_TYPE,
  ROLE,
  REVOKE_REASON,
  type EventTypeName,
  type LedgerEvent,
  type RoleName,
  type UnsignedEvent,
} from '../../agent/ledger/types.ts'
import { T0, houseFleet } from '../helpers/ledger-fleet.ts'
import { eventToJson } from '../vectors/ledger/fields.ts'

const DECODE_CODES = new Set([
  'DECODE_CBOR',
  'DECODE_TRAILING',
  'DECODE_NONCANONICAL',
  'DECODE_SHAPE',
  'DECODE_FIELD',
  'DECODE_OVERSIZE',
  'UNKNOWN_VERSION',
  'UNKNOWN_TYPE',
])

/** Runs `fn`; returns 'ok', or the code of the KinError it threw; rethrows anything else so the property fails. */
function outcome(fn: () => unknown, decodeOnly: boolean): string {
  try {
    fn()
    return 'ok'
  } catch (e) {
    if (!(e instanceof KinError))
      throw new Error(`a non-KinError escaped: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`, {
        cause: e,
      })
    if (decodeOnly && !(e instanceof DecodeError && DECODE_CODES.has(e.code)))
      throw new Error(`decoding threw ${e.name} ${e.code}`, { cause: e })
    return e.code
  }
}

// ---- a fleet whose every event can be offered to a ledger holding exactly what precedes it ---------------------

const { f, laptop, phone, lock } = houseFleet('fuzz')
f.policy(
  laptop,
  phone,
  {
    rules: [{ action: 'unlock', roles: ['guest', 'member'], from: 3600, to: 7200 }],
    anchors: [f.events[1]!.event.subject],
  },
  T0 + 400,
)
f.revoke(phone, lock, { reason: 'lost', effective: T0 + 600, time: T0 + 500 })
f.rekey(phone, lock, T0 + 700)
const targets = f.events
const ledgersBefore = new Map<CryptoProvider, Ledger[]>()
for (const crypto of [nodeCrypto, portableCrypto]) {
  ledgersBefore.set(
    crypto,
    targets.map((_, i) => {
      const l = new Ledger(crypto)
      for (const e of targets.slice(0, i)) l.ingest(e.bytes)
      return l
    }),
  )
}

t.test('the fuzz fleet holds an event of every type', async t => {
  t.same([...new Set(targets.map(e => e.event.type))].sort(), Object.keys(EVENT_TYPE).sort())
  for (const [i, e] of targets.entries())
    t.equal(
      outcome(() => ledgersBefore.get(nodeCrypto)![i]!.check(e), false),
      'ok',
      `${e.event.type} #${i} is acceptable after its prefix`,
    )
})

// ---- random bytes --------------------------------------------------------------------------------------------

t.test('random bytes: decoding throws only coded DecodeErrors, ingest only KinErrors', async t => {
  const ledger = ledgersBefore.get(nodeCrypto)![targets.length - 1]!
  const size = ledger.size
  const arbitraryBytes = fc.oneof(
    fc.uint8Array({ maxLength: 400 }),
    // An event-like head (array of 8, version 1, a type) followed by noise reaches the field checks.
    fc
      .tuple(fc.nat(7), fc.uint8Array({ maxLength: 300 }))
      .map(([type, rest]) => concatBytes(new Uint8Array([0x88, 0x01, type]), rest)),
  )
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(arbitraryBytes, bytes => {
        outcome(() => decodeEvent(bytes), true)
        outcome(() => readEvent(nodeCrypto, bytes), true)
        if (outcome(() => ledger.ingest(bytes), false) === 'ok') throw new Error('random bytes were accepted')
      }),
      { numRuns: 3000 },
    ),
  )
  t.equal(ledger.size, size, 'nothing was applied')
})

const cborValue: fc.Arbitrary<CborValue> = fc.letrec<{ v: CborValue }>(tie => ({
  v: fc.oneof(
    { arbitrary: fc.oneof(fc.nat(30), fc.nat(300), fc.nat(0xffffffff)), weight: 3 },
    { arbitrary: fc.constantFrom<CborValue>(true, false, null), weight: 1 },
    { arbitrary: fc.uint8Array({ maxLength: 40 }), weight: 3 },
    { arbitrary: fc.constantFrom(10, 12, 32, 64).chain(n => fc.uint8Array({ minLength: n, maxLength: n })), weight: 3 },
    { arbitrary: fc.string({ maxLength: 20 }), weight: 2 },
    { arbitrary: fc.array(tie('v'), { maxLength: 9 }), weight: 2 },
  ),
})).v

t.test(
  'random well-formed CBOR shaped like an event: decodes or is refused with a code; what decodes re-encodes to the same bytes',
  async t => {
    const ledger = ledgersBefore.get(nodeCrypto)![targets.length - 1]!
    const size = ledger.size
    t.doesNotThrow(() =>
      fc.assert(
        fc.property(
          fc.nat(6),
          fc.array(cborValue, { minLength: 6, maxLength: 6 }),
          fc.boolean(),
          (type, rest, versionOne) => {
            let bytes: Uint8Array
            try {
              bytes = encodeCbor([versionOne ? 1 : 2, type, ...rest])
            } catch {
              return
            }
            if (outcome(() => decodeEvent(bytes), true) === 'ok') {
              if (!bytesEqual(encodeEvent(decodeEvent(bytes)), bytes))
                throw new Error('decoded event re-encodes differently')
            }
            if (outcome(() => ledger.ingest(bytes), false) === 'ok') throw new Error('a random event was accepted')
          },
        ),
        { numRuns: 3000 },
      ),
    )
    t.equal(ledger.size, size, 'nothing was applied')
  },
)

// ---- mutated valid events ------------------------------------------------------------------------------------

type Mutation =
  | { kind: 'flip'; bit: number }
  | { kind: 'truncate'; keep: number }
  | { kind: 'append'; byte: number }
  | { kind: 'insert'; at: number; byte: number }
  | { kind: 'swapTop'; i: number; j: number }
  | { kind: 'swapBody'; i: number; j: number }
  | { kind: 'replaceTop'; i: number; value: CborValue }
  | { kind: 'replaceBody'; i: number; value: CborValue }

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('flip' as const), bit: fc.nat() }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('append' as const), byte: fc.nat(255) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), byte: fc.nat(255) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('swapTop' as const), i: fc.nat(7), j: fc.nat(7) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('swapBody' as const), i: fc.nat(7), j: fc.nat(7) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('replaceTop' as const), i: fc.nat(7), value: cborValue }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('replaceBody' as const), i: fc.nat(7), value: cborValue }), weight: 1 },
)

function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  switch (m.kind) {
    case 'flip': {
      const out = Uint8Array.from(bytes)
      const bit = m.bit % (bytes.length * 8)
      out[bit >> 3]! ^= 1 << (bit & 7)
      return out
    }
    case 'truncate':
      return bytes.subarray(0, m.keep % bytes.length)
    case 'append':
      return concatBytes(bytes, new Uint8Array([m.byte]))
    case 'insert': {
      const at = m.at % (bytes.length + 1)
      return concatBytes(bytes.subarray(0, at), new Uint8Array([m.byte]), bytes.subarray(at))
    }
    default: {
      const top = decodeCbor(bytes) as CborValue[]
      const body = top[6] as CborValue[]
      const swap = (xs: CborValue[], i: number, j: number): void => {
        const a = xs[i % xs.length]!
        xs[i % xs.length] = xs[j % xs.length]!
        xs[j % xs.length] = a
      }
      if (m.kind === 'swapTop') swap(top, m.i, m.j)
      if (m.kind === 'swapBody') swap(body, m.i, m.j)
      if (m.kind === 'replaceTop') top[m.i] = m.value
      if (m.kind === 'replaceBody') body[m.i % body.length] = m.value
      return encodeCbor(top)
    }
  }
}

for (const crypto of [nodeCrypto, portableCrypto]) {
  t.test(`${crypto.name}: a mutated valid event is never accepted, and every refusal is a coded KinError`, async t => {
    const counts = new Map<string, number>()
    t.doesNotThrow(() =>
      fc.assert(
        fc.property(fc.nat(targets.length - 1), mutationArb, (index, m) => {
          const original = targets[index]!
          const bytes = mutate(original.bytes, m)
          if (bytesEqual(bytes, original.bytes)) return // a no-op mutation (a swap of equal fields)
          outcome(() => decodeEvent(bytes), true)
          const code = outcome(() => ledgersBefore.get(crypto)![index]!.ingest(bytes), false)
          if (code === 'ok')
            throw new Error(`mutation ${JSON.stringify(m)} of ${original.event.type} #${index} was accepted`)
          counts.set(code, (counts.get(code) ?? 0) + 1)
        }),
        { numRuns: crypto === nodeCrypto ? 4000 : 1500 },
      ),
    )
    for (const [i, l] of ledgersBefore.get(crypto)!.entries()) t.equal(l.size, i, 'no ledger changed')
    t.ok(
      counts.get('BAD_SIGNATURE')! > 0 && [...counts.keys()].some(c => c.startsWith('DECODE_')),
      `refusals seen: ${[...counts].map(([c, n]) => `${c} ${n}`).join(', ')}`,
    )
  })
}

t.test('every single-bit flip of every event is refused (exhaustive, node provider)', async t => {
  let flips = 0
  for (const [index, original] of targets.entries()) {
    const ledger = ledgersBefore.get(nodeCrypto)![index]!
    for (let bit = 0; bit < original.bytes.length * 8; bit++) {
      const code = outcome(() => ledger.ingest(mutate(original.bytes, { kind: 'flip', bit })), false)
      if (code === 'ok') t.fail(`bit ${bit} of ${original.event.type} #${index} flipped and accepted`)
      flips++
    }
  }
  t.ok(flips > 10_000, `${flips} flips refused`)
})

// ---- round trip ----------------------------------------------------------------------------------------------

const bytesOf = (n: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: n, maxLength: n })
const textOf = (maxBytes: number): fc.Arbitrary<string> =>
  fc
    .string({
      unit: fc.oneof(
        fc.constant('a'),
        fc.constant('é'),
        fc.constant('€'),
        fc.constant('🔒'),
        fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
      ),
      maxLength: maxBytes,
    })
    .filter(s => utf8(s).length <= maxBytes && new TextDecoder().decode(utf8(s)) === s)
const u32 = fc.nat(0xffffffff)
const role = fc.constantFrom(...(Object.keys(ROLE) as RoleName[]))

const bodyArb: Record<EventTypeName, fc.Arbitrary<LedgerEvent['body']>> = {
  genesis: fc.record({
    domain: textOf(200),
    rootCertHash: bytesOf(32),
    spkiHash: bytesOf(32),
    ledgerKey: bytesOf(32),
    minerKey: bytesOf(32),
    nonce: fc.uint8Array({ minLength: 12, maxLength: 32 }),
    notAfter: u32,
    name: textOf(64),
  }),
  authorize: fc.record({
    spkiHash: bytesOf(32),
    ledgerKey: bytesOf(32),
    nonce: fc.uint8Array({ minLength: 12, maxLength: 32 }),
    notAfter: u32,
    role,
    depth: fc.nat(15),
    kind: textOf(16),
    name: textOf(64),
  }),
  certified: fc.record({ certHash: bytesOf(32) }),
  revoke: fc.record({
    reason: fc.constantFrom(...(Object.keys(REVOKE_REASON) as Array<keyof typeof REVOKE_REASON>)),
    effective: u32,
    subtree: fc.boolean(),
  }),
  rekey: fc.record({
    spkiHash: bytesOf(32),
    ledgerKey: bytesOf(32),
    nonce: fc.uint8Array({ minLength: 12, maxLength: 32 }),
    notAfter: u32,
  }),
  policy: fc.record({
    subtree: fc.boolean(),
    maxHops: fc.nat(64),
    maxHeadAge: u32,
    anchors: fc.array(bytesOf(10), { maxLength: 16 }),
    rules: fc.array(
      fc.record({
        action: textOf(32),
        roles: fc.array(role, { maxLength: 4 }),
        from: fc.nat(86400),
        to: fc.nat(86400),
      }),
      { maxLength: 32 },
    ),
  }),
}
const LINKS: Record<EventTypeName, number> = { genesis: 0, authorize: 1, certified: 1, revoke: 2, rekey: 2, policy: 2 }

const eventArb: fc.Arbitrary<LedgerEvent> = fc.constantFrom(...(Object.keys(EVENT_TYPE) as EventTypeName[])).chain(
  type =>
    fc.record({
      version: fc.constant(1),
      type: fc.constant(type),
      subject: bytesOf(10),
      issuer: bytesOf(10),
      links: fc.array(bytesOf(32), { minLength: LINKS[type], maxLength: LINKS[type] }),
      time: u32,
      body: bodyArb[type],
      signature: bytesOf(64),
    }) as fc.Arbitrary<LedgerEvent>,
)

t.test('round trip: decodeEvent(encodeEvent(e)) deep-equals e for random events of every type', async t => {
  const seen = new Set<string>()
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(eventArb, e => {
        seen.add(e.type)
        const bytes = encodeEvent(e)
        const back = decodeEvent(bytes)
        if (JSON.stringify(eventToJson(back)) !== JSON.stringify(eventToJson(e)))
          throw new Error(`round trip changed the event: ${JSON.stringify(eventToJson(e))}`)
        if (!bytesEqual(encodeEvent(back), bytes)) throw new Error('re-encoding is not stable')
        const read = readEvent(nodeCrypto, bytes)
        if (!bytesEqual(read.id, portableCrypto.sha256(bytes))) throw new Error('ids differ between providers')
      }),
      { numRuns: 1500 },
    ),
  )
  t.same([...seen].sort(), Object.keys(EVENT_TYPE).sort(), 'every type generated')
})

t.test('round trip through signing: signEvent output decodes to the signed event and verifies', async t => {
  const seed = new Uint8Array(32).fill(5)
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(eventArb, e => {
        const { signature: _s, ...unsigned } = e
        const signed = signEvent(nodeCrypto, unsigned as UnsignedEvent, seed)
        const back = decodeEvent(signed.bytes)
        if (JSON.stringify(eventToJson(back)) !== JSON.stringify(eventToJson(signed.event)))
          throw new Error('signed event does not round-trip')
        const again = signEvent(portableCrypto, unsigned as UnsignedEvent, seed)
        if (again.idHex !== signed.idHex) throw new Error('providers sign differently')
      }),
      { numRuns: 150 },
    ),
  )
})

// ---- validly signed random events ------------------------------------------------------------------------------

t.test('validly signed events with random fields: validation never crashes and the state stays readable', async t => {
  const { f: g, laptop: lap, phone: ph } = houseFleet('fuzz-signed')
  g.enroll(ph, { role: 'guest', name: 'guest', time: T0 + 400 })
  g.enroll(lap, { role: 'admin', depth: 2, name: 'hub', time: T0 + 450 })
  const signers = [...g.secrets.keys()]
  const outcomes = new Map<string, number>()
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(eventArb, fc.nat(), fc.nat(), fc.nat(), fc.nat(3000), (random, who, about, link, dt) => {
        const s = g.ledger.state
        const issuerCn = signers[who % signers.length]!
        const issuer = s.currentBinding(issuerCn)!
        const log = s.log
        const subjectLabel = log[about % log.length]!.event.subject
        const links = random.links.map((l, i) =>
          i === 0 ? s.event(issuer.id)!.id : link % 4 === 0 ? l : log[(link + i) % log.length]!.id,
        )
        const e = {
          ...random,
          subject: random.type === 'genesis' || random.type === 'authorize' ? random.subject : subjectLabel,
          issuer: s.event(issuer.id)!.event.subject,
          links,
          time: T0 + dt,
        }
        const { signature: _s, ...unsigned } = e
        let signed
        try {
          signed = signEvent(nodeCrypto, unsigned as UnsignedEvent, g.secrets.get(issuerCn)!)
        } catch (err) {
          if (err instanceof KinError) return
          throw err
        }
        const code = outcome(() => g.ledger.ingest(signed), false)
        outcomes.set(code, (outcomes.get(code) ?? 0) + 1)
        for (const b of s.bindings.values()) {
          s.invalidAt(b, T0 + dt)
          if (s.lineageOf(b).at(-1)!.id !== s.genesis!.event.idHex)
            throw new Error(`lineage of ${b.cn} does not reach the genesis`)
        }
      }),
      { numRuns: 2000 },
    ),
  )
  t.ok(outcomes.size > 5, `outcomes: ${[...outcomes].map(([c, n]) => `${c} ${n}`).join(', ')}`)
})
