/** @module Proof-bundle attacks on an offline lock: a changed byte, every byte changed, a bundle from a forked miner. */
import { nodeCrypto } from '../../firmware-shims/node/crypto.ts'
import { nodePki } from '../../firmware-shims/node/pki.ts'
import { memoryStorage } from '../../firmware-shims/memory/storage.ts'
import { AccessSession } from '../../agent/access/session.ts'
import { KinError } from '../../agent/errors.ts'
import { decideWithProofs } from '../../agent/gossip/missing-proof.ts'
import { buildBundle, decodeBundle, encodeBundle, verifyBundle, type BundleAnchor } from '../../agent/ledger/bundle.ts'
import { readEvent } from '../../agent/ledger/event.ts'
import { Miner } from '../../agent/ledger/miner.ts'
import { PersistentLedger } from '../../agent/ledger/persistent.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import type { AttackContext } from './house.ts'
import { decided, type AttackRunner } from './runner.ts'
import type { AttackOutcome } from './types.ts'

/** Where `needle` starts in `haystack`; -1 if nowhere. */
function offsetOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer
    return i
  }
  return -1
}

/** A copy of `bytes` with the bits of `mask` flipped at `offset`. */
function flipped(bytes: Uint8Array, offset: number, mask = 0x01): Uint8Array {
  const copy = bytes.slice()
  copy[offset]! ^= mask
  return copy
}

/** Code of a bundle that does not verify, or 'ACCEPTED'. */
function verdictOf(bytes: Uint8Array, anchor: BundleAnchor, now: number): string {
  try {
    verifyBundle(nodeCrypto, bytes, anchor, now)
    return 'ACCEPTED'
  } catch (err) {
    return err instanceof KinError ? err.code : `NOT_CODED ${(err as Error)?.name}`
  }
}

/**
 * The offline rule of DESIGN.md "Proof bundle": a lock keeps only its own lineage (its own bundle) and the last head
 * it verified; a stranger presents its bundle with its request. Here the lock's throw-away session knows nothing
 * of the guest, so its first decision is ACCESS_MISSING_PROOF and only the guest's bundle can change it
 * (decideWithProofs, step 5). The guest's possession of its key is taken as proven (TLS or a challenge).
 */
export async function bundleAttacks(ctx: AttackContext, run: AttackRunner): Promise<{ flipCodes: Map<string, number> }> {
  const { fleet } = ctx
  await fleet.converge()
  const lock = fleet.device('L3.3'), guest = fleet.device('L3.4')
  const lockReplica = lock.replica!.replica
  const knownHead = lockReplica.head!
  const state = lockReplica.ledger.ledger.state
  const anchor: BundleAnchor = { minerKey: state.genesis!.body.minerKey, genesisId: state.genesis!.event.idHex, knownHead }
  const own = verifyBundle(nodeCrypto, encodeBundle(buildBundle(lockReplica, lock.cn)), anchor, fleet.clock.now())
  const offline = new AccessSession({
    self: lock.cn, root: DeviceCertificate.from(lock.identity.rootPem), pki: nodePki, sha256: nodeCrypto.sha256, clock: fleet.clock,
    ledger: () => own.state, lastHeadTime: () => knownHead.time,
  })
  const guestDer = DeviceCertificate.from(guest.identity.certPem).der
  const guestBundle = encodeBundle(buildBundle(guest.replica!.replica, guest.cn, { knownTreeSize: knownHead.treeSize }))
  const present = async (peer: string, bytes: Uint8Array): Promise<AttackOutcome> => {
    const proved = await decideWithProofs(offline, guestDer, 'unlock', { crypto: nodeCrypto, anchor, presented: bytes })
    const outcome = decided(peer, 'L3.3', 'unlock', proved.decision)
    const first = proved.first === undefined ? 'the lock decided without the bundle' : `without it: ${proved.first.code}`
    return { ...outcome, detail: `${proved.decision.reason} (${first}; bundle ${proved.proof?.outcome ?? 'unused'}${proved.proof?.anchoring ? `, ${proved.proof.anchoring} head` : ''})` }
  }

  await run.run({ id: 'bundle-good', family: 'bundle', kind: 'control', attack: "the guest presents its own proof bundle to a lock that keeps only its own lineage", expected: ['ALLOW'] },
    () => present('L3.4', guestBundle))

  const decoded = decodeBundle(guestBundle)
  const l0State = fleet.l0.ledger.ledger.state
  const authorize = decoded.entries.map(e => readEvent(nodeCrypto, e.eventBytes)).find(e => e.event.type === 'authorize' && l0State.cnOfLabel(e.event.subject) === guest.cn)!.bytes
  await run.run({ id: 'bundle-event-byte', family: 'bundle', kind: 'attack', attack: "a byte of the guest's authorize event changed in its bundle", expected: ['BUNDLE_INCLUSION'] }, async () => {
    // The last byte of the event is in its signature: the event still decodes, its id (and leaf) no longer match.
    const at = offsetOf(guestBundle, authorize) + authorize.length - 1
    return present('Eve', flipped(guestBundle, at))
  })
  await run.run({ id: 'bundle-head-byte', family: 'bundle', kind: 'attack', attack: "a byte of the head's signature changed in the guest's bundle", expected: ['HEAD_SIGNATURE'] }, async () => {
    // The head's bytes end with its Ed25519 signature.
    const at = offsetOf(guestBundle, decoded.headBytes) + decoded.headBytes.length - 1
    return present('Eve', flipped(guestBundle, at))
  })
  const codes = new Map<string, number>()
  await run.run({ id: 'bundle-every-byte', family: 'bundle', kind: 'attack', attack: "every byte of the guest's bundle changed, one bundle each", expected: ['REFUSED_ALL'] }, async () => {
    const now = fleet.clock.now()
    let accepted = 0, uncoded = 0
    // Low bit on even offsets, high bit on odd ones: CBOR heads carry the major type in the high bits.
    for (let p = 0; p < guestBundle.length; p++) {
      const code = verdictOf(flipped(guestBundle, p, p % 2 === 0 ? 0x01 : 0x80), anchor, now)
      if (code === 'ACCEPTED') accepted++
      if (code.startsWith('NOT_CODED')) uncoded++
      codes.set(code, (codes.get(code) ?? 0) + 1)
    }
    const counts = [...codes].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(', ')
    const actual = accepted > 0 ? 'ACCEPTED' : uncoded > 0 ? 'NOT_CODED' : 'REFUSED_ALL'
    return { actual, detail: `${guestBundle.length} changed bundles: ${counts}` }
  })

  await run.run({ id: 'bundle-forked-head', family: 'bundle', kind: 'attack', attack: "a bundle signed by a forked miner (real miner key, a log hiding the hall camera's certificate)", expected: ['HEAD_UNPROVEN', 'HEAD_INCONSISTENT', 'HEAD_FORK', 'HEAD_ROLLBACK'] }, async () => {
    const storage = memoryStorage()
    const forkLedger = await PersistentLedger.open(nodeCrypto, await storage.openAppendFile('ledger.cbor'))
    const fork = await Miner.open(nodeCrypto, forkLedger, await storage.openAppendFile('heads.cbor'), fleet.device('L0').ledgerSeed)
    try {
      const hidden = l0State.log.find(e => e.event.type === 'certified' && l0State.cnOfLabel(e.event.subject) === fleet.cnOf('L3.2'))
      const log = l0State.log.filter(e => e !== hidden)
      await fork.submit(log.map(e => e.bytes), fleet.clock.now())
      // The head claims the lock's own head's time, so time alone gives nothing away.
      await fork.seal(knownHead.time)
      return present('Eve', encodeBundle(buildBundle(fork, guest.cn, { knownTreeSize: knownHead.treeSize })))
    } finally {
      await fork.close()
    }
  })
  return { flipCodes: codes }
}
