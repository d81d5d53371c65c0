/** @module Ledger file appends per second with fsync: sequential and group-committed, against raw writeSync+fsyncSync. */
import { closeSync, fdatasyncSync, fsyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { nodeStorage } from '../runtime/node/storage.ts'
import { LedgerStore } from '../agent/ledger/store.ts'
import { encodeCbor } from '../agent/codec/cbor.ts'

const RECORD_BYTES = 250
const MAX_OPS = 2000
const BATCH = 64
// Each measurement stops at MAX_OPS or this many milliseconds, whichever comes first (slow disks, SD cards).
const MAX_MS = 5000

/** A record shaped like an authorize event, padded (in its name) to exactly `size` bytes. */
function recordOf(size: number, i: number): Uint8Array {
  const fill = (n: number, v: number): Uint8Array => new Uint8Array(n).fill((v + i) & 0xff)
  const build = (kind: string, name: string): Uint8Array =>
    encodeCbor([
      1,
      1,
      fill(10, 1),
      fill(10, 2),
      [fill(32, 3)],
      1_800_000_000 + i,
      [fill(32, 4), fill(32, 5), fill(12, 6), 1_900_000_000, 2, 0, kind, name],
      fill(64, 7),
    ])
  // A text head grows by a byte at 24 characters, so some sizes need the slack of a second field.
  for (const kind of ['lock', 'locks']) {
    for (let n = Math.max(0, size - build(kind, '').length); n >= 0; n--) {
      const r = build(kind, 'n'.repeat(n))
      if (r.length === size) return r
    }
  }
  throw new Error(`no bench record of exactly ${size} bytes`)
}

function perSecond(ops: number, ms: number): number {
  return Math.round(ops / (ms / 1000))
}

/** Raw baseline: writeSync of `group` records then one fsyncSync (or fdatasyncSync), repeated; ops per second and ops done. */
function rawBaseline(
  path: string,
  records: Uint8Array[],
  group: number,
  sync = fsyncSync,
): { ops: number; opsPerSec: number } {
  const fd = openSync(path, 'a', 0o644)
  const start = performance.now()
  let ops = 0
  try {
    while (ops < records.length && performance.now() - start < MAX_MS) {
      const n = Math.min(group, records.length - ops)
      for (let k = 0; k < n; k++) writeSync(fd, records[ops + k]!)
      sync(fd)
      ops += n
    }
  } finally {
    closeSync(fd)
  }
  return { ops, opsPerSec: perSecond(ops, performance.now() - start) }
}

async function storeAppends(
  dir: string,
  records: Uint8Array[],
  batch: number,
): Promise<{ ops: number; opsPerSec: number }> {
  const { store } = await LedgerStore.open(await nodeStorage(dir).openAppendFile(`ledger-${batch}.cbor`))
  const start = performance.now()
  let ops = 0
  try {
    while (ops < records.length && performance.now() - start < MAX_MS) {
      const n = Math.min(batch, records.length - ops)
      if (n === 1) await store.append(records[ops]!)
      else await Promise.all(records.slice(ops, ops + n).map(r => store.append(r)))
      ops += n
    }
  } finally {
    await store.close()
  }
  return { ops, opsPerSec: perSecond(ops, performance.now() - start) }
}

/** Appends per second through LedgerStore on node storage, each acknowledged only after fdatasync. */
export async function run(emit: (row: object) => void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kin-store-bench-'))
  try {
    const records: Uint8Array[] = []
    for (let i = 0; i < MAX_OPS; i++) records.push(recordOf(RECORD_BYTES, i))

    const seq = await storeAppends(dir, records, 1)
    const seqBase = rawBaseline(join(dir, 'raw-seq.cbor'), records, 1)
    // The store syncs with fdatasync (data and size, not timestamps): the like-for-like raw figure.
    const seqData = rawBaseline(join(dir, 'raw-seq-data.cbor'), records, 1, fdatasyncSync)
    emit({
      bench: 'store.append',
      mode: 'sequential',
      recordBytes: RECORD_BYTES,
      ops: seq.ops,
      opsPerSec: seq.opsPerSec,
      baselineOps: seqBase.ops,
      baselineOpsPerSec: seqBase.opsPerSec,
      baseline: 'writeSync+fsyncSync per record',
      baselineDatasyncOpsPerSec: seqData.opsPerSec,
    })

    const grouped = await storeAppends(dir, records, BATCH)
    const batchBase = rawBaseline(join(dir, 'raw-batch.cbor'), records, BATCH)
    emit({
      bench: 'store.append',
      mode: `concurrent-${BATCH}`,
      recordBytes: RECORD_BYTES,
      ops: grouped.ops,
      opsPerSec: grouped.opsPerSec,
      baselineOps: seqBase.ops,
      baselineOpsPerSec: seqBase.opsPerSec,
      baseline: 'writeSync+fsyncSync per record',
      baselineDatasyncOpsPerSec: seqData.opsPerSec,
      rawBatchOpsPerSec: batchBase.opsPerSec,
      rawBatch: `${BATCH} writeSync then one fsyncSync`,
    })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run(row => process.stdout.write(JSON.stringify(row) + '\n'))
}
