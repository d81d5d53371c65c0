/** @module Asking the miner for one CN's proof bundle over `ledger/sync/<CN>/{req,resp}`, and verifying what comes back. */
import { KinError, type KinErrorCode } from '../errors.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { verifyBundle, type BundleAnchor, type BundleVerifyOptions, type VerifiedBundle } from '../ledger/bundle.ts'
import type { GossipClient } from './client.ts'
import { decodeLedgerResponse, encodeBundleRequest } from './ledger-wire.ts'
import { fleetTopics } from './topics.ts'

/** What a bundle request needs. */
export interface BundleRequest {
  crypto: CryptoProvider
  fleet: string
  /** This device's CN: the request and the answer travel on its own sync topics. */
  selfCn: string
  /** The CN whose bundle is wanted. */
  cn: string
  /** The miner key and genesis this device trusts, and its last verified head (the bundle must be consistent with it). */
  anchor: BundleAnchor
  /** Seconds since the epoch. */
  now: number
  timeoutMs: number
  /**
   * The tree size the miner proves consistency from (default: the anchor's known head's). A verifier's size other
   * than this device's own: the bundle is then checked for that proof (BUNDLE_KNOWN_SIZE when it lacks it) and
   * anchored by that verifier, not here.
   */
  knownTreeSize?: number
  /** How the answer is verified (default: every signature; a bundle-tier device passes its tier and cache). */
  verify?: BundleVerifyOptions
}

/** A bundle from the miner that verified against this device's anchor. */
export interface FetchedBundle {
  bytes: Uint8Array
  verified: VerifiedBundle
}

// The miner's refusal codes a device can act on; anything else it sends is reported under BUNDLE_INCOMPLETE.
const MINER_CODES: ReadonlySet<string> = new Set<KinErrorCode>([
  'BUNDLE_INCOMPLETE',
  'BUNDLE_KNOWN_SIZE',
  'HEAD_MISSING',
  'PAYLOAD_TOO_LARGE',
  'BAD_ARGUMENT',
])

/**
 * Publishes `['bundle', cn, knownTreeSize]` on this device's request topic and waits (timeoutMs) for the answer
 * naming `cn`: the bundle, verified with verifyBundle against `anchor` (the miner adds a consistency proof from the
 * device's tree size, so a newer head anchors; or from `request.knownTreeSize`, a verifier's), or the miner's coded
 * refusal. The caller must be subscribed to its
 * response topic. Throws BROKER_TIMEOUT when no answer comes, the bundle's own code when it does not verify.
 */
export async function fetchBundle(client: GossipClient, request: BundleRequest): Promise<FetchedBundle> {
  const topics = fleetTopics(request.fleet)
  const { cn } = request
  const answer = client.waitFor(
    topics.syncResp(request.selfCn),
    payload => {
      let reply
      try {
        reply = decodeLedgerResponse(payload)
      } catch {
        // Garbage on our response topic is not an answer to this request; the wait goes on.
        return undefined
      }
      if (reply.kind === 'bundle' && reply.cn === cn) return reply.bundleBytes
      if (reply.kind === 'error' && reply.request === 'bundle' && reply.cn === cn) {
        const code = (MINER_CODES.has(reply.code) ? reply.code : 'BUNDLE_INCOMPLETE') as KinErrorCode
        throw new KinError(code, `the miner has no proof bundle for ${cn}: ${reply.code}: ${reply.message}`, {
          detail: { cn, minerCode: reply.code },
        })
      }
      return undefined
    },
    {
      timeoutMs: request.timeoutMs,
      code: 'BROKER_TIMEOUT',
      message: `the miner did not answer the request for ${cn}'s proof bundle within ${request.timeoutMs} ms`,
    },
  )
  answer.catch(() => undefined)
  // A session lost mid-publish may never acknowledge it: the wait (its deadline, or the session closing) decides.
  const own = request.anchor.knownHead?.treeSize
  const asked = request.knownTreeSize ?? own
  await Promise.race([client.publish(topics.syncReq(request.selfCn), encodeBundleRequest(cn, asked)), answer])
  const bytes = await answer
  if (asked === own)
    return { bytes, verified: verifyBundle(request.crypto, bytes, request.anchor, request.now, request.verify) }
  // Built for another verifier's head: its consistency proof is that verifier's to check; here it must be there.
  const { knownHead: _own, consistencyProof: _proof, ...anchor } = request.anchor
  const verified = verifyBundle(request.crypto, bytes, anchor, request.now, request.verify)
  const head = verified.head
  if (
    asked !== undefined &&
    asked !== 0 &&
    asked !== head.treeSize &&
    verified.bundle.consistency?.treeSize !== asked
  ) {
    throw new KinError(
      'BUNDLE_KNOWN_SIZE',
      `the miner's bundle for ${cn} carries no consistency proof from the ${asked} events asked for`,
      { detail: { cn, knownTreeSize: asked } },
    )
  }
  return { bytes, verified }
}
