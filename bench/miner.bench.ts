/** @module Miner figures: ingest (submit batches + seal, node storage with fsync) against native Ed25519 verification (one core, and all cores), proof-bundle sizes. */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { nodeStorage } from '../runtime/node/storage.ts'
import { toHex } from '../agent/codec/bytes.ts'
import { signingInput } from '../agent/ledger/event.ts'
import { PersistentLedger } from '../agent/ledger/persistent.ts'
import { Miner } from '../agent/ledger/miner.ts'
import { buildBundle, encodeBundle } from '../agent/ledger/bundle.ts'
import { buildSyncResponse, encodeSyncResponse } from '../agent/ledger/sync.ts'
import { deepFleet } from '../test/miner/helpers.ts'
import { SEAL_INTERVAL_MS } from '../broker/miner-service.ts'
import type { LedgerFleet } from '../test/helpers/ledger-fleet.ts'

/** Runs of each configuration; the row reports the median and every run. */
const REPEATS = 5
/** Events per submission: MAX_SUBMISSION_EVENTS. */
const BATCH = 256
/** Enrolled devices besides the depth-8 chain: two events each. */
const OTHERS = 5000

function cpuMs(): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

/**
 * The miner's floor: native Ed25519 verification of every event of the fleet once, with its issuer's key, messages
 * prepared beforehand. Keys go through the provider as the miner's do (a certified event is the first use of its
 * signer's key, so key import is part of the floor). Wall and CPU rates, since a shared machine skews wall time.
 */
function verifyRate(f: LedgerFleet): { perSec: number; perCpuSec: number } {
  const state = f.ledger.state
  const work = f.events.slice(1).map(e => ({
    sig: e.event.signature,
    msg: signingInput(e.event),
    key: state.bindingById(toHex(e.event.links[0]!))!.ledgerKey,
  }))
  const start = performance.now()
  const c0 = cpuMs()
  for (const w of work) if (!nodeCrypto.ed25519Verify(w.sig, w.msg, w.key)) throw new Error('verify failed')
  const wall = performance.now() - start,
    cpu = cpuMs() - c0
  return { perSec: Math.round(work.length / (wall / 1000)), perCpuSec: Math.round(work.length / (cpu / 1000)) }
}

/**
 * The same verifications with every core at work: all in flight on node:crypto's thread pool (the miner checks a
 * submission's signatures this way, agent/ledger/precheck.ts), wall rate.
 */
async function poolVerifyRate(f: LedgerFleet): Promise<number> {
  const state = f.ledger.state
  const work = f.events.slice(1).map(e => ({
    sig: e.event.signature,
    msg: signingInput(e.event),
    key: state.bindingById(toHex(e.event.links[0]!))!.ledgerKey,
  }))
  const start = performance.now()
  const ok = await Promise.all(work.map(w => nodeCrypto.ed25519VerifyAsync!(w.sig, w.msg, w.key)))
  if (ok.includes(false)) throw new Error('verify failed')
  return Math.round(work.length / ((performance.now() - start) / 1000))
}

/**
 * Feeds every event of `f` to a fresh miner on disk as the broker's miner service does: submissions of up to
 * BATCH events from `inFlight` submitters at once (the next goes as soon as one is answered, parents before
 * children), and a seal at least every SEAL_INTERVAL_MS while something is unsealed, then a last one.
 */
async function ingest(
  f: LedgerFleet,
  dir: string,
  inFlight: number,
): Promise<{ ms: number; cpu: number; heads: number; miner: Miner }> {
  const storage = nodeStorage(dir)
  const ledger = await PersistentLedger.open(nodeCrypto, await storage.openAppendFile('ledger.cbor'))
  const miner = await Miner.open(nodeCrypto, ledger, await storage.openAppendFile('heads.cbor'), f.secrets.get(f.l0)!, {
    boundTimes: false,
  })
  const batches: Uint8Array[][] = []
  for (let i = 0; i < f.events.length; i += BATCH) batches.push(f.events.slice(i, i + BATCH).map(e => e.bytes))
  const now = f.events[f.events.length - 1]!.event.time + 60
  let heads = 0
  let sealing: Promise<void> = Promise.resolve()
  const seal = (): Promise<void> =>
    (sealing = sealing.then(async () => {
      if ((await miner.seal(now)) !== undefined) heads++
    }))
  const start = performance.now()
  const c0 = cpuMs()
  const timer = setInterval(() => {
    void seal()
  }, SEAL_INTERVAL_MS)
  try {
    let next = 0
    const submitter = async (): Promise<void> => {
      while (next < batches.length) {
        const r = await miner.submit(batches[next++]!, now)
        if (r.refused.length + r.pending.length > 0)
          throw new Error(`refused: ${JSON.stringify(r.refused[0] ?? r.pending[0]?.idHex)}`)
      }
    }
    await Promise.all(Array.from({ length: inFlight }, submitter))
  } finally {
    clearInterval(timer)
  }
  await seal()
  return { ms: performance.now() - start, cpu: cpuMs() - c0, heads, miner }
}

export async function run(emit: (row: object) => void): Promise<void> {
  const t0 = performance.now()
  const { f, chain } = deepFleet({ tag: 'miner-bench', others: OTHERS })
  const events = f.events.length
  emit({ bench: 'miner.fleet', events, devices: OTHERS + 16, buildMs: Math.round(performance.now() - t0) })

  const dir = await mkdtemp(join(tmpdir(), 'kin-miner-bench-'))
  try {
    for (const inFlight of [1, 8]) {
      // The verification rates are measured right before each run, on the same machine state, as the goal compares
      // them; REPEATS runs each, since one run of a few seconds on a shared machine says little.
      const rows: Record<string, number>[] = []
      let run: Awaited<ReturnType<typeof ingest>> | undefined
      for (let r = 0; r < REPEATS; r++) {
        if (run !== undefined) await run.miner.close()
        const verify = verifyRate(f)
        const pool = await poolVerifyRate(f)
        run = await ingest(f, join(dir, `run-${inFlight}-${r}`), inFlight)
        const eventsPerSec = Math.round(events / (run.ms / 1000))
        const eventsPerCpuSec = Math.round(events / (run.cpu / 1000))
        rows.push({
          ms: Math.round(run.ms),
          heads: run.heads,
          eventsPerSec,
          ed25519VerifyPerSec: verify.perSec,
          ratio: +(eventsPerSec / verify.perSec).toFixed(3),
          ed25519VerifyPoolPerSec: pool,
          poolRatio: +(eventsPerSec / pool).toFixed(3),
          eventsPerCpuSec,
          ed25519VerifyPerCpuSec: verify.perCpuSec,
          cpuRatio: +(eventsPerCpuSec / verify.perCpuSec).toFixed(3),
        })
      }
      const median = (k: string): number => rows.map(x => x[k]!).sort((a, b) => a - b)[Math.floor(rows.length / 2)]!
      emit({
        bench: 'miner.ingest',
        provider: 'node',
        storage: 'node (fdatasync)',
        events,
        batch: BATCH,
        inFlight,
        repeats: REPEATS,
        goal: 0.8,
        median: {
          eventsPerSec: median('eventsPerSec'),
          ed25519VerifyPerSec: median('ed25519VerifyPerSec'),
          ratio: median('ratio'),
          poolRatio: median('poolRatio'),
          cpuRatio: median('cpuRatio'),
        },
        ratios: rows.map(x => x.ratio),
        runs: rows,
      })
      if (inFlight === 8) {
        const miner = run!.miner
        for (const depth of [2, 4, 8]) {
          const bundle = buildBundle(miner, chain[depth]!)
          const bytes = encodeBundle(bundle)
          const hashes = bundle.entries.reduce((n, e) => n + e.proof.length, 0)
          const eventBytes = bundle.entries.reduce((n, e) => n + e.eventBytes.length, 0)
          emit({
            bench: 'miner.bundleSize',
            depth,
            logSize: miner.treeSize,
            entries: bundle.entries.length,
            bytes: bytes.length,
            eventBytes,
            proofHashes: hashes,
            proofBytes: hashes * 32,
          })
        }
        const t1 = performance.now()
        let rounds = 0,
          request = { fromTreeSize: 0, fromHeadId: undefined as Uint8Array | undefined },
          bytesOut = 0
        for (;;) {
          const r = buildSyncResponse(miner, request)
          bytesOut += encodeSyncResponse(r).length
          rounds++
          if (!r.more) break
          request = { fromTreeSize: r.from + r.events.length, fromHeadId: undefined }
        }
        emit({ bench: 'miner.syncResponses', events, rounds, bytes: bytesOut, ms: Math.round(performance.now() - t1) })
      }
      await run!.miner.close()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run(row => process.stdout.write(JSON.stringify(row) + '\n'))
}
