/** @module Heap per event per replica, measured: K replicas each catch up a D-device ledger from a miner, as a fleet device's follower does. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { getHeapSnapshot } from 'node:v8'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodeStorage } from '../../runtime/node/storage.ts'
import { sealedMiner } from '../memory-miner.ts'
import { openReplicaFiles, type OpenReplica } from '../../agent/gossip/replica-files.ts'
import { SharedEvents } from '../../agent/ledger/shared-events.ts'
import { buildSyncResponse, encodeSyncResponse } from '../../agent/ledger/sync.ts'
import { LedgerFleet, T0 } from '../ledger-fleet.ts'

/*
 * Usage: node --expose-gc --import tsx sim/fleet/replica-heap.ts [devices=2000] [replicas=8] [--snapshot] [--shared]
 * With --shared the replicas share decoded events and verified pairs (SharedEvents, as kin sim fleet's devices do),
 * and one replica catches up before the measurement, so the figures are what each further replica adds.
 * Prints one JSON line: heap (and external, array buffer) bytes per event per replica after K replicas caught up a
 * ledger of 1 + 2·devices events; with --snapshot, also the heap's self size by constructor for one more replica.
 */

function gcNow(): void {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error('run with node --expose-gc')
  gc()
  gc()
}

function memory(): { heap: number; external: number; arrayBuffers: number; rss: number } {
  gcNow()
  const m = process.memoryUsage()
  return { heap: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, rss: m.rss }
}

interface SnapshotNode {
  type: string
  name: string
  selfSize: number
}

// Self size by (type, constructor name) over a V8 heap snapshot; read from the stream of getHeapSnapshot.
async function heapByConstructor(): Promise<Map<string, { count: number; bytes: number }>> {
  const chunks: string[] = []
  for await (const c of getHeapSnapshot()) chunks.push(String(c))
  const snap = JSON.parse(chunks.join('')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } }
    nodes: number[]
    strings: string[]
  }
  const f = snap.snapshot.meta.node_fields,
    types = snap.snapshot.meta.node_types[0]
  const width = f.length,
    ti = f.indexOf('type'),
    ni = f.indexOf('name'),
    si = f.indexOf('self_size')
  const out = new Map<string, { count: number; bytes: number }>()
  for (let i = 0; i < snap.nodes.length; i += width) {
    const n: SnapshotNode = {
      type: types[snap.nodes[i + ti]!]!,
      name: snap.strings[snap.nodes[i + ni]!]!,
      selfSize: snap.nodes[i + si]!,
    }
    const key = n.type === 'object' || n.type === 'native' ? `${n.type}:${n.name}` : n.type
    const e = out.get(key) ?? { count: 0, bytes: 0 }
    e.count++
    e.bytes += n.selfSize
    out.set(key, e)
  }
  return out
}

async function main(): Promise<void> {
  const args = process.argv.slice(2).filter(a => !a.startsWith('--'))
  const devices = Number(args[0] ?? 2000),
    replicas = Number(args[1] ?? 8)
  const snapshot = process.argv.includes('--snapshot')
  const shared = process.argv.includes('--shared') ? new SharedEvents() : undefined
  const f = LedgerFleet.create({ tag: 'replica-heap', time: T0 })
  const parents = [f.l0]
  for (let i = 0; i < devices; i++) {
    const parent = parents[Math.floor(i / 8)]!
    parents.push(
      f.enroll(parent, {
        role: i < devices / 8 ? 'admin' : 'device',
        kind: 'lock',
        name: `device ${String(i).padStart(5, '0')}`,
      }),
    )
  }
  const { miner } = await sealedMiner(f.secrets.get(f.l0)!, f.events, T0 + 20, { batch: 500 })
  const events = miner.treeSize
  const minerKey = f.ledger.state.genesis!.body.minerKey
  const genesis = f.events[0]!.bytes
  const root = mkdtempSync(join(process.platform === 'linux' ? '/dev/shm' : tmpdir(), 'kin-replica-heap-'))
  const open: OpenReplica[] = []
  // Each replica starts from its genesis (as an enrolled device's home does) and catches up in follower-sized rounds.
  const catchUp = async (i: number): Promise<OpenReplica> => {
    const dir = join(root, `r${i}`)
    const storage = nodeStorage(dir)
    await (await storage.openAppendFile('ledger.cbor')).close()
    writeFileSync(join(dir, 'ledger.cbor'), genesis)
    const r = await openReplicaFiles(nodeCrypto, storage, { events: shared })
    for (let round = 0; round < 10_000; round++) {
      const out = await r.replica.applySyncResponse(
        encodeSyncResponse(buildSyncResponse(miner, r.replica.syncRequest())),
        minerKey,
        T0 + 30,
      )
      if (!out.more) break
    }
    if (r.replica.coveredSize !== events)
      throw new Error(`replica ${i} holds ${r.replica.coveredSize} of ${events} events`)
    return r
  }
  try {
    if (shared !== undefined) open.push(await catchUp(replicas + 1))
    const before = memory()
    const t0 = performance.now()
    for (let i = 0; i < replicas; i++) open.push(await catchUp(i))
    const ms = performance.now() - t0
    const after = memory()
    const per = (k: 'heap' | 'external' | 'arrayBuffers' | 'rss') =>
      Math.round((after[k] - before[k]) / (replicas * events))
    const line: Record<string, unknown> = {
      devices,
      events,
      replicas,
      shared: shared !== undefined,
      heapPerEvent: per('heap'),
      externalPerEvent: per('external'),
      arrayBuffersPerEvent: per('arrayBuffers'),
      rssPerEvent: per('rss'),
      catchUpMsPerReplica: Math.round(ms / replicas),
      node: process.version,
    }
    if (snapshot) {
      const base = await heapByConstructor()
      open.push(await catchUp(replicas))
      gcNow()
      const more = await heapByConstructor()
      const rows = [...more]
        .map(([k, v]) => ({
          k,
          count: v.count - (base.get(k)?.count ?? 0),
          bytes: v.bytes - (base.get(k)?.bytes ?? 0),
        }))
        .filter(r => r.bytes > 0)
        .sort((a, b) => b.bytes - a.bytes)
        .slice(0, 16)
      line['oneReplicaByConstructor'] = rows.map(r => ({
        what: r.k,
        perEvent: +(r.bytes / events).toFixed(1),
        countPerEvent: +(r.count / events).toFixed(2),
      }))
    }
    process.stdout.write(JSON.stringify(line) + '\n')
  } finally {
    for (const r of open) await r.close()
    await miner.close()
    rmSync(root, { recursive: true, force: true })
  }
}

await main()
