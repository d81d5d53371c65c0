/** @module DESIGN.md "Access decision" step 5: a missing proof fetched from the miner or presented by the peer, verified, merged for one retry. */
import { KinError } from '../errors.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { decide } from '../access/decide.ts'
import type { AccessSession } from '../access/session.ts'
import type { Decision } from '../access/types.ts'
import { Ledger } from '../ledger/ledger.ts'
import { mergeBundleInto, verifyBundle, type BundleAnchor, type VerifiedBundle } from '../ledger/bundle.ts'
import type { BlockHead } from '../ledger/head.ts'
import { verifyOfflineProof, type VerifiedOfflineProof } from '../ledger/offline-proof.ts'
import { DeviceCertificate } from '../pki/certificate.ts'

/** Default time the miner has to hand over a missing proof, ms (DESIGN.md "Access decision" step 5). */
export const DEFAULT_PROOF_DEADLINE_MS = 2000
/** Largest bundle a peer may present with its request (a lineage 8 deep is a few KiB). */
export const MAX_PRESENTED_BUNDLE_BYTES = 32 * 1024

/** Where a missing proof may come from. */
export interface ProofSources {
  crypto: CryptoProvider
  /** The fleet's miner key, its genesis and this device's last verified head: what a bundle must agree with. */
  anchor: BundleAnchor
  /** A proof bundle the peer presented with its request. */
  presented?: Uint8Array
  /** An offline proof the peer offered for the head this device stated (`stated`). */
  offered?: Uint8Array
  /** The head this device stated at the start of the exchange (undefined: it stated none). */
  stated?: BlockHead | undefined
  /** Asks the miner for `cn`'s bundle (LedgerFollower.requestBundle, or fetchBundle on a short session). */
  fetch?: (cn: string, deadlineMs: number) => Promise<Uint8Array>
  /** How long the miner has (default DEFAULT_PROOF_DEADLINE_MS). */
  deadlineMs?: number
}

/** What the proof step did, for the answer line and the audit. */
export interface ProofReport {
  source: 'offered' | 'presented' | 'miner'
  /** ok: verified and merged; refused: it did not verify; unavailable: the miner did not hand one over. */
  outcome: 'ok' | 'refused' | 'unavailable'
  code: string | undefined
  message: string | undefined
  anchoring: VerifiedBundle['anchoring'] | VerifiedOfflineProof['anchoring'] | undefined
  headHeight: number | undefined
  headTime: number | undefined
  /** Bundle events the device's ledger lacked. */
  merged: number
}

/** A decision and, when the first one lacked a proof, what the proof step did. */
export interface ProvedDecision {
  decision: Decision
  /** The decision before the proof step, when there was one. */
  first: Decision | undefined
  proof: ProofReport | undefined
}

function report(
  source: ProofReport['source'],
  outcome: ProofReport['outcome'],
  extra: Partial<ProofReport> = {},
): ProofReport {
  return {
    source,
    outcome,
    code: undefined,
    message: undefined,
    anchoring: undefined,
    headHeight: undefined,
    headTime: undefined,
    merged: 0,
    ...extra,
  }
}

function withReason(d: Decision, code: Decision['code'], reason: string): Decision {
  return { ...d, allow: false, code, reason, retry: false }
}

/**
 * Decides once more on the session's ledger merged with a verified bundle (a throw-away copy: the device's own
 * ledger is untouched, and every revocation it knows still applies). The bundle's head time counts as a verified
 * head for policy maxHeadAge when it is newer than the device's own.
 */
export async function decideWithBundle(
  session: AccessSession,
  certificate: Uint8Array | DeviceCertificate,
  action: string,
  verified: VerifiedBundle,
): Promise<{ decision: Decision; merged: number }> {
  const now = session.now()
  const context = session.context(now)
  const copy = new Ledger(verified.ledger.crypto)
  copy.ingestMany(context.ledger.log, { trustSignatures: true })
  const merged = await mergeBundleInto(copy, verified)
  const parsed = certificate instanceof DeviceCertificate ? certificate : session.certificate(certificate)
  const lastHeadTime = Math.max(context.lastHeadTime ?? 0, verified.head.time)
  return {
    decision: decide({ certificate: parsed, action }, { ...context, ledger: copy.state, lastHeadTime }),
    merged: merged.accepted.length,
  }
}

/** Decides on a copy of the session's ledger with a verified offline proof's events merged (the copy verifyOfflineProof made). */
export function decideWithOfflineProof(
  session: AccessSession,
  certificate: Uint8Array | DeviceCertificate,
  action: string,
  verified: VerifiedOfflineProof,
): Decision {
  const context = session.context(session.now())
  const parsed = certificate instanceof DeviceCertificate ? certificate : session.certificate(certificate)
  const lastHeadTime = Math.max(context.lastHeadTime ?? 0, verified.head.time)
  return decide({ certificate: parsed, action }, { ...context, ledger: verified.state, lastHeadTime })
}

/**
 * DESIGN.md "Access decision" step 5 with an offline proof the peer offered for the head this device stated: verified against that head and this
 * device's ledger (verifyOfflineProof: every refusal coded, fail closed), then decided once more on the merged copy.
 */
function withOfferedProof(
  session: AccessSession,
  certificate: Uint8Array | DeviceCertificate,
  action: string,
  sources: ProofSources,
  first: Decision,
  offered: Uint8Array,
): ProvedDecision {
  let verified: VerifiedOfflineProof
  try {
    verified = verifyOfflineProof(
      sources.crypto,
      offered,
      { minerKey: sources.anchor.minerKey, knownHead: sources.stated, ledger: session.context().ledger },
      session.now(),
    )
  } catch (err) {
    if (!(err instanceof KinError)) throw err
    const message = `the offered proof does not verify: ${err.message}`
    return {
      decision: withReason(first, err.code, message),
      first,
      proof: report('offered', 'refused', { code: err.code, message: err.message }),
    }
  }
  const decision = decideWithOfflineProof(session, certificate, action, verified)
  return {
    decision,
    first,
    proof: report('offered', 'ok', {
      anchoring: verified.anchoring,
      headHeight: verified.head.height,
      headTime: verified.head.time,
      merged: verified.added.length,
    }),
  }
}

/**
 * The access decision with step 5 (DESIGN.md "Access decision"): decide; when the answer is a retryable deny
 * (ACCESS_MISSING_PROOF and ledger lags), take the bundle the peer presented — or, without one, ask the miner for
 * the peer's bundle within the deadline — verify it against the anchor; an offline proof the peer offered for this
 * device's stated head goes first and alone (withOfferedProof) (the miner key, the genesis, this device's
 * head: a bundle whose head contradicts it is refused), and decide once more with it merged. A presented bundle
 * that does not verify is a deny with its code; no bundle at all leaves the first deny in force (fail closed).
 * Never throws for a refusal.
 */
export async function decideWithProofs(
  session: AccessSession,
  certificate: Uint8Array | DeviceCertificate,
  action: string,
  sources: ProofSources,
): Promise<ProvedDecision> {
  const first = session.decide(certificate, action)
  if (first.allow || !first.retry) return { decision: first, first: undefined, proof: undefined }
  if (sources.offered !== undefined)
    return withOfferedProof(session, certificate, action, sources, first, sources.offered)
  const cn = first.peer ?? first.missing
  let bytes = sources.presented
  const source: ProofReport['source'] = bytes !== undefined ? 'presented' : 'miner'
  if (bytes === undefined) {
    if (sources.fetch === undefined || cn === undefined) {
      return {
        decision: first,
        first,
        proof: report('miner', 'unavailable', {
          code: first.code,
          message: 'no link to the miner and no bundle presented',
        }),
      }
    }
    const deadlineMs = sources.deadlineMs ?? DEFAULT_PROOF_DEADLINE_MS
    try {
      bytes = await sources.fetch(cn, deadlineMs)
    } catch (err) {
      const code = err instanceof KinError ? err.code : 'INTERNAL'
      const message = (err as Error)?.message ?? String(err)
      return {
        decision: withReason(
          first,
          first.code,
          `${first.reason}; the miner did not hand over a proof within ${deadlineMs} ms (${code}: ${message})`,
        ),
        first,
        proof: report('miner', 'unavailable', { code, message }),
      }
    }
  }
  if (source === 'presented' && bytes.length > MAX_PRESENTED_BUNDLE_BYTES) {
    const message = `the presented proof bundle is ${bytes.length} bytes, over the limit of ${MAX_PRESENTED_BUNDLE_BYTES}`
    return {
      decision: withReason(first, 'DECODE_OVERSIZE', message),
      first,
      proof: report(source, 'refused', { code: 'DECODE_OVERSIZE', message }),
    }
  }
  let verified: VerifiedBundle
  try {
    verified = verifyBundle(sources.crypto, bytes, sources.anchor, session.now())
  } catch (err) {
    if (!(err instanceof KinError)) throw err
    const message = `the ${source === 'presented' ? 'presented' : "miner's"} proof bundle does not verify: ${err.message}`
    return {
      decision: withReason(first, err.code, message),
      first,
      proof: report(source, 'refused', { code: err.code, message: err.message }),
    }
  }
  const retried = await decideWithBundle(session, certificate, action, verified)
  return {
    decision: retried.decision,
    first,
    proof: report(source, 'ok', {
      anchoring: verified.anchoring,
      headHeight: verified.head.height,
      headTime: verified.head.time,
      merged: retried.merged,
    }),
  }
}
