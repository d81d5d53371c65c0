/** @module A process registering one delegated board in L0's home at a given instant (the concurrency test starts several together). */
import { DelegatedRegistry } from '../../broker/delegated.ts'

const [dir, cn, startAt, fill] = process.argv.slice(2) as [string, string, string, string]
const registry = new DelegatedRegistry(dir)
registry.devices()
// Every process starts its read-modify-write at the same millisecond.
while (Date.now() < Number(startAt)) {
  /* spin */
}
registry.register(cn, new Uint8Array(32).fill(Number(fill)))
