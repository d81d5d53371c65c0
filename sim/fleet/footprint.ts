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

/** Estimated peak JavaScript heap for `devices`, MB. */
export function estimatedHeapMb(devices: number): number {
  return Math.round((HEAP_BYTES_PER_REPLICA_EVENT * devices * 2 * devices) / 2 ** 20) + 100
}

/** Whether this process's heap limit and the machine's memory can hold the fleet; a sentence saying why not. */
export function fitsInMemory(devices: number): { fits: boolean; needMb: number; heapLimitMb: number; machineMb: number; advice: string } {
  const needMb = estimatedHeapMb(devices)
  const heapLimitMb = Math.round(getHeapStatistics().heap_size_limit / 2 ** 20)
  const machineMb = Math.round(totalmem() / 2 ** 20)
  // rss runs ~1.6 times the heap here (TLS sockets, buffers, native keys).
  if (needMb * 1.6 > machineMb) {
    return { fits: false, needMb, heapLimitMb, machineMb, advice: `${devices} devices need about ${needMb} MB of JavaScript heap (every device keeps a whole replica of a ~${2 * devices}-event ledger, so memory grows with N²) and this machine has ${machineMb} MB: run fewer devices in one process` }
  }
  if (needMb * HEAP_HEADROOM > heapLimitMb) {
    const ask = Math.ceil((needMb * HEAP_HEADROOM * 1.05) / 1024) * 1024
    return { fits: false, needMb, heapLimitMb, machineMb, advice: `${devices} devices need about ${needMb} MB of JavaScript heap (every device keeps a whole replica, so memory grows with N²) and this node allows ${heapLimitMb} MB: run it as NODE_OPTIONS=--max-old-space-size=${ask} kin sim fleet …` }
  }
  return { fits: true, needMb, heapLimitMb, machineMb, advice: '' }
}
