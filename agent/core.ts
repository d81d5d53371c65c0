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
import { bytesEqual, concatBytes, fromHex, toHex } from './codec/bytes.ts'
import type { Clock, CryptoProvider } from '../firmware-shims/types.ts'
import type { RsaSigning } from '../firmware-shims/signing.ts'
import { portableCrypto } from '../firmware-shims/portable/crypto.ts'
import { scanRecords } from './ledger/store.ts'
import { replayRecords } from './ledger/persistent.ts'
import type { LedgerState } from './ledger/state.ts'
import { Ledger } from './ledger/ledger.ts'
import { decodeHead } from './ledger/head.ts'
import {
  verifyBundle as verifyBundleWith, type BundleAnchor, type BundleSignatures, type BundleVerifyOptions, type VerifiedBundle,
} from './ledger/bundle.ts'
import { SignatureCache } from './ledger/signature-cache.ts'
import { decodeCbor, encodeCbor, type CborValue } from './codec/cbor.ts'
import { decodeEvent } from './ledger/event.ts'
import { verifyConsistency as verifyConsistencyWith, verifyInclusion as verifyInclusionWith } from './ledger/merkle.ts'
import { parentCnsOf } from './pki/_names.ts'
import { checkPublicKeyParameters, readRsaPublicKey } from './pki/key-parameters.ts'
import { certificateLayout, certificateSignedWithSha256Rsa, type CertificateLayout } from './pki/layout.ts'
import { readTbsFields } from './pki/tbs.ts'

export { oidText } from './pki/tbs.ts'
import { checkIssuedByRoot, checkLeafKeyUsage, checkLeafNames, checkValidity, type ChainInfo } from './pki/chain.ts'
import type { DeviceCertificate } from './pki/certificate.ts'
import type { PkiProvider } from './pki/provider.ts'
import { decide as decideWith, isMissingProof } from './access/decide.ts'
import { ChallengeVerifier } from './access/challenge.ts'
import { ChainCache } from './access/chain-cache.ts'
import type { Decision, LocalPolicy, VerifiedChain } from './access/types.ts'

export type { Decision, LocalPolicy, VerifiedChain, ChainInfo, LedgerState, BundleAnchor, BundleSignatures, BundleVerifyOptions, VerifiedBundle, CborValue }
export { KinError, DecodeError, VerificationError, isMissingProof, decodeHead, decodeEvent, ChainCache, SignatureCache, decodeCbor, encodeCbor }

/*
 * Why this file parses X.509 itself. agent/pki reads certificates through node-forge, which is several times the
 * size budget of kin-core on its own (docs/DEVICES.md). A verifier needs far less: the DER framing (pki/der.ts,
 * pki/layout.ts), the extension readers that are already forge-free (pki/extensions.ts), the chain rules
 * (pki/chain.ts, reused as they are) and one RSASSA-PKCS1-v1_5 verification, done here with BigInt.
 * test/footprint/core-x509.test.ts holds this reader to DeviceCertificate and the node verifier on the same inputs.
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
export function verifyInclusion(id: Uint8Array, index: number, size: number, proof: readonly Uint8Array[], root: Uint8Array): boolean {
  return verifyInclusionWith(coreCrypto, id, index, size, proof, root)
}

/** RFC 9162 §2.1.4.2: whether `proof` shows the tree of size `m` (root `rootM`) is a prefix of the tree of size `n` (root `rootN`). */
export function verifyConsistency(m: number, n: number, rootM: Uint8Array, rootN: Uint8Array, proof: readonly Uint8Array[]): boolean {
  return verifyConsistencyWith(coreCrypto, m, n, rootM, rootN, proof)
}

// ---- proof bundles ---------------------------------------------------------------------------------------------

/**
 * Verifies one CN's proof bundle (agent/ledger/bundle.ts) with kin-core's crypto: the head signed by
 * `anchor.minerKey`, anchored to `anchor.knownHead` when given, every inclusion proof, the genesis the anchor
 * names, and every event validated in a fresh ledger. Throws the KinError of the first check that fails.
 * By default every event's signature is checked; `{ tier: 'bundle', cache }` is the small device's rule (DESIGN.md
 * "Small devices: three tiers"): only genesis, authorize, rekey and policy signatures, each once — verify the device's own
 * bundle at boot with `own: true`, then each peer's with the same cache.
 */
export function verifyBundle(bundleBytes: Uint8Array, anchor: BundleAnchor, now: number, options: BundleVerifyOptions = {}): VerifiedBundle {
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
    throw new VerificationError(refused[0]!.code as KinError['code'], `bundles do not combine: ${refused[0]!.message}`, { detail: { refused } })
  }
  if (pending.length > 0) {
    throw new VerificationError('BUNDLE_INCOMPLETE', `bundles do not combine: ${pending.length} events link to events none of them holds`)
  }
  return ledger.state
}

// ---- X.509 without node-forge ----------------------------------------------------------------------------------

const CODE = 'CERT_PARSE'
// RFC 8017 §9.2 note 1: DigestInfo prefix for SHA-256.
const SHA256_DIGEST_INFO = fromHex('3031300d060960864801650304020105000420')

/** The fields of a certificate that agent/pki's chain rules read; DeviceCertificate and CoreCertificate both have them. */
export type ChainCertificate = Pick<DeviceCertificate,
  'der' | 'layout' | 'cn' | 'notBefore' | 'notAfter' | 'isCA' | 'keyUsage' | 'extKeyUsage' | 'sanDns' | 'sanUris' | 'sanOtherCount' | 'parentCns' | 'parentCn' | 'spkiHash' | 'certHash'>

/**
 * An X.509 v3 certificate read with kin-core's own DER path (no node-forge): the fields the chain, binding and
 * lineage checks read, with the same meaning as agent/pki's DeviceCertificate. DER only; KinError CERT_PARSE on
 * anything malformed.
 */
export class CoreCertificate implements ChainCertificate {
  /** The certificate's DER encoding (a copy of the input). */
  readonly der: Uint8Array
  /** Raw byte slices: signed part, algorithms, names, SubjectPublicKeyInfo. */
  readonly layout: CertificateLayout
  /** Subject CN. */
  readonly cn: string
  /** Not valid before / after, seconds since the epoch. */
  readonly notBefore: number
  readonly notAfter: number
  readonly sanDns: readonly string[]
  readonly sanUris: readonly string[]
  readonly sanOtherCount: number
  readonly isCA: boolean
  readonly pathLength: number | undefined
  readonly keyUsage: readonly string[] | undefined
  readonly extKeyUsage: readonly string[] | undefined
  readonly subjectKeyId: Uint8Array | undefined
  /** The CNs named by `kin://<fleet domain>/parent/<label>` SAN URIs. */
  readonly parentCns: readonly string[]
  /** SHA-256 of the DER SubjectPublicKeyInfo (what authorize events bind). */
  readonly spkiHash: Uint8Array
  /** SHA-256 of the certificate DER (what certified events record). */
  readonly certHash: Uint8Array

  /** Parses certificate DER (RFC 5280 §4.1); RSA_KEY_SIZE / RSA_EXPONENT for an RSA key outside kinship's parameters. */
  constructor(der: Uint8Array) {
    if (!(der instanceof Uint8Array)) throw new DecodeError(CODE, 'certificate must be DER bytes (a Uint8Array)')
    this.der = der.slice()
    this.layout = certificateLayout(this.der, CODE)
    const tbs = readTbsFields(this.layout.signed)
    this.notBefore = tbs.notBefore
    this.notAfter = tbs.notAfter
    this.cn = tbs.cn
    const ext = tbs.extensions
    this.sanDns = ext.sanDns
    this.sanUris = ext.sanUris
    this.sanOtherCount = ext.sanOtherCount
    this.isCA = ext.isCA
    this.pathLength = ext.pathLength
    this.keyUsage = ext.keyUsage
    this.extKeyUsage = ext.extKeyUsage
    this.subjectKeyId = ext.subjectKeyId
    this.parentCns = Object.freeze(parentCnsOf(this.sanUris))
    // The key's RSA parameters before anything is hashed: in QuickJS, hashing a certificate padded out with a 14 KiB
    // exponent takes half a second, and nothing this reader is for accepts such a key (RSA_KEY_SIZE, RSA_EXPONENT).
    checkPublicKeyParameters(this.layout.spki, `certificate for "${this.cn}"`, CODE)
    this.spkiHash = coreCrypto.sha256(this.layout.spki)
    this.certHash = coreCrypto.sha256(this.der)
  }

  /** Parses DER, returning the same object when given a CoreCertificate. */
  static from(input: CoreCertificate | Uint8Array): CoreCertificate {
    return input instanceof CoreCertificate ? input : new CoreCertificate(input)
  }

  /** The parent's CN from the parent marker SAN URI; undefined for L0 (and when there are several). */
  get parentCn(): string | undefined {
    return this.parentCns.length === 1 ? this.parentCns[0] : undefined
  }

  /** DER SubjectPublicKeyInfo, exactly as encoded in the certificate. */
  get spkiDer(): Uint8Array {
    return this.layout.spki
  }
}

/** An RSA public key as BigInts, with its modulus length in bytes. */
interface RsaPublicKey {
  n: bigint
  e: bigint
  k: number
}

function bigOf(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt('0x' + toHex(bytes))
}

/**
 * RFC 8017 §A.1.1 RSAPublicKey inside an RFC 5280 §4.1.2.7 SubjectPublicKeyInfo, as BigInts; DecodeError CERT_PARSE
 * otherwise. Its parameters are checked first (pki/key-parameters.ts: RSA_KEY_SIZE, RSA_EXPONENT), so no BigInt
 * ever holds a key whose RSAVP1 would take seconds.
 */
export function rsaPublicKeyOf(spki: Uint8Array): RsaPublicKey {
  if (checkPublicKeyParameters(spki, 'RSA key', CODE) !== 'rsa') throw new DecodeError(CODE, 'subject public key is not rsaEncryption')
  const key = readRsaPublicKey(spki, CODE)
  return { n: bigOf(key.modulus), e: bigOf(key.exponent), k: key.modulus.length }
}

function modPow(base: bigint, exponent: bigint, modulus: bigint): bigint {
  let result = 1n, b = base % modulus, e = exponent
  while (e > 0n) {
    if ((e & 1n) === 1n) result = (result * b) % modulus
    b = (b * b) % modulus
    e >>= 1n
  }
  return result
}

function bytesOfBig(value: bigint, length: number): Uint8Array {
  const hex = value.toString(16)
  if (hex.length > length * 2) return new Uint8Array(0)
  return fromHex(hex.padStart(length * 2, '0'))
}

/**
 * RFC 8017 §8.2.2 RSASSA-PKCS1-v1_5 verification with SHA-256, comparing the whole encoded message (§9.2), in BigInt
 * arithmetic. False (never a throw) for a malformed key or signature, and for a key outside kinship's RSA parameters.
 */
export function verifyRsaSha256(spki: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  try {
    const key = rsaPublicKeyOf(spki)
    // §8.2.2 step 1: the signature is exactly k octets; the encoding needs room for the padding and the DigestInfo.
    if (signature.length !== key.k || key.k < 11 + SHA256_DIGEST_INFO.length + 32) return false
    const s = bigOf(signature)
    // §5.2.2 RSAVP1 step 1: s < n.
    if (s >= key.n) return false
    const em = bytesOfBig(modPow(s, key.e, key.n), key.k)
    const t = concatBytes(SHA256_DIGEST_INFO, coreCrypto.sha256(message))
    const expected = new Uint8Array(key.k).fill(0xff)
    expected[0] = 0x00
    expected[1] = 0x01
    expected[key.k - t.length - 1] = 0x00
    expected.set(t, key.k - t.length)
    return bytesEqual(em, expected)
  } catch {
    return false
  }
}

/** A PkiProvider that only verifies: certificate signatures by kin-core's BigInt RSA (no key generation). */
export const corePki: PkiProvider = {
  name: 'core',
  generateTlsKeyPair() {
    return Promise.reject(new KinError('BAD_ARGUMENT', 'kin-core verifies; it does not generate keys'))
  },
  verifyCertificateSignature(certDer, issuerCertDer) {
    try {
      const layout = certificateLayout(certDer, CODE)
      if (!certificateSignedWithSha256Rsa(layout)) return false
      return verifyRsaSha256(certificateLayout(issuerCertDer, CODE).spki, layout.signed, layout.signature)
    } catch {
      return false
    }
  },
}

/**
 * agent/pki's verifyChain with kin-core's reader: the keys' RSA parameters, the fleet root's signature, validity
 * (leaf and root), key usage and names, in that order; RSA_KEY_SIZE / RSA_EXPONENT, CERT_CHAIN, CERT_EXPIRED /
 * CERT_NOT_YET_VALID, CERT_KEY_USAGE, CERT_OLD_PARENT_MARKER / CERT_NAMES, or CERT_PARSE for unparsable input.
 */
export function verifyCertificateChain(certificate: CoreCertificate | Uint8Array, root: CoreCertificate | Uint8Array, now: number): ChainInfo {
  const leaf = CoreCertificate.from(certificate), fleetRoot = CoreCertificate.from(root)
  // The chain rules take DeviceCertificate; they read only the ChainCertificate fields, which CoreCertificate has.
  const domain = checkIssuedByRoot(leaf as unknown as DeviceCertificate, fleetRoot as unknown as DeviceCertificate, corePki)
  checkValidity(leaf as unknown as DeviceCertificate, now)
  checkValidity(fleetRoot as unknown as DeviceCertificate, now)
  checkLeafKeyUsage(leaf as unknown as DeviceCertificate)
  checkLeafNames(leaf, domain)
  return { cn: leaf.cn, parentCn: leaf.parentCn, spkiHash: leaf.spkiHash, certHash: leaf.certHash, notAfter: leaf.notAfter }
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
      allow: false, code: error.code, reason: error.message, path: [], commonAncestor: undefined, hops: undefined, peer: undefined,
      action: request.action, time: now, retry: false, missing: undefined,
    }
  }
  return decideWith({ certificate, action: request.action }, {
    self: device.self, ledger: state, now, localPolicy: device.localPolicy, lastHeadTime: device.lastHeadTime, chainCache: device.chainCache,
    verifyChain: (peer, at) => {
      // The ledger pins the fleet root: genesis records its hash, so a root from anywhere else is refused.
      const pinned = state.genesis?.body.rootCertHash
      if (pinned === undefined || !bytesEqual(pinned, root.certHash)) {
        throw new VerificationError('CERT_CHAIN', 'the fleet root given is not the one the ledger\'s genesis names')
      }
      return verifyCertificateChain(peer, root, at)
    },
  })
}

// ---- proof of possession without TLS ----------------------------------------------------------------------------

// kin-core holds no private key: it checks challenge answers, it never signs one.
const coreSigning: RsaSigning = {
  name: 'core',
  signRsaSha256() {
    throw new KinError('BAD_ARGUMENT', 'kin-core verifies; it signs nothing')
  },
  verifyRsaSha256,
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
export function decideOnAnswer(verifier: ChallengeVerifier, answerBytes: Uint8Array, state: LedgerState, now: number, device: CoreDevice): Decision {
  return verifier.verify(answerBytes, {
    // The challenge verifier reads only `cn` and `spkiDer` of the certificate, which CoreCertificate has.
    certificate: der => new CoreCertificate(der) as unknown as DeviceCertificate,
    decide: (certificate, action) => decide({ certificate: certificate as unknown as CoreCertificate, action }, state, now, device),
  })
}

/** The chain result type decisions cache, re-exported for callers that pass one in. */
export type CoreVerifiedChain = VerifiedChain
