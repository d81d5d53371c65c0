/** @module docs/PAIRING.md steps 4, 5 and 7 on the child: check the proof names its keys, make the CSR, record the certificate. */
import { VerificationError } from '../errors.ts'
import { bytesEqual } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { readEvent, signEvent } from '../ledger/event.ts'
import { certifiedEvent } from '../ledger/builders.ts'
import { cnOf, deriveLabel } from '../ledger/names.ts'
import type { Ledger } from '../ledger/ledger.ts'
import type { EncodedEvent } from '../ledger/types.ts'
import { createCsr } from '../pki/csr.ts'
import { DeviceCertificate } from '../pki/certificate.ts'
import { verifyChain } from '../pki/chain.ts'
import type { PkiProvider } from '../ports/pki.ts'
import type { DeviceSecrets, EnrollRequest } from './request.ts'

/** What the child learns from its authorization proof. */
export interface AcceptedAuthorization {
  event: EncodedEvent
  cn: string
  parentCn: string
  notAfter: number
}

/**
 * Checks that an authorize event received from the parent names exactly this device's keys, and derives the
 * CN from it. The signature and lineage are checked by the CA and by every ledger it enters.
 */
export function acceptAuthorization(
  crypto: CryptoProvider,
  authorizeBytes: Uint8Array,
  request: EnrollRequest,
  domain: string,
): AcceptedAuthorization {
  const event = readEvent(crypto, authorizeBytes)
  const ev = event.event
  if (ev.type !== 'authorize')
    throw new VerificationError('ENROLL_STATE', `expected an authorize event, got ${ev.type}`)
  if (
    !bytesEqual(ev.body.spkiHash, crypto.sha256(request.spkiDer)) ||
    !bytesEqual(ev.body.ledgerKey, request.ledgerKey)
  ) {
    throw new VerificationError(
      'CSR_KEY_MISMATCH',
      'the authorization names other keys than the ones this device generated',
    )
  }
  if (!bytesEqual(deriveLabel(crypto, ev.body.nonce, ev.body.spkiHash, ev.body.ledgerKey), ev.subject)) {
    throw new VerificationError(
      'CN_MISMATCH',
      "the authorization subject is not derived from its nonce and this device's keys",
    )
  }
  return { event, cn: cnOf(ev.subject, domain), parentCn: cnOf(ev.issuer, domain), notAfter: ev.body.notAfter }
}

/** docs/PAIRING.md step 5: the CSR for the authorized CN, with the parent marker in SAN, signed with the TLS key. */
export function createEnrollCsr(accepted: AcceptedAuthorization, secrets: DeviceSecrets): Promise<string> {
  return createCsr({ cn: accepted.cn, parentCn: accepted.parentCn, keyPair: secrets.tls })
}

/**
 * docs/PAIRING.md step 7: checks the issued certificate (chain to the fleet root, this device's key and names) and signs the
 * `certified` event that follows the authorize event. The caller appends both to the child's ledger.
 */
export function recordCertificate(
  crypto: CryptoProvider,
  pki: PkiProvider,
  ledger: Ledger,
  accepted: AcceptedAuthorization,
  secrets: DeviceSecrets,
  certPem: string,
  rootPem: string,
  now: number,
): { certificate: DeviceCertificate; certified: EncodedEvent } {
  const certificate = DeviceCertificate.from(certPem, { sha256: crypto.sha256 })
  const info = verifyChain(certificate, rootPem, now, pki)
  if (info.cn !== accepted.cn || info.parentCn !== accepted.parentCn)
    throw new VerificationError('CERT_NAMES', 'the issued certificate names another device')
  if (!bytesEqual(certificate.spkiDer, secrets.tls.spkiDer))
    throw new VerificationError('CERT_UNBOUND', "the issued certificate carries another key than this device's")
  const binding = ledger.state.bindingById(accepted.event.idHex)
  if (binding === undefined)
    throw new VerificationError(
      'ENROLL_STATE',
      "append the authorize event to this device's ledger before recording its certificate",
    )
  const certified = signEvent(
    crypto,
    certifiedEvent(binding, certificate.certHash, Math.max(now, accepted.event.event.time)),
    secrets.ledgerSeed,
  )
  return { certificate, certified }
}

/**
 * Like `acceptAuthorization`, for a rekey: the parent bound new keys to this device's existing CN (after a
 * compromise). The CN does not change, so there is no label to derive; the keys must be the ones just generated.
 */
export function acceptRekey(
  crypto: CryptoProvider,
  rekeyBytes: Uint8Array,
  request: EnrollRequest,
  domain: string,
): AcceptedAuthorization {
  const event = readEvent(crypto, rekeyBytes)
  const ev = event.event
  if (ev.type !== 'rekey') throw new VerificationError('ENROLL_STATE', `expected a rekey event, got ${ev.type}`)
  if (
    !bytesEqual(ev.body.spkiHash, crypto.sha256(request.spkiDer)) ||
    !bytesEqual(ev.body.ledgerKey, request.ledgerKey)
  ) {
    throw new VerificationError('CSR_KEY_MISMATCH', 'the rekey names other keys than the ones this device generated')
  }
  return { event, cn: cnOf(ev.subject, domain), parentCn: cnOf(ev.issuer, domain), notAfter: ev.body.notAfter }
}
