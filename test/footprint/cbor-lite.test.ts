// kin-core carries its own small CBOR in place of cbor-x (agent/codec/cbor-lite.js, built in by rollup.config.mjs), under agent/codec/cbor.ts's
// checks. Held here to the agent's cbor-x path on the same bytes: every vector, random bytes, damaged events, random
// well-formed CBOR of every major type, and random values to encode. Both must accept exactly the same bytes, read
// the same values, write the same bytes; refusals may differ only in which DECODE_* code names them.
import t, { type Test } from 'tap'
import fc from 'fast-check'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { decodeCbor, encodeCbor, type CborValue } from '../../agent/codec/cbor.ts'
import { isKinError } from '../../agent/errors.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { houseFleet } from '../helpers/ledger-fleet.ts'
import { item } from '../helpers/cbor-items.ts'
import { ROOT, ensureBuilt } from './_build.ts'

type Core = typeof import('../../agent/core.ts')
const core = (await import(pathToFileURL(await ensureBuilt('kin-core.js')).href)) as Core
const { cborLite, utf8Encoder } = (await import(pathToFileURL(join(ROOT, 'agent/codec/cbor-lite.js')).href)) as {
  cborLite: (textEncoder: unknown) => { Decoder: new () => { decode(b: Uint8Array): unknown } }
  utf8Encoder: () => { TextEncoder: unknown }
}

type Outcome = { ok: true; value: CborValue } | { ok: false; code: string }
function outcome(decode: (b: Uint8Array) => CborValue, bytes: Uint8Array): Outcome {
  try {
    return { ok: true, value: decode(bytes) }
  } catch (e) {
    return {
      ok: false,
      code:
        isKinError(e) || (e as { code?: string })?.code !== undefined
          ? (e as { code: string }).code
          : `NOT_A_KIN_ERROR: ${String(e)}`,
    }
  }
}

interface Tally {
  cases: number
  accepted: number
  codeDiffers: Map<string, number>
}
function compare(t: Test, label: string, inputs: Iterable<Uint8Array>): Tally {
  const tally: Tally = { cases: 0, accepted: 0, codeDiffers: new Map() }
  for (const bytes of inputs) {
    tally.cases++
    const agent = outcome(decodeCbor, bytes),
      kin = outcome(core.decodeCbor, bytes)
    if (agent.ok !== kin.ok) {
      t.fail(
        `${label}: ${Buffer.from(bytes).toString('hex')}: agent ${JSON.stringify(agent)} vs kin-core ${JSON.stringify(kin)}`,
      )
      continue
    }
    if (agent.ok && kin.ok) {
      tally.accepted++
      t.same(kin.value, agent.value, `${label}: same value`)
      continue
    }
    const a = (agent as { code: string }).code,
      k = (kin as { code: string }).code
    if (!k.startsWith('DECODE_')) t.fail(`${label}: kin-core refused ${Buffer.from(bytes).toString('hex')} with ${k}`)
    if (a !== k) tally.codeDiffers.set(`${a} → ${k}`, (tally.codeDiffers.get(`${a} → ${k}`) ?? 0) + 1)
  }
  return tally
}

function hexStrings(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string' && value.length >= 2 && value.length % 2 === 0 && /^[0-9a-f]+$/.test(value))
    out.push(value)
  else if (Array.isArray(value)) for (const v of value) hexStrings(v, out)
  else if (value !== null && typeof value === 'object') for (const v of Object.values(value)) hexStrings(v, out)
  return out
}

const { f } = houseFleet('cbor-lite')
const events = f.ledger.state.log.map(e => e.bytes)

// core-vectors.test.ts checks the refusal codes of the vectors; here every hex field of them, hashes and keys
// included, is just bytes both codecs must judge alike.
t.test('every hex field of the test vectors is accepted by both or refused by both, with the same value', async t => {
  const files = ['ledger/encodings.json', 'ledger/refusals.json', 'bundle/bundle.json']
  const inputs = files
    .flatMap(file => hexStrings(JSON.parse(readFileSync(join(ROOT, 'test/vectors', file), 'utf8'))))
    .map(h => Buffer.from(h, 'hex'))
  const tally = compare(
    t,
    'vectors',
    inputs.map(b => new Uint8Array(b)),
  )
  t.ok(tally.accepted > 20, `${tally.accepted} of ${tally.cases} hex fields are CBOR items both accept`)
  t.comment(`codes that differ: ${JSON.stringify([...tally.codeDiffers])}`)
})

t.test('damaged events: every bit flip of every byte, every truncation, an extra byte', async t => {
  const inputs: Uint8Array[] = []
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
  const tally = compare(t, 'damaged', inputs)
  t.ok(tally.cases > 5000, `${tally.cases} damaged events`)
  t.comment(`codes that differ: ${JSON.stringify([...tally.codeDiffers])}`)
  // Where they differ it is cbor-x's own reading of invalid UTF-8 or of tags (see cborLite); measured: about 1 in 100.
  const differing = [...tally.codeDiffers.values()].reduce((a, b) => a + b, 0)
  t.ok(
    differing <= (tally.cases - tally.accepted) / 20,
    `codes differ for ${differing} of ${tally.cases - tally.accepted} refusals`,
  )
})

t.test('random bytes', async t => {
  const inputs = Array.from({ length: 4000 }, (_, i) => nodeCrypto.randomBytes(1 + (i % 48)))
  const tally = compare(t, 'random', inputs)
  t.comment(`codes that differ: ${JSON.stringify([...tally.codeDiffers])}`)
  t.pass(`${tally.cases} random inputs, ${tally.accepted} accepted by both`)
})

t.test('random well-formed CBOR of every major type', async t => {
  const samples = fc.sample(item(3), { numRuns: 6000, seed: 8949 }).map(b => Uint8Array.from(b))
  const tally = compare(t, 'well-formed', samples)
  t.ok(tally.accepted > 500, `${tally.accepted} of ${tally.cases} items are in kinship's subset and canonical`)
  t.comment(`codes that differ: ${JSON.stringify([...tally.codeDiffers])}`)
})

const subsetValue: fc.Memo<CborValue> = fc.memo(depth => {
  const leaf = fc.oneof(
    fc.nat({ max: 0xffffffff }),
    fc.constantFrom(0, 23, 24, 255, 256, 65535, 65536, 0xffffffff),
    fc.string({ unit: 'binary', maxLength: 20 }),
    fc.string({ unit: 'grapheme', maxLength: 8 }),
    fc.uint8Array({ maxLength: 40 }),
    fc.boolean(),
    fc.constant(null),
  )
  return depth <= 0 ? leaf : fc.oneof(leaf, fc.array(subsetValue(depth - 1), { maxLength: 5 }))
})

t.test("encoding: the same bytes as cbor-x for any value of kinship's subset, and back", async t => {
  fc.assert(
    fc.property(subsetValue(4), value => {
      const agent = encodeCbor(value),
        kin = core.encodeCbor(value)
      if (Buffer.compare(Buffer.from(agent), Buffer.from(kin)) !== 0) return false
      const back = core.decodeCbor(kin)
      return (
        JSON.stringify(back, (_k, v) => (v instanceof Uint8Array ? [...v] : v)) ===
        JSON.stringify(decodeCbor(agent), (_k, v) => (v instanceof Uint8Array ? [...v] : v))
      )
    }),
    { numRuns: 3000, seed: 4221 },
  )
  for (const e of events) t.same(core.encodeCbor(core.decodeCbor(e)), e, 'an event re-encodes to itself')
})

t.test('UTF-8: text that round-trips is read as TextDecoder reads it', async t => {
  const decoder = new (cborLite(utf8Encoder().TextEncoder).Decoder)()
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 30 }), s => {
      const b = Buffer.from(s, 'utf8')
      return (
        decoder.decode(Uint8Array.from([...(b.length < 24 ? [0x60 | b.length] : [0x78, b.length]), ...b])) ===
        new TextDecoder().decode(b)
      )
    }),
    { numRuns: 3000, seed: 3629 },
  )
  // RFC 3629 §3, §10: overlong forms, encoded surrogates, code points past U+10FFFF, cut sequences, stray bytes.
  for (const bad of [
    [0xc0, 0x80],
    [0xed, 0xa0, 0x80],
    [0xf4, 0x90, 0x80, 0x80],
    [0xe2, 0x82],
    [0xff],
    [0x80],
    [0x61, 0xc3],
  ]) {
    const bytes = Uint8Array.from([0x60 | bad.length, ...bad])
    const kin = outcome(core.decodeCbor, bytes),
      agent = outcome(decodeCbor, bytes)
    t.same([kin.ok, agent.ok], [false, false], `${Buffer.from(bad).toString('hex')}: refused by both`)
  }
})
