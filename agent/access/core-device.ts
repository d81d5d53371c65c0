/** @module The deciding device as kin-core sees it: its CN and pinned fleet root, kin-core's reader and verifier, no private key. */
import { KinError, VerificationError } from '../errors.ts'
import { bytesEqual } from '../codec/bytes.ts'
import type { LedgerState } from '../ledger/state.ts'
import { CoreCertificate, coreVerifier, verifyCertificateChain } from '../pki/core-reader.ts'
import { signatureByKeyValid } from '../pki/verifier.ts'
import type { Clock } from '../ports/platform.ts'
import type { TlsSigning } from '../ports/signing.ts'
import type { ChainCache } from './chain-cache.ts'
import type { DecidingDevice, LocalPolicy } from './types.ts'

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
 * `device` as the decision recipe takes it on `state`: kin-core's reader, and a chain verifier bound to the fleet
 * root that the ledger's genesis pins (rootCertHash), so a root from anywhere else is refused (CERT_CHAIN). The
 * root is parsed in the chain stage, so an unparsable one is a deny with its code (CERT_PARSE), never a throw.
 */
export function coreDecider(device: CoreDevice, state: LedgerState): DecidingDevice<CoreCertificate> {
  return {
    self: device.self,
    parse: der => new CoreCertificate(der),
    localPolicy: device.localPolicy,
    lastHeadTime: device.lastHeadTime,
    chainCache: device.chainCache,
    verifyChain: (peer, at) => {
      const root = CoreCertificate.from(device.root)
      const pinned = state.genesis?.body.rootCertHash
      if (pinned === undefined || !bytesEqual(pinned, root.certHash)) {
        throw new VerificationError('CERT_CHAIN', "the fleet root given is not the one the ledger's genesis names")
      }
      return verifyCertificateChain(peer, root, at)
    },
  }
}

/** kin-core's side of proof of possession: it checks challenge answers, it never signs one (it holds no private key). */
export const coreSigning: TlsSigning = {
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
