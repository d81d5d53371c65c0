/** @module Ledger figures: event verification native vs portable, 100k-event replay time and memory, bytes per device. */
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { portableCrypto } from '../agent/portable/crypto.ts'
import { verifyEventSignature } from '../agent/ledger/event.ts'
import { Ledger } from '../agent/ledger/ledger.ts'
import { LedgerFleet } from '../test/helpers/ledger-fleet.ts'
import type { EncodedEvent } from '../agent/ledger/types.ts'

/** Repeats `fn` until `minMs` has passed (at most `maxOps` times) and returns ops per second. */
export function rate(fn: () => void, minMs = 1000, maxOps = 1e7): { ops: number; opsPerSec: number } {
  let ops = 0
  const start = performance.now()
  while (ops < maxOps && performance.now() - start < minMs) {
    fn()
    ops++
  }
  return { ops, opsPerSec: Math.round(ops / ((performance.now() - start) / 1000)) }
}

/** A fleet of `devices` enrolled devices (authorize + certified each) in a tree of fanout 8. */
export function buildFleet(devices: number): LedgerFleet {
  const f = LedgerFleet.create({ tag: `bench-${devices}` })
  const parents = [f.l0]
  for (let i = 0; i < devices; i++) {
    const parent = parents[Math.floor(i / 8)]!
    const cn = f.enroll(parent, {
      role: i < devices / 8 ? 'admin' : 'device',
      kind: 'lock',
      name: `device ${String(i).padStart(5, '0')}`,
    })
    parents.push(cn)
  }
  return f
}

export async function run(emit: (row: object) => void): Promise<void> {
  const small = buildFleet(50)
  const events = small.events
  const auth = events.find(e => e.event.type === 'authorize' && e.event.body.name.length === 12)!
  const certified = events.find(e => e.event.type === 'certified')!
  emit({
    bench: 'ledger.bytesPerDevice',
    authorize: auth.bytes.length,
    certified: certified.bytes.length,
    total: auth.bytes.length + certified.bytes.length,
    nameLength: 12,
    target: 350,
  })

  // Event verification: the same signed events checked by each provider, native Ed25519 raw verify as baseline.
  const sample = events.slice(1, 41)
  const keys = sample.map(
    e => small.ledger.state.bindingById(Buffer.from(e.event.links[0]!).toString('hex'))!.ledgerKey,
  )
  for (const provider of [nodeCrypto, portableCrypto]) {
    let i = 0
    const r = rate(
      () => {
        const k = i++ % sample.length
        if (!verifyEventSignature(provider, sample[k]!.event, keys[k]!)) throw new Error('verify failed')
      },
      provider === portableCrypto ? 1500 : 1000,
    )
    emit({ bench: 'ledger.verifyEvent', provider: provider.name, ...r })
  }

  // 100k events: 50k devices. Built once, then replayed from bytes into a fresh ledger (full validation).
  const t0 = performance.now()
  const big = buildFleet(50_000)
  const buildMs = performance.now() - t0
  const records: EncodedEvent[] = big.events
  const bytes = records.reduce((n, e) => n + e.bytes.length, 0)
  if (global.gc) global.gc()
  const heapBefore = process.memoryUsage().heapUsed
  const t1 = performance.now()
  const replay = new Ledger(nodeCrypto)
  for (const e of records) replay.ingest(e.bytes)
  const replayMs = performance.now() - t1
  if (global.gc) global.gc()
  const heapAfter = process.memoryUsage().heapUsed
  emit({
    bench: 'ledger.replay',
    events: replay.size,
    fileBytes: bytes,
    buildMs: Math.round(buildMs),
    replayMs: Math.round(replayMs),
    eventsPerSec: Math.round(replay.size / (replayMs / 1000)),
    heapMiB: +((heapAfter - heapBefore) / 2 ** 20).toFixed(1),
    gc: typeof global.gc === 'function',
  })
  const t2 = performance.now()
  const trusted = new Ledger(nodeCrypto)
  for (const e of records) trusted.ingest(e.bytes, { trustSignatures: true })
  emit({
    bench: 'ledger.replay',
    mode: 'trustSignatures',
    events: trusted.size,
    replayMs: Math.round(performance.now() - t2),
  })
}
