/** @module How much memory a fleet of N needs in one process, before it is started: every device keeps a whole replica. */
import { totalmem } from 'node:os'
import { getHeapStatistics } from 'node:v8'

/**
 * JavaScript heap per (device × ledger event), bytes: each device holds a verified replica (the state's maps, a
 * Merkle tree; the decoded events themselves are shared by the devices of the process, shared-events.ts), and a
 * fleet of N has ~2N events, so the heap grows with N². Measured: one further replica holds ~440 bytes per event
 * (`replica-heap.ts 500 4 --shared`; 1,780 without sharing); a whole run adds the devices' sessions and sockets.
 */
export const HEAP_BYTES_PER_REPLICA_EVENT = 700

/** Room the heap needs above the estimate, so the collector does not thrash near the limit. */
const HEAP_HEADROOM = 1.2

/**
 * JavaScript heap of one bundle-tier device (sim/fleet/bundle-device.ts: its own bundle of ~8 events with proofs
 * and head, their decoded and verified state, its signature and chain caches), bytes; it does not grow with N.
 * Measured: 46,086 bytes per device, 2,000 devices over a 4,001-event ledger, 5,407-byte bundles
 * (`node --expose-gc --import tsx sim/fleet/bundle-heap.ts 2000 2000`).
 */
export const HEAP_BYTES_PER_BUNDLE_DEVICE = 46 * 1024

/**
 * Estimated peak JavaScript heap for `devices`, of which `fullDevices` (default: all) keep a whole replica of the
 * ~2N-event ledger and the rest are bundle-tier devices, MB.
 */
export function estimatedHeapMb(devices: number, fullDevices = devices): number {
  return (
    Math.round(
      (HEAP_BYTES_PER_REPLICA_EVENT * fullDevices * 2 * devices +
        HEAP_BYTES_PER_BUNDLE_DEVICE * (devices - fullDevices)) /
        2 ** 20,
    ) + 100
  )
}

/** Whether this process's heap limit and the machine's memory can hold the fleet (`fullDevices` of them full); a sentence saying why not. */
export function fitsInMemory(
  devices: number,
  fullDevices = devices,
): { fits: boolean; needMb: number; heapLimitMb: number; machineMb: number; advice: string } {
  const needMb = estimatedHeapMb(devices, fullDevices)
  const heapLimitMb = Math.round(getHeapStatistics().heap_size_limit / 2 ** 20)
  const machineMb = Math.round(totalmem() / 2 ** 20)
  // rss runs ~1.6 times the heap here (TLS sockets, buffers, native keys).
  if (needMb * 1.6 > machineMb) {
    return {
      fits: false,
      needMb,
      heapLimitMb,
      machineMb,
      advice: `${devices} devices need about ${needMb} MB of JavaScript heap (${fullDevices} full devices each keep a whole replica of a ~${2 * devices}-event ledger, so memory grows with N × full devices) and this machine has ${machineMb} MB: run fewer devices in one process, or fewer full devices (a larger --fanout or a smaller --depth makes fewer inviting devices)`,
    }
  }
  if (needMb * HEAP_HEADROOM > heapLimitMb) {
    const ask = Math.ceil((needMb * HEAP_HEADROOM * 1.05) / 1024) * 1024
    return {
      fits: false,
      needMb,
      heapLimitMb,
      machineMb,
      advice: `${devices} devices need about ${needMb} MB of JavaScript heap (${fullDevices} full devices each keep a whole replica, so memory grows with N × full devices) and this node allows ${heapLimitMb} MB: run it as NODE_OPTIONS=--max-old-space-size=${ask} kin sim fleet …`,
    }
  }
  return { fits: true, needMb, heapLimitMb, machineMb, advice: '' }
}
