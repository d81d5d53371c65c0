/** @module Proof-bundle attacks on an offline lock over mutual TLS: a changed byte, every byte changed, a bundle from a forked miner, a forged offline proof. */
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { memoryMiner, mineInParts } from '../memory-miner.ts'
import { requestAccess, startAccessEndpoint, type AccessOutcome } from '../../runtime/node/tls-endpoint.ts'
import { AccessSession } from '../../agent/access/session.ts'
import type { Decision } from '../../agent/access/types.ts'
import { decisionOfAnswer } from '../../agent/access/decision.ts'
import { KinError } from '../../agent/errors.ts'
import { decideWithProofs, type ProvedDecision } from '../../agent/gossip/missing-proof.ts'
import { buildBundle, decodeBundle, encodeBundle, verifyBundle, type BundleAnchor } from '../../agent/ledger/bundle.ts'
import { readEvent } from '../../agent/ledger/event.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import { buildOfflineProof } from '../../agent/ledger/offline-proof.ts'
import { encodeOfflineProof } from '../../agent/ledger/proof-encoding.ts'
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

/** Marks a lock-side throw that carried no code, so that the requester can tell it from a coded refusal. */
const NOT_CODED = 'NOT_CODED'

/** Changed bundles in flight at once during the every-byte case (one TLS connection each). */
const FLIP_CONCURRENCY = 16

/**
 * The offline rule of DESIGN.md "Proof bundle": a lock keeps only its own lineage (its own bundle) and the last head
 * it verified; a stranger presents its bundle with its request. Here the lock serves over mutual TLS as `kin serve`
 * does (startAccessEndpoint, each request line decided with decideWithProofs) with no link to L0: its session knows
 * nothing of the guest, so its first decision is ACCESS_MISSING_PROOF and only the bundle in the guest's request
 * line can change it (DESIGN.md "Access decision" step 5). The guest asks as `kin access --bundle` does (requestAccess, its real certificate
 * and key, its own server identity check of the lock first), so proof of possession comes from the TLS handshake.
 * The forged bundles travel the same way, in the guest's request line: what an attacker who swapped the guest's
 * bundle file, or who holds the guest's phone, could send.
 */
export async function bundleAttacks(
  ctx: AttackContext,
  run: AttackRunner,
): Promise<{ flipCodes: Map<string, number> }> {
  const { fleet } = ctx
  await fleet.converge()
  const lock = fleet.device('L3.3'),
    guest = fleet.device('L3.4')
  const lockReplica = lock.replica!.replica
  const knownHead = lockReplica.head!
  const state = lockReplica.ledger.ledger.state
  const anchor: BundleAnchor = {
    minerKey: state.genesis!.body.minerKey,
    genesisId: state.genesis!.event.idHex,
    knownHead,
  }
  const own = verifyBundle(nodeCrypto, encodeBundle(buildBundle(lockReplica, lock.cn)), anchor, fleet.clock.now())
  // The lock as it was when it lost L0: its own lineage and its last verified head, no follower.
  const offline = new AccessSession({
    self: lock.cn,
    root: DeviceCertificate.from(lock.identity.rootPem),
    pki: nodePki,
    sha256: nodeCrypto.sha256,
    clock: fleet.clock,
    ledger: () => own.state,
    lastHeadTime: () => knownHead.time,
  })
  const guestBundle = encodeBundle(buildBundle(guest.replica!.replica, guest.cn, { knownTreeSize: knownHead.treeSize }))
  // The lock's own log of its last decision (the cases that read it ask one at a time).
  let lastProved: ProvedDecision | undefined
  const endpoint = await startAccessEndpoint({
    ...lock.identity,
    session: offline,
    host: '127.0.0.1',
    port: 0,
    // As `kin serve` decides a request line (serve.ts), without `fetch`: an offline lock has no miner to ask.
    decide: async (der, request) => {
      try {
        const proved = await decideWithProofs(offline, der, request.action, {
          crypto: nodeCrypto,
          anchor,
          ...(request.bundle === undefined ? {} : { presented: request.bundle }),
        })
        lastProved = proved
        return proved.decision
      } catch (err) {
        lastProved = undefined
        if (err instanceof KinError) throw err
        return offline.refuse(
          'INTERNAL',
          `${NOT_CODED} ${(err as Error)?.name}: ${(err as Error)?.message}`,
          request.action,
        )
      }
    },
  })
  const ask = async (bundle: Uint8Array): Promise<AccessOutcome> =>
    requestAccess({
      ...guest.identity,
      host: '127.0.0.1',
      port: endpoint.port,
      action: 'unlock',
      bundle,
      checkServer: der => guest.session.checkServer(der),
    })
  const present = async (peer: string, bytes: Uint8Array): Promise<AttackOutcome> => {
    lastProved = undefined
    const { server, answer } = await ask(bytes)
    // The guest is a fleet device with a full replica: its check of the lock passes, or the case shows why not.
    if (answer === undefined)
      return {
        ...decided(peer, 'L3.3', 'unlock', server),
        detail: `the guest refused the lock before asking: ${server.code}: ${server.reason}`,
      }
    const outcome = decided(peer, 'L3.3', 'unlock', decisionOfAnswer(answer))
    const proved = lastProved as ProvedDecision | undefined
    const first =
      proved === undefined
        ? 'the lock logged no proof step'
        : proved.first === undefined
          ? 'the lock decided without the bundle'
          : `without it: ${proved.first.code}`
    return {
      ...outcome,
      detail: `over mutual TLS: ${answer.reason} (${first}; bundle ${proved?.proof?.outcome ?? 'unused'}${proved?.proof?.anchoring ? `, ${proved.proof.anchoring} head` : ''})`,
    }
  }

  try {
    await run.run(
      {
        id: 'bundle-good',
        family: 'bundle',
        kind: 'control',
        attack: "over mutual TLS: the guest's own bundle to a lock keeping only its own lineage",
        expected: ['ALLOW'],
      },
      () => present('L3.4', guestBundle),
    )

    const decoded = decodeBundle(guestBundle)
    const l0State = fleet.l0.ledger.ledger.state
    const authorize = decoded.entries
      .map(e => readEvent(nodeCrypto, e.eventBytes))
      .find(e => e.event.type === 'authorize' && l0State.cnOfLabel(e.event.subject) === guest.cn)!.bytes
    await run.run(
      {
        id: 'bundle-event-byte',
        family: 'bundle',
        kind: 'attack',
        attack: "over mutual TLS: a byte of the guest's authorize event changed in its bundle",
        expected: ['BUNDLE_INCLUSION'],
      },
      async () => {
        // The last byte of the event is in its signature: the event still decodes, its id (and leaf) no longer match.
        const at = offsetOf(guestBundle, authorize) + authorize.length - 1
        return present('Eve', flipped(guestBundle, at))
      },
    )
    await run.run(
      {
        id: 'bundle-head-byte',
        family: 'bundle',
        kind: 'attack',
        attack: "over mutual TLS: a byte of the head's signature changed in the guest's bundle",
        expected: ['HEAD_SIGNATURE'],
      },
      async () => {
        // The head's bytes end with its Ed25519 signature.
        const at = offsetOf(guestBundle, decoded.headBytes) + decoded.headBytes.length - 1
        return present('Eve', flipped(guestBundle, at))
      },
    )
    const codes = new Map<string, number>()
    await run.run(
      {
        id: 'bundle-every-byte',
        family: 'bundle',
        kind: 'attack',
        attack: "over mutual TLS: every byte of the guest's bundle changed, one request each",
        expected: ['REFUSED_ALL'],
      },
      async () => {
        let accepted = 0,
          uncoded = 0
        const changed = (p: number): Uint8Array => flipped(guestBundle, p, p % 2 === 0 ? 0x01 : 0x80)
        // Low bit on even offsets, high bit on odd ones: CBOR heads carry the major type in the high bits. One TLS
        // connection per changed bundle, a few at a time; the code counted is the one in the lock's answer line.
        for (let from = 0; from < guestBundle.length; from += FLIP_CONCURRENCY) {
          const offsets = Array.from(
            { length: Math.min(FLIP_CONCURRENCY, guestBundle.length - from) },
            (_, i) => from + i,
          )
          for (const { server, answer } of await Promise.all(offsets.map(p => ask(changed(p))))) {
            if (answer === undefined)
              throw new KinError(
                'INTERNAL',
                `the guest refused the lock before asking: ${server.code}: ${server.reason}`,
              )
            const code = answer.allow
              ? 'ACCEPTED'
              : answer.code === 'INTERNAL' && answer.reason.includes(NOT_CODED)
                ? NOT_CODED
                : answer.code
            if (code === 'ACCEPTED') accepted++
            if (code === NOT_CODED) uncoded++
            codes.set(code, (codes.get(code) ?? 0) + 1)
          }
        }
        const counts = [...codes]
          .sort((a, b) => b[1] - a[1])
          .map(([c, n]) => `${c} ${n}`)
          .join(', ')
        const actual = accepted > 0 ? 'ACCEPTED' : uncoded > 0 ? 'NOT_CODED' : 'REFUSED_ALL'
        return { actual, detail: `over mutual TLS, ${guestBundle.length} changed bundles, one request each: ${counts}` }
      },
    )

    await run.run(
      {
        id: 'bundle-forked-head',
        family: 'bundle',
        kind: 'attack',
        attack: "over mutual TLS: a forked miner's bundle (real key, the camera's cert hidden)",
        expected: ['HEAD_UNPROVEN', 'HEAD_INCONSISTENT', 'HEAD_FORK', 'HEAD_ROLLBACK'],
      },
      async () => {
        // Not submitAll: the forger's log leaves an event out, and what the fork refuses over it is its own business.
        const fork = await memoryMiner(fleet.device('L0').ledgerSeed)
        try {
          const hidden = l0State.log.find(
            e => e.event.type === 'certified' && l0State.cnOfLabel(e.event.subject) === fleet.cnOf('L3.2'),
          )
          const log = l0State.log.filter(e => e !== hidden)
          await fork.submit(
            log.map(e => e.bytes),
            fleet.clock.now(),
          )
          // The head claims the lock's own head's time, so time alone gives nothing away.
          await fork.seal(knownHead.time)
          // A forked log shorter than the lock's cannot prove consistency from its size: the forger sends none.
          return present(
            'Eve',
            encodeBundle(
              buildBundle(
                fork,
                guest.cn,
                knownHead.treeSize <= fork.treeSize ? { knownTreeSize: knownHead.treeSize } : {},
              ),
            ),
          )
        } finally {
          await fork.close()
        }
      },
    )
    await run.run(
      {
        id: 'bundle-forged-consistency',
        family: 'bundle',
        kind: 'attack',
        attack: 'over mutual TLS: an offline proof for the head the lock stated, its consistency part forged',
        expected: ['HEAD_INCONSISTENT'],
      },
      () => forgedConsistency(ctx, guest.identity, der => guest.session.checkServer(der)),
    )
    return { flipCodes: codes }
  } finally {
    await endpoint.close()
  }
}

/**
 * DESIGN.md "Offline proofs are negotiated": a lock holding the whole log up to the head before the guest enrolled
 * states that head; the guest's honest offline proof (its events since, one shared proof that is also the
 * consistency proof) would admit it. Here the hashes of the lock's own tree in it are changed: the proof no longer
 * folds into the lock's root, and the lock refuses the head as not extending its own.
 */
async function forgedConsistency(
  ctx: AttackContext,
  identity: { certPem: string; keyPem: string; rootPem: string },
  checkServer: (der: Uint8Array) => Decision,
): Promise<AttackOutcome> {
  const { fleet } = ctx
  const lock = fleet.device('L3.3'),
    guest = fleet.device('L3.4')
  const log = fleet.l0.ledger.ledger.state.log
  const split = log.findIndex(
    e => e.event.type === 'authorize' && fleet.l0.ledger.ledger.state.cnOfLabel(e.event.subject) === guest.cn,
  )
  const miner = await memoryMiner(fleet.device('L0').ledgerSeed)
  try {
    const stated = (await mineInParts(miner, log, [split, log.length], fleet.clock.now()))[0]!
    const held = new Ledger(nodeCrypto)
    held.ingestMany(log.slice(0, split), { trustSignatures: true })
    const session = new AccessSession({
      self: lock.cn,
      root: DeviceCertificate.from(lock.identity.rootPem),
      pki: nodePki,
      sha256: nodeCrypto.sha256,
      clock: fleet.clock,
      ledger: () => held.state,
      lastHeadTime: () => stated.time,
    })
    const anchor: BundleAnchor = {
      minerKey: held.state.genesis!.body.minerKey,
      genesisId: held.state.genesis!.event.idHex,
      knownHead: stated,
    }
    const endpoint = await startAccessEndpoint({
      ...lock.identity,
      session,
      host: '127.0.0.1',
      port: 0,
      heldHead: () => stated,
      decide: async (der, request) =>
        (
          await decideWithProofs(session, der, request.action, {
            crypto: nodeCrypto,
            anchor,
            ...(request.proof === undefined
              ? {}
              : { offered: request.proof, stated: request.stated === 'none' ? undefined : request.stated }),
          })
        ).decision,
    })
    try {
      const { server, answer } = await requestAccess({
        ...identity,
        host: '127.0.0.1',
        port: endpoint.port,
        action: 'unlock',
        checkServer,
        proofFor: async statement => {
          const honest = buildOfflineProof(miner, guest.cn, statement)!
          return {
            proof: encodeOfflineProof({
              ...honest,
              proof: [nodeCrypto.sha256(honest.proof[0]!), ...honest.proof.slice(1)],
            }),
          }
        },
      })
      if (answer === undefined)
        return {
          ...decided('Eve', 'L3.3', 'unlock', server),
          detail: `the guest refused the lock before asking: ${server.code}`,
        }
      return {
        ...decided('Eve', 'L3.3', 'unlock', decisionOfAnswer(answer)),
        detail: `over mutual TLS, the lock stating head ${stated.height} (${stated.treeSize} events): ${answer.reason}`,
      }
    } finally {
      await endpoint.close()
    }
  } finally {
    await miner.close()
  }
}
