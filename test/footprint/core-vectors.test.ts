// dist/kin-core.js on V8 against the project's shared vectors: every event encoding, every refusal code of the codec
// and of ingest validation, and the proof-bundle vectors. kin-core carries its own CBOR (rollup.config.mjs
// agent/codec/cbor-lite.js), so these are where it has to give the very answers agent/ gives.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { decodeEvent as agentDecodeEvent } from '../../agent/ledger/event.ts'
import { isKinError } from '../../agent/errors.ts'
import { ROOT, ensureBuilt } from './_build.ts'

type Core = typeof import('../../agent/core.ts')
const core = (await import(pathToFileURL(await ensureBuilt('kin-core.js')).href)) as Core
const vectors = (file: string) =>
  JSON.parse(readFileSync(join(ROOT, 'test/vectors', file), 'utf8')) as { vectors: Record<string, unknown>[] }
const hex = (h: string) => new Uint8Array(Buffer.from(h, 'hex'))
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex')

function codeOf(run: () => unknown): { code: string; detail?: Record<string, unknown> } {
  try {
    run()
    return { code: 'accepted' }
  } catch (e) {
    return isKinError(e) || (e as { code?: unknown }).code !== undefined
      ? { code: (e as { code: string }).code, detail: (e as { detail?: Record<string, unknown> }).detail }
      : { code: `NOT_A_KIN_ERROR: ${String(e)}` }
  }
}

t.test('encodings: each event decodes as agent/ decodes it, re-encodes to its bytes, and hashes to its id', async t => {
  for (const v of vectors('ledger/encodings.json').vectors as { name: string; bytes: string; id: string }[]) {
    const bytes = hex(v.bytes)
    t.same(core.decodeEvent(bytes), agentDecodeEvent(bytes), `${v.name}: same fields`)
    t.equal(toHex(core.encodeCbor(core.decodeCbor(bytes))), v.bytes, `${v.name}: canonical`)
    t.equal(toHex(core.coreCrypto.sha256(bytes)), v.id, `${v.name}: id`)
  }
})

t.test('refusals: kin-core refuses each vector with its code', async t => {
  let checked = 0
  for (const v of vectors('ledger/refusals.json').vectors as {
    name: string
    code: string
    prefix: string[]
    event: string
    now?: number
    intake?: unknown
  }[]) {
    if (v.code.startsWith('DECODE_') || v.code.startsWith('UNKNOWN_')) {
      t.equal(codeOf(() => core.decodeEvent(hex(v.event))).code, v.code, `${v.name}: decoding`)
      checked++
      continue
    }
    // verifyLedger has no clock of its own to compare event times with (nor the miner's, at intake); those vectors are the agent's to check.
    if (v.now !== undefined || v.intake !== undefined) continue
    const prefix = Buffer.concat(v.prefix.map(h => Buffer.from(h, 'hex')))
    t.equal(codeOf(() => core.verifyLedger(new Uint8Array(prefix))).code, 'accepted', `${v.name}: the prefix verifies`)
    const refused = codeOf(() =>
      core.verifyLedger(new Uint8Array(Buffer.concat([prefix, Buffer.from(v.event, 'hex')]))),
    )
    t.equal(refused.code, 'STORAGE_DAMAGED', `${v.name}: the ledger with it does not verify`)
    t.equal(refused.detail?.['recordCode'], v.code, `${v.name}: ${v.code}`)
    checked++
  }
  t.ok(checked >= 40, `${checked} refusal vectors checked`)
})

t.test('proof bundles: the vectors verify with the expected anchoring, head and events', async t => {
  for (const v of vectors('bundle/bundle.json').vectors as {
    name: string
    now: number
    bundle: string
    anchor: Record<string, string | string[]>
    expect: { anchoring: string; headId: string; eventIds: string[] }
  }[]) {
    const anchor = {
      minerKey: hex(v.anchor['minerKey'] as string),
      genesisId: v.anchor['genesisId'] as string | undefined,
      knownHead:
        v.anchor['knownHead'] === undefined ? undefined : core.decodeHead(hex(v.anchor['knownHead'] as string)),
      consistencyProof: (v.anchor['consistencyProof'] as string[] | undefined)?.map(hex),
    }
    const verified = core.verifyBundle(hex(v.bundle), anchor, Number(v.now))
    t.equal(verified.anchoring, v.expect.anchoring, `${v.name}: anchoring`)
    t.equal(verified.headId, v.expect.headId, `${v.name}: head id`)
    t.same(
      verified.state.log.map(e => e.idHex),
      v.expect.eventIds,
      `${v.name}: events`,
    )
    const damaged = hex(v.bundle)
    damaged[damaged.length - 3]! ^= 1
    t.not(
      codeOf(() => core.verifyBundle(damaged, anchor, Number(v.now))).code,
      'accepted',
      `${v.name}: one flipped bit is refused`,
    )
  }
})

// The compact bundles (version 2) `kin ledger bundle` writes: the same vectors the Node path verifies
// (test/ledger/multiproof.test.ts), with the same anchoring, head and events.
t.test('compact proof bundles (version 2): the vectors verify as on the Node path', async t => {
  const bundles = (
    vectors('bundle/compact.json').vectors as {
      name: string
      kind: string
      now: number
      bytes: string
      anchor: Record<string, string>
      expect: { anchoring: string; headId: string; eventIds: string[] }
    }[]
  ).filter(v => v.kind === 'bundle')
  t.equal(bundles.length, 2, 'a standalone bundle and one negotiated for a known head')
  for (const v of bundles) {
    const anchor = {
      minerKey: hex(v.anchor['minerKey']!),
      genesisId: v.anchor['genesisId'],
      knownHead: v.anchor['knownHead'] === undefined ? undefined : core.decodeHead(hex(v.anchor['knownHead'])),
    }
    const verified = core.verifyBundle(hex(v.bytes), anchor, v.now)
    t.same(
      [verified.anchoring, verified.headId, verified.state.log.map(e => e.idHex)],
      [v.expect.anchoring, v.expect.headId, v.expect.eventIds],
      `${v.name}: anchoring, head and events`,
    )
    const damaged = hex(v.bytes)
    damaged[damaged.length - 3]! ^= 1
    t.not(
      codeOf(() => core.verifyBundle(damaged, anchor, v.now)).code,
      'accepted',
      `${v.name}: one flipped bit is refused`,
    )
  }
})
