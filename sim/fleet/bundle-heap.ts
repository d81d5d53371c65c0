/** @module Heap per bundle-tier device, measured: K devices each adopt their own bundle from a miner of a D-device ledger, as a simulated lock does after enrollment. */
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { sealedMiner } from '../memory-miner.ts'
import { buildBundle, encodeBundle } from '../../agent/ledger/bundle.ts'
import { createFleetRoot } from '../../agent/pki/root.ts'
import { LedgerFleet, T0 } from '../ledger-fleet.ts'
import { BundleDevice } from './bundle-device.ts'

/*
 * Usage: node --expose-gc --import tsx sim/fleet/bundle-heap.ts [devices=2000] [bundleDevices=2000]
 * Prints one JSON line: heap bytes per bundle device (its own bundle's bytes, their verified state, its caches) once
 * K of them hold their bundles, with the bundle's size and events; compare replica-heap.ts for a full device.
 */

function gcNow(): void {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error('run with node --expose-gc')
  gc()
  gc()
}

async function main(): Promise<void> {
  const args = process.argv.slice(2)
  const devices = Number(args[0] ?? 2000),
    k = Math.min(Number(args[1] ?? 2000), devices)
  const f = LedgerFleet.create({ tag: 'bundle-heap', time: T0 })
  const parents = [f.l0],
    leaves: string[] = []
  for (let i = 0; i < devices; i++) {
    const parent = parents[Math.floor(i / 8)]!
    const cn = f.enroll(parent, {
      role: i < devices / 8 ? 'admin' : 'device',
      kind: 'lock',
      name: `device ${String(i).padStart(5, '0')}`,
    })
    parents.push(cn)
    if (i >= devices / 8) leaves.push(cn)
  }
  const { miner } = await sealedMiner(f.secrets.get(f.l0)!, f.events, T0 + 20, { batch: 500 })
  const genesis = f.ledger.state.log[0]!
  const keyPair = await nodePki.generateTlsKeyPair()
  const root = await createFleetRoot({ domain: 'heap.home.arpa', keyPair, now: T0 })
  const chosen = Array.from({ length: k }, (_, i) => leaves[i % leaves.length]!)
  const bundles = chosen.map(cn => encodeBundle(buildBundle(miner, cn)))
  const clock = { now: () => T0 + 30 }
  const held: BundleDevice[] = []
  gcNow()
  const before = process.memoryUsage().heapUsed
  const t0 = performance.now()
  chosen.forEach((cn, i) => {
    const d = new BundleDevice({
      label: `B${i}`,
      cn,
      fleet: 'heap_home_arpa',
      minerKey: f.ledger.state.genesis!.body.minerKey,
      genesisId: genesis.idHex,
      root,
      crypto: nodeCrypto,
      pki: nodePki,
      clock,
    })
    d.adoptOwn(bundles[i]!)
    held.push(d)
  })
  const ms = performance.now() - t0
  // The bundle bytes are the devices' own now: drop the measurement's copies before counting.
  bundles.length = 0
  gcNow()
  const after = process.memoryUsage().heapUsed
  const line = {
    devices,
    events: miner.treeSize,
    bundleDevices: k,
    heapPerDevice: Math.round((after - before) / k),
    bundleBytes: Math.round(held.reduce((s, d) => s + d.heldBytes, 0) / k),
    bundleEvents: Math.round(held.reduce((s, d) => s + d.heldEvents, 0) / k),
    bootMsPerDevice: +(ms / k).toFixed(2),
    node: process.version,
  }
  process.stdout.write(JSON.stringify(line) + '\n')
  await miner.close()
}

await main()
