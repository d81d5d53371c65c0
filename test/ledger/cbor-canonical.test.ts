// decodeCbor checks deterministic encoding (RFC 8949 §4.2.1) on the bytes, in one pass. It used to re-encode what it
// decoded and compare. Here the two rules are held to each other: they must accept exactly the same bytes, and
// refuse with the same code.
import t, { type Test } from 'tap'
import fc from 'fast-check'
import { Decoder } from 'cbor-x'
import { decodeCbor, encodeCbor, type CborValue } from '../../agent/codec/cbor.ts'
import { DecodeError, isKinError } from '../../agent/errors.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { houseFleet } from '../helpers/ledger-fleet.ts'
import { item } from '../helpers/cbor-items.ts'

const cborx = new Decoder({ useRecords: false, mapsAsObjects: false })

/** The rule by re-encoding: decode with cbor-x, then the bytes must equal the canonical encoding of the value. */
function byReencoding(bytes: Uint8Array): CborValue {
  if (bytes.length === 0) throw new DecodeError('DECODE_CBOR', 'empty input')
  let value: unknown
  try {
    value = cborx.decode(bytes)
  } catch (e) {
    throw new DecodeError(/end of buffer not reached/.test(String(e)) ? 'DECODE_TRAILING' : 'DECODE_CBOR', String(e))
  }
  const again = encodeCbor(value as CborValue) // its value checks throw the codes decodeCbor's do
  if (Buffer.compare(Buffer.from(again), Buffer.from(bytes)) !== 0)
    throw new DecodeError('DECODE_NONCANONICAL', 'differs from its re-encoding')
  return decodeCbor(again)
}

function outcome(decode: (b: Uint8Array) => CborValue, bytes: Uint8Array): string {
  try {
    return `ok ${JSON.stringify(decode(bytes), (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v))}`
  } catch (e) {
    return isKinError(e) ? (e as { code: string }).code : `NOT_A_KIN_ERROR: ${String(e)}`
  }
}

function compare(
  t: Test,
  label: string,
  inputs: Iterable<Uint8Array>,
): { cases: number; accepted: number; nonCanonical: number } {
  let cases = 0,
    accepted = 0,
    nonCanonical = 0,
    mismatches = 0
  for (const bytes of inputs) {
    cases++
    const scan = outcome(decodeCbor, bytes),
      ref = outcome(byReencoding, bytes)
    if (scan !== ref) {
      if (mismatches++ < 10)
        t.fail(
          `${label}: ${Buffer.from(bytes).toString('hex')}: scan ${scan.slice(0, 80)} vs re-encoding ${ref.slice(0, 80)}`,
        )
      continue
    }
    if (scan.startsWith('ok ')) accepted++
    if (scan === 'DECODE_NONCANONICAL') nonCanonical++
  }
  t.equal(mismatches, 0, `${label}: ${cases} inputs judged alike`)
  return { cases, accepted, nonCanonical }
}

const { f } = houseFleet('cbor-canonical')
const events = f.ledger.state.log.map(e => e.bytes)

t.test('real events, and every bit flip, truncation and extension of three of them', async t => {
  const inputs: Uint8Array[] = [...events]
  for (const e of events.slice(0, 3)) {
    for (let i = 0; i < e.length; i++)
      for (let bit = 0; bit < 8; bit++) {
        const d = e.slice()
        d[i]! ^= 1 << bit
        inputs.push(d)
      }
    for (let n = 1; n < e.length; n++) inputs.push(e.subarray(0, n))
    inputs.push(Uint8Array.from([...e, 0]))
  }
  const r = compare(t, 'events', inputs)
  t.ok(r.accepted >= events.length, `${r.accepted} accepted`)
  t.ok(r.nonCanonical > 50, `${r.nonCanonical} refused as non-canonical`)
})

t.test('well-formed CBOR of every major type, canonical or not', async t => {
  const r = compare(
    t,
    'items',
    fc.sample(item(3), { numRuns: 8000, seed: 4221 }).map(b => Uint8Array.from(b)),
  )
  t.ok(
    r.accepted > 500 && r.nonCanonical > 500,
    `${r.accepted} accepted, ${r.nonCanonical} non-canonical of ${r.cases}`,
  )
})

t.test('text strings: well-formed UTF-8 and every kind of malformed sequence (RFC 3629)', async t => {
  const texts = fc
    .sample(fc.string({ unit: 'binary', maxLength: 30 }), { numRuns: 2000, seed: 3629 })
    .map(s => Buffer.from(s, 'utf8'))
  const bad = [
    [0xc0, 0x80],
    [0xc1, 0xbf],
    [0xe0, 0x80, 0x80],
    [0xed, 0xa0, 0x80],
    [0xed, 0xbf, 0xbf],
    [0xf0, 0x80, 0x80, 0x80],
    [0xf4, 0x90, 0x80, 0x80],
    [0xf5, 0x80, 0x80, 0x80],
    [0xe2, 0x82],
    [0xff],
    [0x80],
    [0x61, 0xc3],
    [0xc3, 0x28],
    [0xe2, 0x28, 0xa1],
    [0xf0, 0x9f, 0x98],
  ].map(b => Buffer.from(b))
  const random = Array.from({ length: 3000 }, (_, i) => Buffer.from(nodeCrypto.randomBytes(1 + (i % 6))))
  const inputs = [...texts, ...bad, ...random].map(b =>
    Uint8Array.from([...(b.length < 24 ? [0x60 | b.length] : [0x78, b.length]), ...b]),
  )
  const r = compare(t, 'text', inputs)
  t.ok(r.accepted >= texts.length && r.nonCanonical >= bad.length, `${r.accepted} accepted, ${r.nonCanonical} refused`)
})

t.test('random bytes', async t => {
  compare(
    t,
    'random',
    Array.from({ length: 6000 }, (_, i) => nodeCrypto.randomBytes(1 + (i % 64))),
  )
})

t.test('deep nesting is refused from the heads, before the recursive decoder runs out of stack', async t => {
  const nested = (depth: number, inner: number[]) => Uint8Array.from([...new Array(depth).fill(0x81), ...inner])
  t.same(decodeCbor(nested(8, [0x00])), [[[[[[[[0]]]]]]]], 'an item at depth 8 is still in reach')
  for (const [what, bytes] of [
    ['an item at depth 9', nested(9, [0x00])],
    ['an empty array at depth 9', nested(9, [0x80])],
    ['100 000 nested arrays', nested(100_000, [0x00])],
    ['nested arrays with a byte string beside them', Uint8Array.from([0x82, 0x43, 1, 2, 3, ...nested(9, [0x00])])],
    ['5 000 nested indefinite-length arrays', Uint8Array.from(new Array(5_000).fill(0x9f))],
    ['nested one-entry maps', Uint8Array.from([...new Array(50_000).fill(0xa1).flatMap(m => [m, 0x00]), 0x00, 0x00])],
  ] as const) {
    try {
      decodeCbor(bytes)
      t.fail(`${what}: decoded`)
    } catch (e) {
      t.ok(isKinError(e, 'DECODE_SHAPE'), `${what}: ${(e as Error).message}`)
      t.match((e as Error).message, /nesting deeper than 8/, what)
    }
  }
})
