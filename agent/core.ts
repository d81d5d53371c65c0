/** @module kin-core: the engine-neutral verifier a small engine runs — ledgers, Merkle proofs, proof bundles, X.509 chains and access decisions, in standard ECMAScript. */
/*
 * The API (dist/kin-core.js exports exactly these; docs/DEVICES.md shows them in use):
 *   verifyLedger(fileBytes)                          → LedgerState         a whole ledger file, every event verified
 *   verifyBundle(bundleBytes, anchor, now, options?) → VerifiedBundle      one CN's proof bundle (version 1 or 2) against the miner key
 *   new SignatureCache(n)                                                   with { tier: 'bundle' }: granting signatures verified once
 *   combineBundles(verifiedBundles)                  → LedgerState         bundles (own and the peer's) as one state
 *   decide(request, state, now, device)              → Decision            the access decision; never throws
 *   challengeVerifier(options).issue(action)         → challenge bytes     proof of possession without TLS, then
 *   decideOnAnswer(verifier, answer, state, now, device) → Decision        the same decision on a verified answer
 *   verifyCertificateChain(cert, root, now)          → ChainInfo           X.509 chain rules without node-forge
 *   verifyInclusion, verifyConsistency, decodeHead, decodeEvent             Merkle proofs, block heads, events (no signature check)
 *   new ChainCache(n)                                                       pass as device.chainCache: warm decisions skip RSA
 *   decodeCbor, encodeCbor                                                  the strict deterministic CBOR of every kinship message
 * Bytes are Uint8Arrays, times are seconds since the epoch, failures are KinErrors with a string `code`.
 * This file only re-exports and binds kin-core's crypto (agent/portable/verify-crypto.ts) into the modules that do the work.
 */
import type { CryptoProvider } from './ports/platform.ts'
import { verifyingCrypto } from './portable/verify-crypto.ts'
import { scanRecords } from './ledger/store.ts'
import { replayRecords } from './ledger/persistent.ts'
import type { LedgerState } from './ledger/state.ts'
import {
  verifyBundle as verifyBundleWith,
  type BundleAnchor,
  type BundleVerifyOptions,
  type VerifiedBundle,
} from './ledger/bundle.ts'
import { combineBundles as combineBundlesWith } from './ledger/bundle-combine.ts'
import { verifyConsistency as verifyConsistencyWith, verifyInclusion as verifyInclusionWith } from './ledger/merkle.ts'
import { decideAs } from './access/decide.ts'
import { ChallengeVerifier } from './access/challenge.ts'
import {
  coreDecider,
  coreSigning,
  type CoreAccessRequest,
  type CoreChallengeOptions,
  type CoreDevice,
} from './access/core-device.ts'
import { CoreCertificate } from './pki/core-reader.ts'
import type { Decision } from './access/types.ts'

export type { Decision, LocalPolicy, VerifiedChain, VerifiedChain as CoreVerifiedChain } from './access/types.ts'
export type { ChainInfo, ChainCertificate } from './pki/chain.ts'
export type { SignatureVerifier } from './pki/verifier.ts'
export type { LedgerState } from './ledger/state.ts'
export type { BundleAnchor, BundleSignatures, BundleVerifyOptions, VerifiedBundle } from './ledger/bundle.ts'
export type { CborValue } from './codec/cbor.ts'
export type { CoreAccessRequest, CoreChallengeOptions, CoreDevice } from './access/core-device.ts'
export { KinError, DecodeError, VerificationError } from './errors.ts'
export { oidText } from './pki/extensions.ts'
export { verifyRsaSha256 } from './pki/rsa-verify.ts'
export { verifyEcdsaP256Sha256 } from './pki/ecdsa-verify.ts'
export { isMissingProof } from './access/decide.ts'
export { decodeHead } from './ledger/head.ts'
export { decodeEvent } from './ledger/event.ts'
export { ChainCache } from './access/chain-cache.ts'
export { SignatureCache } from './ledger/signature-cache.ts'
export { decodeCbor, encodeCbor } from './codec/cbor.ts'
export { CoreCertificate, coreVerifier, corePki, verifyCertificateChain } from './pki/core-reader.ts'

/** The crypto kin-core runs on: Ed25519 verification (portable/ed25519-verify.ts) and @noble/hashes SHA-256; no randomness, no keys. */
export const coreCrypto: CryptoProvider = verifyingCrypto

/**
 * Verifies a whole ledger file (a CBOR sequence of events, as `ledger.cbor` holds it): every event's encoding,
 * signature and rules, in order. A torn tail is ignored, as the agent does on open; a damaged or refused record
 * throws KinError STORAGE_DAMAGED with its offset.
 */
export function verifyLedger(fileBytes: Uint8Array): LedgerState {
  return replayRecords(coreCrypto, scanRecords(fileBytes).records).state
}

/** RFC 9162 §2.1.3.2: whether `proof` shows event id `id` at leaf `index` of the tree of `size` ids whose root is `root`. */
export function verifyInclusion(
  id: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  return verifyInclusionWith(coreCrypto, id, index, size, proof, root)
}

/** RFC 9162 §2.1.4.2: whether `proof` shows the tree of size `m` (root `rootM`) is a prefix of the tree of size `n` (root `rootN`). */
export function verifyConsistency(
  m: number,
  n: number,
  rootM: Uint8Array,
  rootN: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  return verifyConsistencyWith(coreCrypto, m, n, rootM, rootN, proof)
}

/**
 * Verifies one CN's proof bundle (agent/ledger/bundle.ts: version 1, an audit path per event, or the compact
 * version 2 `kin ledger bundle` writes, one shared multi-leaf proof) with kin-core's crypto. Throws the KinError of the first check that fails.
 * By default every event's signature is checked; `{ tier: 'bundle', cache }` is the small device's rule (DESIGN.md
 * "Small devices: three tiers"): verify the device's own bundle at boot with `own: true`, then each peer's with
 * the same cache.
 */
export function verifyBundle(
  bundleBytes: Uint8Array,
  anchor: BundleAnchor,
  now: number,
  options: BundleVerifyOptions = {},
): VerifiedBundle {
  return verifyBundleWith(coreCrypto, bundleBytes, anchor, now, options)
}

/** One verified state from several verified bundles of one fleet (agent/ledger/bundle-combine.ts). */
export function combineBundles(bundles: readonly VerifiedBundle[]): LedgerState {
  return combineBundlesWith(coreCrypto, bundles)
}

/**
 * Decides whether the peer may do `request.action` on `device` (DESIGN.md "Access decision" steps 1–4 and 6), from
 * a verified ledger `state` (verifyLedger, or combineBundles' result) at `now` (seconds), through the one decision
 * recipe (access/decide.ts). Never throws: a deny carries its code, and `retry` says whether a fresher ledger could
 * change it.
 */
export function decide(request: CoreAccessRequest, state: LedgerState, now: number, device: CoreDevice): Decision {
  return decideAs(coreDecider(device, state), request.certificate, request.action, state, now)
}

/**
 * Proof of possession where there is no TLS handshake (agent/access/challenge.ts): `issue(action)` returns a
 * one-time challenge for the peer to sign with its TLS key; decideOnAnswer checks the answer.
 */
export function challengeVerifier(options: CoreChallengeOptions): ChallengeVerifier {
  return new ChallengeVerifier({ ...options, signing: coreSigning })
}

/**
 * Checks a challenge answer (CHALLENGE_UNKNOWN, _REPLAYED, _EXPIRED, CERT_PARSE, CHALLENGE_SIGNATURE, DECODE_*) and,
 * once the peer has proven it holds its certificate's key, takes the same decision as `decide`. Never throws.
 */
export function decideOnAnswer(
  verifier: ChallengeVerifier,
  answerBytes: Uint8Array,
  state: LedgerState,
  now: number,
  device: CoreDevice,
): Decision {
  return verifier.verify(answerBytes, {
    certificate: der => new CoreCertificate(der),
    decide: (certificate, action) => decide({ certificate, action }, state, now, device),
  })
}
