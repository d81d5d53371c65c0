/** @module Every byte of a real bundle changed, one bundle each: shared by the two bundle-flip test files (split for time). */
import type { Test } from 'tap'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { KinError } from '../../agent/errors.ts'
import { buildBundle, encodeBundle, verifyBundle } from '../../agent/ledger/bundle.ts'
import { T0, deepFleet, memoryStorage, minerKeyOf, openMiner } from './helpers.ts'

const NOW = T0 + 10_000
const { f: deep, chain } = deepFleet()

function codeOf(fn: () => unknown): string {
  try {
    fn()
    return 'accepted'
  } catch (e) {
    return e instanceof KinError
      ? e.code
      : `NOT_A_KIN_ERROR: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`
  }
}

async function sealedMiner() {
  const miner = await openMiner(deep, memoryStorage())
  await miner.submit(
    deep.events.map(e => e.bytes),
    NOW,
  )
  await miner.seal(NOW)
  return { miner }
}

function anchorOf(f: typeof deep) {
  return { minerKey: minerKeyOf(f), genesisId: f.events[0]!.idHex }
}

/** Flips every byte of bundles at each of `depths`, asserting each change is refused with a code. */
export function flipEveryByte(t: Test, depths: number[]): void {
  const DEPTHS = depths
  t.test('one changed byte anywhere in a bundle: refused with a coded error, never accepted', async t => {
    const { miner } = await sealedMiner()
    for (const depth of DEPTHS) {
      const bytes = encodeBundle(buildBundle(miner, chain[depth]!))
      const codes = new Map<string, number>()
      let accepted = 0
      // Every byte, its low bit on even offsets and its high bit on odd ones (CBOR heads carry the major type high).
      for (let p = 0; p < bytes.length; p++) {
        const mask = p % 2 === 0 ? 0x01 : 0x80
        const bad = bytes.slice()
        bad[p]! ^= mask
        const code = codeOf(() => verifyBundle(nodeCrypto, bad, anchorOf(deep), NOW))
        if (code === 'accepted') accepted++
        if (code.startsWith('NOT_A_KIN_ERROR')) t.fail(`depth ${depth}, byte ${p}, mask ${mask}: ${code}`)
        codes.set(code, (codes.get(code) ?? 0) + 1)
      }
      for (let cut = 0; cut < bytes.length; cut += 13) {
        const code = codeOf(() => verifyBundle(nodeCrypto, bytes.subarray(0, cut), anchorOf(deep), NOW))
        if (code === 'accepted' || code.startsWith('NOT_A_KIN_ERROR')) t.fail(`depth ${depth}, cut at ${cut}: ${code}`)
      }
      t.equal(accepted, 0, `depth ${depth}: none of ${bytes.length} changed bundles accepted`)
      t.ok(
        codes.has('BUNDLE_INCLUSION') && codes.has('HEAD_SIGNATURE'),
        `depth ${depth}: ${[...codes].map(([c, n]) => `${c}×${n}`).join(', ')}`,
      )
    }
  })
}
