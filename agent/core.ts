/** @module kin-core: the engine-neutral verifier a small engine runs — ledgers, Merkle proofs, proof bundles, X.509 chains and access decisions, in standard ECMAScript. */
/*
 * The API (dist/kin-core.js exports exactly these; docs/DEVICES.md shows them in use):
 *   verifyLedger(fileBytes)                          → LedgerState         a whole ledger file, every event verified
 *   verifyBundle(bundleBytes, anchor, now, options?) → VerifiedBundle      one CN's proof bundle against the miner key
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
 */
import { DecodeError, KinError, VerificationError } from './errors.ts'
import { bytesEqual, toHex } from './codec/bytes.ts'
import type { Clock, CryptoProvider } from './ports/platform.ts'
import type { TlsSigning } from './ports/signing.ts'
import { portableCrypto } from './portable/crypto.ts'
import { scanRecords } from './ledger/store.ts'
import { replayRecords } from './ledger/persistent.ts'
import type { LedgerState } from './ledger/state.ts'
import { Ledger } from './ledger/ledger.ts'
import { decodeHead } from './ledger/head.ts'
import {
  verifyAuditPathBundle as verifyBundleWith,
  type BundleAnchor,
  type BundleSignatures,
  type BundleVerifyOptions,
  type VerifiedBundle,
} from './ledger/bundle.ts'
import { SignatureCache } from './ledger/signature-cache.ts'
import { decodeCbor, encodeCbor, type CborValue } from './codec/cbor.ts'
import { decodeEvent } from './ledger/event.ts'
import { verifyConsistency as verifyConsistencyWith, verifyInclusion as verifyInclusionWith } from './ledger/merkle.ts'
import { checkPublicKeyParameters } from './pki/key-parameters.ts'
import { oidText } from './pki/extensions.ts'
import { DerCertificate } from './pki/certificate-read.ts'
import { verifyChainOf, type ChainCertificate, type ChainInfo } from './pki/chain.ts'
import type { PkiProvider } from './ports/pki.ts'
import { certificateSignatureValid, signatureByKeyValid, type SignatureVerifier } from './pki/verifier.ts'
import { createPortableVerifier } from './pki/portable-verifier.ts'
import { verifyRsaSha256 } from './pki/rsa-verify.ts'
import { verifyEcdsaP256Sha256 } from './pki/ecdsa-verify.ts'
import { decide as decideWith, isMissingProof } from './access/decide.ts'
import { ChallengeVerifier } from './access/challenge.ts'
import { ChainCache } from './access/chain-cache.ts'
import type { Decision, LocalPolicy, VerifiedChain } from './access/types.ts'

export type {
  Decision,
  LocalPolicy,
  VerifiedChain,
  ChainInfo,
  ChainCertificate,
  SignatureVerifier,
  LedgerState,
  BundleAnchor,
  BundleSignatures,
  BundleVerifyOptions,
  VerifiedBundle,
  CborValue,
}
export {
  KinError,
  DecodeError,
  VerificationError,
  oidText,
  verifyRsaSha256,
  verifyEcdsaP256Sha256,
  isMissingProof,
  decodeHead,
  decodeEvent,
  ChainCache,
  SignatureCache,
  decodeCbor,
  encodeCbor,
}

/*
 * X.509 here is agent/pki's: one certificate reader on strict DER (pki/certificate-read.ts, no node-forge, which is
 * several times kin-core's size budget on its own), the chain rules (pki/chain.ts) and the portable verifier (BigInt
 * RSA, @noble/curves P-256). test/footprint/core-x509.test.ts holds kin-core to the node verifier on the same inputs.
 */

/** The crypto kin-core runs on: tweetnacl Ed25519 and @noble/hashes SHA-256. It verifies; it never needs randomness. */
export const coreCrypto: CryptoProvider = portableCrypto

// ---- ledgers and Merkle proofs ---------------------------------------------------------------------------------

/**
 * Verifies a whole ledger file (a CBOR sequence of events, as `ledger.cbor` holds it): every event's encoding,
 * signature and rules, in order. A torn tail (an interrupted append) is ignored, as the agent does on open; a
 * damaged or refused record throws KinError STORAGE_DAMAGED with its offset.
 */
export function verifyLedger(fileBytes: Uint8Array): LedgerState {
  const { records } = scanRecords(fileBytes)
  return replayRecords(coreCrypto, records).state
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

// ---- proof bundles ---------------------------------------------------------------------------------------------

/**
 * Verifies one CN's proof bundle (agent/ledger/bundle.ts, version 1: an audit path per event; the compact version 2
 * reader does not fit a 1 MiB heap beside the rest) with kin-core's crypto: the head signed by
 * `anchor.minerKey`, anchored to `anchor.knownHead` when given, every inclusion proof, the genesis the anchor
 * names, and every event validated in a fresh ledger. Throws the KinError of the first check that fails.
 * By default every event's signature is checked; `{ tier: 'bundle', cache }` is the small device's rule (DESIGN.md
 * "Small devices: three tiers"): only genesis, authorize, rekey and policy signatures, each once — verify the device's own
 * bundle at boot with `own: true`, then each peer's with the same cache.
 */
export function verifyBundle(
  bundleBytes: Uint8Array,
  anchor: BundleAnchor,
  now: number,
  options: BundleVerifyOptions = {},
): VerifiedBundle {
  return verifyBundleWith(coreCrypto, bundleBytes, anchor, now, options)
}

/**
 * One verified state from several verified bundles of one fleet — typically the deciding device's own bundle and
 * the one its peer presented — so the lineage stage sees both sides. Events are taken in the miner's order and
 * their signatures are not checked again (verifyBundle did); any event the rules refuse, or that still lacks a
 * link, fails the whole combination with that event's code (fail closed).
 */
export function combineBundles(bundles: readonly VerifiedBundle[]): LedgerState {
  const ledger = new Ledger(coreCrypto)
  const byId = new Map<string, { index: number; bytes: Uint8Array }>()
  for (const b of bundles) {
    for (const entry of b.bundle.entries) {
      const id = toHex(coreCrypto.sha256(entry.eventBytes))
      if (!byId.has(id)) byId.set(id, { index: entry.leafIndex, bytes: entry.eventBytes })
    }
  }
  const ordered = [...byId.values()].sort((a, b) => a.index - b.index).map(e => e.bytes)
  const { refused, pending } = ledger.ingestMany(ordered, { trustSignatures: true })
  if (refused.length > 0) {
    throw new VerificationError(
      refused[0]!.code as KinError['code'],
      `bundles do not combine: ${refused[0]!.message}`,
      { detail: { refused } },
    )
  }
  if (pending.length > 0) {
    throw new VerificationError(
      'BUNDLE_INCOMPLETE',
      `bundles do not combine: ${pending.length} events link to events none of them holds`,
    )
  }
  return ledger.state
}

// ---- X.509 ----------------------------------------------------------------------------------

const CODE = 'CERT_PARSE'

/**
 * A certificate as kin-core takes it: agent/pki's one reader (DerCertificate, strict DER, no node-forge), DER only,
 * with its key checked (RSA_KEY_SIZE, RSA_EXPONENT, EC_CURVE) as it is read and hashed with kin-core's SHA-256.
 */
export class CoreCertificate extends DerCertificate {
  /** Parses certificate DER (RFC 5280 §4.1); KinError CERT_PARSE on anything malformed. */
  constructor(der: Uint8Array) {
    if (!(der instanceof Uint8Array)) throw new DecodeError(CODE, 'certificate must be DER bytes (a Uint8Array)')
    super(der, { sha256: coreCrypto.sha256 })
    // The key's parameters before anything is hashed: in QuickJS, hashing a certificate padded out with a 14 KiB
    // exponent takes half a second, and nothing this reader is for accepts such a key.
    checkPublicKeyParameters(this.layout.spki, `certificate for "${this.cn}"`, CODE)
  }

  /** Parses DER, returning the same object when given a CoreCertificate. */
  static from(input: CoreCertificate | Uint8Array): CoreCertificate {
    return input instanceof CoreCertificate ? input : new CoreCertificate(input)
  }
}

/** kin-core's signature verifier: the portable one (BigInt RSA, @noble/curves P-256) on kin-core's SHA-256. */
export const coreVerifier: SignatureVerifier = createPortableVerifier(coreCrypto.sha256, 'core')

/** A PkiProvider that only verifies: certificate signatures by coreVerifier (no key generation). */
export const corePki: PkiProvider = {
  name: 'core',
  generateTlsKeyPair() {
    return Promise.reject(new KinError('BAD_ARGUMENT', 'kin-core verifies; it does not generate keys'))
  },
  verifySignature: coreVerifier.verifySignature,
  verifyCertificateSignature(certDer, issuerCertDer) {
    return certificateSignatureValid(coreVerifier, certDer, issuerCertDer)
  },
}

/**
 * agent/pki's verifyChain with kin-core's reader: the keys' RSA parameters, the fleet root's signature, validity
 * (leaf and root), key usage and names, in that order; RSA_KEY_SIZE / RSA_EXPONENT, CERT_CHAIN, CERT_EXPIRED /
 * CERT_NOT_YET_VALID, CERT_KEY_USAGE, CERT_OLD_PARENT_MARKER / CERT_NAMES, or CERT_PARSE for unparsable input.
 */
export function verifyCertificateChain(
  certificate: CoreCertificate | Uint8Array,
  root: CoreCertificate | Uint8Array,
  now: number,
): ChainInfo {
  return verifyChainOf(CoreCertificate.from(certificate), CoreCertificate.from(root), now, coreVerifier)
}

// ---- access decisions ------------------------------------------------------------------------------------------

/** One access request: a peer whose possession of the certificate's key was already proven, and an action. */
export interface CoreAccessRequest {
  /** The peer's certificate, DER (or already parsed). */
  certificate: Uint8Array | CoreCertificate
  action: string
}

/** The deciding device: who it is and what it trusts. */
export interface CoreDevice {
  /** Its own CN. */
  self: string
  /** The fleet root certificate, DER; it must be the one the ledger's genesis names (rootCertHash). */
  root: Uint8Array | CoreCertificate
  localPolicy?: LocalPolicy
  /** Time (seconds) of the newest block head this device verified, e.g. a proof bundle's head. */
  lastHeadTime?: number
  /** Remembers verified chains so repeated decisions skip the RSA check. */
  chainCache?: ChainCache
}

/**
 * Decides whether the peer may do `request.action` on `device` (DESIGN.md "Access decision" steps 1–4 and 6),
 * from a verified ledger `state` (verifyLedger, or verifyBundle's result) at `now` (seconds). Never throws: a deny
 * carries its code (CERT_*, ACCESS_*, POLICY_*), and `retry` says whether a fresher ledger could change it.
 */
export function decide(request: CoreAccessRequest, state: LedgerState, now: number, device: CoreDevice): Decision {
  let certificate: CoreCertificate, root: CoreCertificate
  try {
    certificate = CoreCertificate.from(request.certificate)
    root = CoreCertificate.from(device.root)
  } catch (e) {
    const error = e instanceof KinError ? e : new KinError('INTERNAL', String(e))
    return {
      allow: false,
      code: error.code,
      reason: error.message,
      path: [],
      commonAncestor: undefined,
      hops: undefined,
      peer: undefined,
      action: request.action,
      time: now,
      retry: false,
      missing: undefined,
    }
  }
  return decideWith(
    { certificate, action: request.action },
    {
      self: device.self,
      ledger: state,
      now,
      localPolicy: device.localPolicy,
      lastHeadTime: device.lastHeadTime,
      chainCache: device.chainCache,
      verifyChain: (peer, at) => {
        // The ledger pins the fleet root: genesis records its hash, so a root from anywhere else is refused.
        const pinned = state.genesis?.body.rootCertHash
        if (pinned === undefined || !bytesEqual(pinned, root.certHash)) {
          throw new VerificationError('CERT_CHAIN', "the fleet root given is not the one the ledger's genesis names")
        }
        return verifyCertificateChain(peer, root, at)
      },
    },
  )
}

// ---- proof of possession without TLS ----------------------------------------------------------------------------

// kin-core holds no private key: it checks challenge answers, it never signs one.
const coreSigning: TlsSigning = {
  name: 'core',
  sign() {
    throw new KinError('BAD_ARGUMENT', 'kin-core verifies; it signs nothing')
  },
  verify: (spkiDer, message, signature) => signatureByKeyValid(coreVerifier, spkiDer, message, signature),
}

/** What a challenge verifier needs from its device: its CN, a random source for nonces and a clock. */
export interface CoreChallengeOptions {
  self: string
  /** Unpredictable bytes: the device's own generator (kin-core has none; ECMAScript offers none). */
  randomBytes: (length: number) => Uint8Array
  clock: Clock
  /** Seconds an answer may take (default 30). */
  deadline?: number
  /** Open challenges remembered (default 256). */
  capacity?: number
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

/** The chain result type decisions cache, re-exported for callers that pass one in. */
export type CoreVerifiedChain = VerifiedChain
