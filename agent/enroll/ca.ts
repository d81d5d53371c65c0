/** @module docs/PAIRING.md steps 5–6 on L0: the fleet CA checks the authorization proof through the ledger, then the CSR, then issues. */
import { KinError, VerificationError } from '../errors.ts'
import { bytesEqual } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { readEvent } from '../ledger/event.ts'
import type { Ledger } from '../ledger/ledger.ts'
import { precheckSignatures, type VerifiedSignatureSet } from '../ledger/precheck.ts'
import type { EncodedEvent } from '../ledger/types.ts'
import { DeviceCertificate } from '../pki/certificate.ts'
import { issueDeviceCertificate } from '../pki/issue.ts'
import { checkCsrBeforeSignature } from '../pki/csr-check.ts'
import { parseCsr, type ParsedCsr } from '../pki/csr-parse.ts'
import type { SignatureVerifier } from '../pki/verifier.ts'

/** Where the CA's accepted authorize events go: L0's ledger (durable on L0, in memory in tests). */
export interface CaLedger {
  readonly ledger: Ledger
  /**
   * Validates and durably appends; throws the coded refusal. `verified`: the event's signature as the CA verified it
   * (exact id and key), so the append validates it in full without verifying that signature again.
   */
  append(e: EncodedEvent, opts?: { now?: number; verified?: VerifiedSignatureSet }): Promise<EncodedEvent>
}

/** What the CA returns to an enrolling device. */
export interface Issued {
  certificate: DeviceCertificate
  authorize: EncodedEvent
}

/**
 * The fleet CA. An authorize event enters L0's ledger here, which runs the ledger's checks (parent's current
 * key, lineage unrevoked, role and depth, nonce never used); an event already in the ledger is a replay and
 * is refused with NONCE_REUSED. Then the CSR is held to the authorization and the certificate is issued.
 */
export class FleetCa {
  private readonly crypto: CryptoProvider
  private readonly caLedger: CaLedger
  private readonly rootCertPem: string
  private readonly rootKeyPem: string
  private readonly verifier: SignatureVerifier | undefined

  constructor(opts: {
    crypto: CryptoProvider
    ledger: CaLedger
    rootCertPem: string
    rootKeyPem: string
    /** Checks a CSR given as PEM (default: the portable verifier; on Node pass the native one, ~50× faster for P-256). */
    verifier?: SignatureVerifier
  }) {
    this.crypto = opts.crypto
    this.caLedger = opts.ledger
    this.rootCertPem = opts.rootCertPem
    this.rootKeyPem = opts.rootKeyPem
    this.verifier = opts.verifier
  }

  // A CSR given as PEM is parsed here with the CA's verifier; a parsed one keeps the verifier it was parsed with.
  private csrOf(csr: string | ParsedCsr): string | ParsedCsr {
    return typeof csr === 'string' && this.verifier !== undefined
      ? parseCsr(csr, { sha256: this.crypto.sha256, verifier: this.verifier })
      : csr
  }

  /**
   * Issues a certificate for `csrPem` under the authorization proof `authorizeBytes` (an authorize event, or a
   * rekey event for new keys of an existing CN). `lineage` may carry the
   * parent's own events the CA has not seen yet (they are validated like any other). Cheapest refusal first: the
   * proof's shape and single use, the CSR's names, key parameters and key (checkCsrBeforeSignature), and only then
   * the signatures (lineage, proof, the CSR's own), so a request with an RSA key made to be slow costs no arithmetic.
   */
  async issue(input: {
    authorizeBytes: Uint8Array
    csrPem: string | ParsedCsr
    now: number
    lineage?: Uint8Array[]
  }): Promise<Issued> {
    const { now } = input
    const authorize = readEvent(this.crypto, input.authorizeBytes)
    if (authorize.event.type !== 'authorize' && authorize.event.type !== 'rekey') {
      throw new VerificationError(
        'ENROLL_STATE',
        `the CA issues against authorize and rekey events, got ${authorize.event.type}`,
      )
    }
    const state = this.caLedger.ledger.state
    if (state.has(authorize.idHex))
      throw new VerificationError(
        'NONCE_REUSED',
        'this authorization proof was already presented to the CA; a proof is single-use',
      )
    const body = authorize.event.body
    // Labels become CNs under the genesis domain alone: no lineage event is needed for them.
    const auth = {
      cn: state.cnOfLabel(authorize.event.subject),
      parentCn: state.cnOfLabel(authorize.event.issuer),
      spkiHash: body.spkiHash,
      notAfter: body.notAfter,
    }
    const csr = checkCsrBeforeSignature(this.csrOf(input.csrPem), auth, this.crypto)
    if (input.lineage !== undefined && input.lineage.length > 0) {
      for (const bytes of input.lineage) {
        const e = readEvent(this.crypto, bytes)
        if (!state.has(e.idHex)) await this.caLedger.append(e, { now })
      }
    }
    // Judged as the miner will judge it when it is appended: at intake, by the log's order and L0's clock. Its
    // signature is verified once, off the event loop where the provider can (precheck.ts), and that verdict goes on
    // to the append: a signature that did not verify there is verified (and refused) by the check itself.
    const verified = await precheckSignatures(this.crypto, state, [authorize])
    this.caLedger.ledger.check(authorize, { now, intake: { now }, verified })
    const certificate = await issueDeviceCertificate({
      rootCertPem: this.rootCertPem,
      rootKeyPem: this.rootKeyPem,
      csrPem: csr,
      auth,
      now,
      randomBytes: n => this.crypto.randomBytes(n),
      crypto: this.crypto,
    })
    try {
      await this.caLedger.append(authorize, { now, verified })
    } catch (err) {
      // Two requests racing with one proof: the loser is a replay.
      if (err instanceof KinError && err.code === 'DUPLICATE_EVENT')
        throw new VerificationError(
          'NONCE_REUSED',
          'this authorization proof was already presented to the CA; a proof is single-use',
        )
      if (err instanceof KinError) throw err
      throw new KinError('STORAGE_IO', `L0 could not record the authorization: ${(err as Error).message}`, {
        cause: err,
      })
    }
    return { certificate, authorize }
  }

  /**
   * Issues a certificate for new keys bound by a rekey event that already entered L0's ledger (the parent
   * submitted it through the miner like any event). Refused unless the rekey is the subject's current binding
   * and no certificate was recorded for it yet, so a rekey yields at most one certificate per key holder.
   */
  async issueForRekey(input: { rekeyId: string; csrPem: string | ParsedCsr; now: number }): Promise<DeviceCertificate> {
    const state = this.caLedger.ledger.state
    const binding = state.bindingById(input.rekeyId)
    const event = state.event(input.rekeyId)
    if (binding === undefined || event === undefined || event.event.type !== 'rekey') {
      throw new VerificationError(
        'ENROLL_STATE',
        "L0's ledger holds no such rekey event (yet): submit it and wait for a head first",
      )
    }
    if (state.currentBinding(binding.cn) !== binding)
      throw new VerificationError('ISSUER_NOT_CURRENT', `${binding.cn} was rekeyed again since`)
    if (binding.certHashes.length > 0)
      throw new VerificationError('NONCE_REUSED', 'a certificate was already recorded for these keys')
    const invalid = state.invalidAt(binding, input.now)
    if (invalid !== undefined)
      throw new VerificationError('ISSUER_REVOKED', `${binding.cn} is not valid: ${invalid.code.toLowerCase()}`)
    return issueDeviceCertificate({
      rootCertPem: this.rootCertPem,
      rootKeyPem: this.rootKeyPem,
      csrPem: this.csrOf(input.csrPem),
      now: input.now,
      auth: { cn: binding.cn, parentCn: binding.parentCn, spkiHash: binding.spkiHash, notAfter: binding.notAfter },
      randomBytes: n => this.crypto.randomBytes(n),
      crypto: this.crypto,
    })
  }

  /**
   * A device's rekey of itself (docs/PROTOCOL.md "Rekey"): a certificate for the new TLS key that `rekeyBytes` (a
   * rekey event by and for `cn`, signed with its current ledger key) names, asked for over a session that `cn`'s
   * current certificate authenticated. Cheapest refusal first: the event's shape and parties (REKEY_NOT_SELF), the
   * standing binding (SUBJECT_UNKNOWN, REKEY_REVOKED, REKEY_EXPIRED), single use (NONCE_REUSED), the CSR held to the
   * name, parent and new key, and only then the signatures (the ledger's intake checks: REKEY_SELF_LIMITS, the
   * issuer's standing in the log). The rekey is not appended here: the device submits it with the certified event of
   * the new certificate, so until then its old identity stands; a certificate for a key the ledger never binds is
   * refused by every binding stage, like any other.
   */
  rekeySelf(input: {
    cn: string
    rekeyBytes: Uint8Array
    csrPem: string | ParsedCsr
    now: number
  }): Promise<DeviceCertificate> {
    const { now } = input
    const rekey = readEvent(this.crypto, input.rekeyBytes)
    const state = this.caLedger.ledger.state
    const ev = rekey.event
    if (ev.type !== 'rekey' || !bytesEqual(ev.subject, ev.issuer) || state.cnOfLabel(ev.subject) !== input.cn)
      throw new VerificationError(
        'REKEY_NOT_SELF',
        `a device asks for a certificate for its own rekey only; this ${ev.type} event is not ${input.cn}'s rekey of itself`,
      )
    const binding = state.currentBinding(input.cn)
    if (binding === undefined || binding.parentCn === undefined)
      throw new VerificationError('SUBJECT_UNKNOWN', `L0's ledger holds no device binding for ${input.cn}`)
    const invalid = state.invalidAt(binding, now)
    if (invalid?.code === 'EXPIRED')
      throw new VerificationError(
        'REKEY_EXPIRED',
        `the authorization of ${input.cn} ended at ${invalid.notAfter}: only a new invite brings it back`,
      )
    if (invalid !== undefined)
      throw new VerificationError(
        'REKEY_REVOKED',
        `${input.cn} may not rekey: ${invalid.code.toLowerCase().replace(/_/g, ' ')}${'ancestorCn' in invalid && invalid.ancestorCn !== undefined ? ` (${invalid.ancestorCn})` : ''}`,
      )
    if (state.has(rekey.idHex))
      throw new VerificationError('NONCE_REUSED', 'this rekey is already in the ledger; a rekey is certified once')
    const auth = { cn: binding.cn, parentCn: binding.parentCn, spkiHash: ev.body.spkiHash, notAfter: ev.body.notAfter }
    const csr = checkCsrBeforeSignature(input.csrPem, auth, this.crypto)
    // Judged as the miner will judge it when the device submits it: at intake, by the log's order and L0's clock.
    this.caLedger.ledger.check(rekey, { now, intake: { now } })
    return issueDeviceCertificate({
      rootCertPem: this.rootCertPem,
      rootKeyPem: this.rootKeyPem,
      csrPem: csr,
      auth,
      now,
      randomBytes: n => this.crypto.randomBytes(n),
      crypto: this.crypto,
    })
  }

  /**
   * Renewal (docs/PROTOCOL.md "Renewal"): a fresh certificate for the key `cn` already holds, asked for over a session
   * that `cn`'s current certificate authenticated. No ledger event is needed to issue: the CA re-reads the standing
   * binding. Cheapest refusal first: a CN the ledger does not know (SUBJECT_UNKNOWN), a binding no longer valid
   * (RENEW_REVOKED: revoked, an ancestor revoked over it, a lineage gap; RENEW_EXPIRED: its notAfter passed), then
   * the CSR held to the binding's name, parent and key (checkCsrBeforeSignature's codes) and only then its signature.
   * The new certificate ends no later than the binding; the device records it with a certified event of its own.
   */
  renew(input: { cn: string; csrPem: string | ParsedCsr; now: number }): Promise<DeviceCertificate> {
    const state = this.caLedger.ledger.state
    const binding = state.currentBinding(input.cn)
    if (binding === undefined || binding.parentCn === undefined)
      throw new VerificationError('SUBJECT_UNKNOWN', `L0's ledger holds no device binding for ${input.cn}`)
    const invalid = state.invalidAt(binding, input.now)
    if (invalid?.code === 'EXPIRED')
      throw new VerificationError(
        'RENEW_EXPIRED',
        `the authorization of ${input.cn} ended at ${invalid.notAfter}: only a new invite brings it back`,
      )
    if (invalid !== undefined)
      throw new VerificationError(
        'RENEW_REVOKED',
        `${input.cn} may not renew: ${invalid.code.toLowerCase().replace(/_/g, ' ')}${'ancestorCn' in invalid && invalid.ancestorCn !== undefined ? ` (${invalid.ancestorCn})` : ''}`,
      )
    const auth = { cn: binding.cn, parentCn: binding.parentCn, spkiHash: binding.spkiHash, notAfter: binding.notAfter }
    const csr = checkCsrBeforeSignature(this.csrOf(input.csrPem), auth, this.crypto)
    return issueDeviceCertificate({
      rootCertPem: this.rootCertPem,
      rootKeyPem: this.rootKeyPem,
      csrPem: csr,
      auth,
      now: input.now,
      randomBytes: n => this.crypto.randomBytes(n),
      crypto: this.crypto,
    })
  }
}
