/**
 * @module The delegated tier's cases, shared by the stand-in (espruino-ledger.test.ts) and the real interpreter
 * (espruino-real.test.ts): a house fleet on the ledger, L0's messages for the lock built by broker/delegated.ts, and
 * one crafted message per refusal, each MACed by L0 unless the MAC is what it breaks.
 */
import { createHash } from 'node:crypto'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import { MerkleTree } from '../../agent/ledger/merkle.ts'
import {
  delegatedKeys,
  encodeDelegatedHead,
  MAX_DELEGATED_BYTES,
  type DelegatedEntry,
} from '../../broker/delegated-wire.ts'
import { delegatedMessages, type DelegatedSource } from '../../broker/delegated.ts'
import { houseFleet, T0, type LedgerFleet } from '../helpers/ledger-fleet.ts'

/** The source L0's service reads, over the first `size` events of `f`'s log (default: all). */
export function sourceOf(f: LedgerFleet, size = f.ledger.state.log.length): DelegatedSource {
  const log = f.ledger.state.log
  const tree = MerkleTree.fromIds(
    nodeCrypto,
    log.map(e => e.id),
  )
  const head = { treeSize: size, root: tree.root(size), time: T0 + 10_000 + size } as DelegatedSource['head']
  return { state: f.ledger.state, tree, head, indexOf: (idHex: string) => log.findIndex(e => e.idHex === idHex) }
}

/** An entry for log event `i` proven against the tree of `size` events. */
export function entryAt(source: DelegatedSource, i: number, size = source.head.treeSize): DelegatedEntry {
  return { leafIndex: i, eventBytes: source.state.log[i]!.bytes, proof: source.tree.inclusionProof(i, size) }
}

/** The fleet and every message of the cases. */
export interface DelegatedCases {
  f: LedgerFleet
  lock: string
  phone: string
  laptop: string
  camera: string
  guest: string
  secret: Uint8Array
  verdictKey: Uint8Array
  ledgerKey: Uint8Array
  /** L0's messages for the lock at the head before any revocation. */
  first: Uint8Array[]
  /** L0's messages after the phone's revocation (not its subtree). */
  phoneRevoked: Uint8Array[]
  /** L0's messages, in a copy of the house at `first`, after the laptop's revocation with its subtree (not the phone's). */
  laptopRevoked: Uint8Array[]
  /** Twelve later heads after `phoneRevoked`, each a tree larger by two events about other devices. */
  later: Uint8Array[][]
  /** L0's messages for the lock in a ledger 10,000 events larger (the proofs of a big fleet), after `phoneRevoked`. */
  deep: Uint8Array[]
  /** Each refusal: the message and the code it must get from a device holding `first`. */
  refusals: { name: string; message: Uint8Array; code: string }[]
  /** The tree size of each head. */
  sizes: { first: number; phoneRevoked: number; laptopRevoked: number }
}

/** Builds the cases (deterministic: the fleet's keys and the secret come from `tag`). */
export function delegatedCases(tag = 'espruino-delegated'): DelegatedCases {
  const { f, laptop, phone, lock } = houseFleet(tag)
  const camera = f.enroll(phone, { role: 'device', kind: 'camera', name: 'camera', time: T0 + 400 })
  const guest = f.enroll(phone, { role: 'guest', kind: 'phone', name: 'guest', time: T0 + 500 })
  f.policy(laptop, phone, {}, T0 + 600)
  const secret = new Uint8Array(createHash('sha256').update(`${tag} secret`).digest())
  const { verdictKey, ledgerKey } = delegatedKeys(secret)
  const first = sourceOf(f)
  const firstMessages = delegatedMessages(first, lock, ledgerKey).messages
  const firstSize = first.head.treeSize

  const cameraAt = f.ledger.state.log.findIndex(
    e => f.ledger.state.cnOfLabel(e.event.subject) === camera && e.event.type === 'authorize',
  )
  const lockAt = f.ledger.state.log.findIndex(
    e => f.ledger.state.cnOfLabel(e.event.subject) === lock && e.event.type === 'authorize',
  )
  const other = nodeCrypto.randomBytes(32)
  const wrongProof = { ...entryAt(first, lockAt), proof: entryAt(first, cameraAt).proof }
  const refusals = [
    {
      name: 'a bad MAC (another key)',
      message: encodeDelegatedHead(other, { ...first.head, entries: [entryAt(first, lockAt)] }),
      code: 'DELEGATED_MAC',
    },
    {
      name: 'a proof for another event',
      message: encodeDelegatedHead(ledgerKey, { ...first.head, entries: [wrongProof] }),
      code: 'DELEGATED_PROOF',
    },
    {
      name: 'an older head',
      message: encodeDelegatedHead(ledgerKey, {
        ...sourceOf(f, firstSize - 1).head,
        entries: [entryAt(sourceOf(f, firstSize - 1), lockAt)],
      }),
      code: 'DELEGATED_HEAD_OLD',
    },
    {
      name: 'another root for the same size',
      message: encodeDelegatedHead(ledgerKey, { ...first.head, root: other, entries: [] }),
      code: 'DELEGATED_HEAD_FORK',
    },
    { name: 'an oversized message', message: oversized(ledgerKey, first), code: 'DELEGATED_OVERSIZE' },
    {
      name: 'an event outside the lineage',
      message: encodeDelegatedHead(ledgerKey, { ...first.head, entries: [entryAt(first, cameraAt)] }),
      code: 'DELEGATED_NOT_LINEAGE',
    },
    { name: 'a message cut short', message: firstMessages[0]!.slice(0, 60), code: 'DELEGATED_FORMAT' },
  ]

  f.revoke(laptop, phone, { subtree: false, time: T0 + 700 })
  const afterPhone = sourceOf(f)
  const phoneRevoked = delegatedMessages(afterPhone, lock, ledgerKey).messages
  // Heads that grow without news for the lock (devices enrolled elsewhere): L0 would not push them, a boot asks.
  const later: Uint8Array[][] = []
  for (let i = 0; i < 12; i++) {
    f.enroll(laptop, { role: 'device', kind: 'sensor', name: `sensor ${i}`, time: T0 + 900 + 10 * i })
    later.push(delegatedMessages(sourceOf(f), lock, ledgerKey).messages)
  }

  // The same house up to the first head (same tag, same events), where L0 revokes the laptop with its subtree instead.
  const g = houseFleet(tag).f
  g.enroll(phone, { role: 'device', kind: 'camera', name: 'camera', time: T0 + 400 })
  g.enroll(phone, { role: 'guest', kind: 'phone', name: 'guest', time: T0 + 500 })
  g.policy(laptop, phone, {}, T0 + 600)
  if (toHex(sourceOf(g).head.root) !== toHex(first.head.root))
    throw new Error('the second house differs from the first')
  g.revoke(g.l0, laptop, { subtree: true, time: T0 + 700 })
  const afterLaptop = sourceOf(g)
  const laptopRevoked = delegatedMessages(afterLaptop, lock, ledgerKey).messages
  // A fleet ledger of 10,000 more events after these: paths of 14 hashes, two entries to a message.
  const fillers = Array.from({ length: 10_000 }, (_, i) => createHash('sha256').update(`${tag} filler ${i}`).digest())
  const deepTree = MerkleTree.fromIds(nodeCrypto, [
    ...f.ledger.state.log.map(e => e.id),
    ...fillers.map(b => new Uint8Array(b)),
  ])
  const deepHead = { treeSize: deepTree.size, root: deepTree.root(), time: T0 + 90_000 } as DelegatedSource['head']
  const deep = delegatedMessages({ ...sourceOf(f), tree: deepTree, head: deepHead }, lock, ledgerKey).messages
  return {
    f,
    lock,
    phone,
    laptop,
    camera,
    guest,
    secret,
    verdictKey,
    ledgerKey,
    first: firstMessages,
    phoneRevoked,
    laptopRevoked,
    later,
    refusals,
    deep,
    sizes: { first: firstSize, phoneRevoked: afterPhone.head.treeSize, laptopRevoked: afterLaptop.head.treeSize },
  }
}

/** A message one byte over the limit whose every other part is well formed (the device must not even MAC it). */
function oversized(ledgerKey: Uint8Array, source: DelegatedSource): Uint8Array {
  const good = encodeDelegatedHead(ledgerKey, { ...source.head, entries: [] })
  const out = new Uint8Array(MAX_DELEGATED_BYTES + 1)
  out.set(good.subarray(0, 42))
  return out
}
