import t from 'tap'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { portableCrypto } from '../../agent/portable/crypto.ts'
import { readEvent } from '../../agent/ledger/event.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import { VerifiedSignatureSet, anyOf, precheckSignatures } from '../../agent/ledger/precheck.ts'
import { validateEvent, type VerifiedSignatures } from '../../agent/ledger/validate.ts'
import type { CryptoProvider } from '../../agent/ports/platform.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import { codeOf } from '../helpers/ledger-fleet.ts'
import { T0, memoryStorage, openMiner, wideFleet } from '../miner/helpers.ts'

const NOW = T0 + 5000

/** The event with one signature byte flipped (bytes re-read, so its id changes too). */
function forged(e: EncodedEvent): EncodedEvent {
  const bytes = e.bytes.slice()
  bytes[bytes.length - 10]! ^= 0x01
  return readEvent(nodeCrypto, bytes)
}

/** A node provider that counts synchronous verifications. */
function counting(): { crypto: CryptoProvider; syncChecks: () => number } {
  let n = 0
  const crypto: CryptoProvider = {
    ...nodeCrypto,
    ed25519Verify: (s, m, k) => {
      n++
      return nodeCrypto.ed25519Verify(s, m, k)
    },
  }
  return { crypto, syncChecks: () => n }
}

t.test('a whole batch against a ledger holding only genesis: every key is found in the state or the batch', async t => {
  const { f } = wideFleet(5)
  const genesisOnly = new Ledger(nodeCrypto)
  genesisOnly.ingest(f.events[0]!)
  const batch = f.events.slice(1)
  const set = await precheckSignatures(nodeCrypto, genesisOnly.state, batch)
  t.equal(set.size, batch.length, 'all verified ahead')
  for (const e of batch)
    t.ok(
      set.holds(
        e.idHex,
        f.ledger.state.bindingById(e.event.links[0] === undefined ? '' : Buffer.from(e.event.links[0]).toString('hex'))!
          .ledgerKey,
      ),
    )
})

t.test(
  'a forged signature, an unknown issuer and a provider without an async verifier are left to validation',
  async t => {
    const { f } = wideFleet(3)
    const state = f.ledger.state
    const bad = forged(f.events[f.events.length - 1]!)
    const fresh = new Ledger(nodeCrypto)
    fresh.ingest(f.events[0]!)
    // The last event's issuer is bound by an event that is in neither `fresh` nor the batch.
    const orphan = f.events[f.events.length - 1]!
    const set = await precheckSignatures(nodeCrypto, state, [bad])
    t.equal(set.size, 0, 'a bad signature is not recorded')
    t.equal((await precheckSignatures(nodeCrypto, fresh.state, [orphan])).size, 0, 'no key, no check')
    t.equal(portableCrypto.ed25519VerifyAsync, undefined, "the portable provider verifies on the caller's thread only")
    t.equal(
      (await precheckSignatures(portableCrypto, state, f.events.slice(1))).size,
      0,
      'nothing prechecked without an async verifier',
    )
  },
)

t.test('validation skips a check only for the exact (event id, key) pair that verified', async t => {
  const { f } = wideFleet(2)
  const last = f.events[f.events.length - 1]!
  const ledger = new Ledger(nodeCrypto)
  for (const e of f.events.slice(0, -1)) ledger.ingest(e)
  const issuerKey = ledger.state.bindingById(Buffer.from(last.event.links[0]!).toString('hex'))!.ledgerKey
  const bad = forged(last)
  const otherKey = nodeCrypto.ed25519KeyPair().publicKey
  const wrongKey: VerifiedSignatures = {
    holds: (id, k) => id === bad.idHex && Buffer.from(k).equals(Buffer.from(otherKey)),
  }
  t.equal(
    codeOf(() => validateEvent(nodeCrypto, ledger.state, bad, { verified: wrongKey })),
    'BAD_SIGNATURE',
    'a pair under another key does not count',
  )
  const otherId = new VerifiedSignatureSet()
  otherId.add(last.idHex, issuerKey)
  t.equal(
    codeOf(() => validateEvent(nodeCrypto, ledger.state, bad, { verified: otherId })),
    'BAD_SIGNATURE',
    'a pair for another event does not count',
  )
  const { crypto, syncChecks } = counting()
  const real = await precheckSignatures(nodeCrypto, ledger.state, [last])
  validateEvent(crypto, ledger.state, last, { verified: real })
  t.equal(syncChecks(), 0, 'a prechecked signature is not verified again')
  validateEvent(crypto, ledger.state, last, { verified: anyOf([new VerifiedSignatureSet(), otherId]) })
  t.equal(syncChecks(), 0, 'anyOf holds what one of its sets holds')
  validateEvent(crypto, ledger.state, last, {})
  t.equal(syncChecks(), 1, 'without a set the check runs')
})

t.test('the miner: forged events refused, the rest accepted, submissions validated in the order they came', async t => {
  const { f } = wideFleet(12)
  // The first submission's checks are made slow, so later submissions' checks finish first.
  let calls = 0
  const slowFirst: CryptoProvider = {
    ...nodeCrypto,
    ed25519VerifyAsync: async (s, m, k) => {
      if (calls++ < 14) await new Promise(r => setTimeout(r, 100))
      return nodeCrypto.ed25519VerifyAsync!(s, m, k)
    },
  }
  const miner = await openMiner(f, memoryStorage(), slowFirst)
  const events = f.events
  const bad = forged(events[7]!)
  // Parents in the first submission, children in the next ones, all in flight at once: a child must never be
  // reported pending because its submission's checks finished first.
  const first = events.slice(0, 13).map(e => e.bytes)
  const rest = events.slice(13)
  const chunks: Uint8Array[][] = []
  for (let i = 0; i < rest.length; i += 3) chunks.push(rest.slice(i, i + 3).map(e => e.bytes))
  const results = await Promise.all([
    miner.submit([...first, bad.bytes], NOW),
    ...chunks.map(c => miner.submit(c, NOW)),
  ])
  t.same(
    results[0]!.refused.map(r => r.code),
    ['BAD_SIGNATURE'],
    'the forged copy is refused',
  )
  t.equal(
    results.reduce((n, r) => n + r.pending.length, 0),
    0,
    'nothing pending',
  )
  t.equal(
    results.reduce((n, r) => n + r.accepted.length, 0),
    events.length,
    'every genuine event accepted',
  )
  t.equal(miner.treeSize, f.events.length, 'the log holds the fleet')
  await miner.close()
})
