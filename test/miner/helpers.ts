/** @module Shared pieces of the miner tests: a miner and replicas over memory storage, fed by a deterministic LedgerFleet. */
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { memoryStorage, type MemoryStorage } from '../../agent/portable/memory-storage.ts'
import type { CryptoProvider, Storage } from '../../agent/ports/platform.ts'
import { PersistentLedger } from '../../agent/ledger/persistent.ts'
import { Miner } from '../../agent/ledger/miner.ts'
import { Replica } from '../../agent/ledger/replica.ts'
import { KinError } from '../../agent/errors.ts'
import { LedgerFleet, T0 } from '../helpers/ledger-fleet.ts'
import { certifiedEvent } from '../../agent/ledger/builders.ts'

export { T0 }

/**
 * A miner over `ledger.cbor` and `heads.cbor` in `storage`, signing with the fleet's miner key (L0's ledger key).
 * The fleet's history spans hours from T0 and is replayed in one go, so its times are not bounded by the miner's clock
 * unless `boundTimes` says so.
 */
export async function openMiner(
  fleet: LedgerFleet,
  storage: Storage,
  crypto: CryptoProvider = nodeCrypto,
  names = { ledger: 'ledger.cbor', heads: 'heads.cbor' },
  boundTimes = false,
): Promise<Miner> {
  const ledger = await PersistentLedger.open(crypto, await storage.openAppendFile(names.ledger))
  return Miner.open(crypto, ledger, await storage.openAppendFile(names.heads), minerSecret(fleet), { boundTimes })
}

/** A device replica over `ledger.cbor` and `sync.cbor` in `storage`. */
export async function openReplica(
  storage: Storage,
  crypto: CryptoProvider = nodeCrypto,
  minerKey?: Uint8Array,
): Promise<Replica> {
  const ledger = await PersistentLedger.open(crypto, await storage.openAppendFile('ledger.cbor'))
  return Replica.open(crypto, ledger, await storage.openAppendFile('sync.cbor'), { minerKey })
}

/** The miner's secret key in a LedgerFleet: genesis names L0's ledger key as the miner key. */
export function minerSecret(fleet: LedgerFleet): Uint8Array {
  return fleet.secrets.get(fleet.l0)!
}

/** The miner's public key, as genesis names it. */
export function minerKeyOf(fleet: LedgerFleet): Uint8Array {
  return fleet.ledger.state.genesis!.body.minerKey
}

/** A fleet with a laptop (admin) and `phones` members under it, each with a device below it: 1 + 2 + 4·phones events. */
export function wideFleet(
  phones: number,
  tag = 'miner-tests',
): { f: LedgerFleet; laptop: string; members: string[]; devices: string[] } {
  const f = LedgerFleet.create({ tag, time: T0 })
  const laptop = f.enroll(f.l0, { role: 'admin', kind: 'laptop', name: 'laptop', time: T0 + 10 })
  const members: string[] = []
  const devices: string[] = []
  for (let i = 0; i < phones; i++) {
    const m = f.enroll(laptop, { role: 'member', name: `phone ${i}`, time: T0 + 20 + i })
    members.push(m)
    devices.push(f.enroll(m, { role: 'device', kind: 'lock', name: `lock ${i}`, time: T0 + 1000 + i }))
  }
  return { f, laptop, members, devices }
}

/** The KinError code a promise rejects with, 'resolved' when it resolves, 'NOT_A_KIN_ERROR: …' otherwise. */
export async function rejection(p: Promise<unknown>): Promise<string> {
  try {
    await p
    return 'resolved'
  } catch (e) {
    if (e instanceof KinError) return e.code
    return `NOT_A_KIN_ERROR: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`
  }
}

/** Deterministic pseudo-random integers (xorshift32), so batchings differ per seed but never between runs. */
export function prng(seed: number): (n: number) => number {
  let x = (seed * 2654435761) >>> 0 || 1
  return (n: number) => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x % n
  }
}

export { memoryStorage, type MemoryStorage }

/**
 * A chain L0 → chain[1] → … → chain[8] (admins, then a device at depth 8) with noise around it: a sibling at every
 * level, a revoked sibling, a rekey of chain[3] with a new certificate, a policy on chain[2]'s subtree, and
 * `others` unrelated devices, so proofs have realistic length and the bundle must pick its events out.
 */
export function deepFleet(opts: { tag?: string; others?: number; revoke?: number } = {}): {
  f: LedgerFleet
  chain: string[]
  siblings: string[]
} {
  const f = LedgerFleet.create({ tag: opts.tag ?? 'deep-fleet', time: T0 })
  const chain = [f.l0]
  const siblings: string[] = []
  for (let i = 1; i <= 8; i++) {
    const parent = chain[i - 1]!
    siblings.push(f.enroll(parent, { role: 'device', kind: 'camera', name: `camera ${i}`, time: T0 + 100 * i }))
    chain.push(
      f.enroll(parent, {
        role: i < 8 ? 'admin' : 'device',
        kind: i < 8 ? 'laptop' : 'lock',
        name: `level ${i}`,
        time: T0 + 100 * i + 10,
      }),
    )
  }
  f.revoke(chain[1]!, siblings[1]!, { reason: 'lost', time: T0 + 5000 })
  f.rekey(chain[2]!, chain[3]!, T0 + 6000)
  f.sign(certifiedEvent(f.binding(chain[3]!), f.bytes(32), T0 + 6001), chain[3]!)
  f.policy(
    chain[1]!,
    chain[2]!,
    { maxHops: 6, rules: [{ action: 'unlock', roles: ['admin', 'member'], from: 0, to: 86400 }] },
    T0 + 6100,
  )
  for (let i = 0; i < (opts.others ?? 40); i++)
    f.enroll(chain[1]!, { role: 'device', kind: 'sensor', name: `sensor ${i}`, time: T0 + 7000 + i })
  if (opts.revoke !== undefined)
    f.revoke(chain[opts.revoke - 1]!, chain[opts.revoke]!, { reason: 'compromised', time: T0 + 9000, subtree: true })
  return { f, chain, siblings }
}
