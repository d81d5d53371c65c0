/** @module Enrollment through the pure steps in one process (docs/PAIRING.md steps 3–7, no broker), for the pure fleet, the broker tests' fleets and the benchmarks. */
import type { FleetCa, Issued } from '../agent/enroll/ca.ts'
import {
  acceptAuthorization,
  createEnrollCsr,
  recordCertificate,
  type AcceptedAuthorization,
} from '../agent/enroll/child.ts'
import { authorizeChild, type AuthorizeChoices } from '../agent/enroll/parent.ts'
import { createEnrollRequest, type DeviceSecrets, type EnrollRequest } from '../agent/enroll/request.ts'
import type { Ledger } from '../agent/ledger/ledger.ts'
import type { EncodedEvent } from '../agent/ledger/types.ts'
import type { DeviceCertificate } from '../agent/pki/certificate.ts'
import type { TlsKeyType } from '../agent/pki/key-type.ts'
import type { CryptoProvider } from '../agent/ports/platform.ts'
import type { PkiProvider } from '../agent/ports/pki.ts'

/** A new device's request and the secrets behind it (docs/PAIRING.md step 3), as createEnrollRequest makes them. */
export interface EnrollKeys {
  request: EnrollRequest
  secrets: DeviceSecrets
}

/** Who takes part: the parent (it authorizes on `ledger`, its own or L0's), L0's CA, and the fleet it enrolls into. */
export interface PureEnrollParties {
  crypto: CryptoProvider
  pki: PkiProvider
  parent: { cn: string; ledgerSeed: Uint8Array; ledger: Ledger }
  ca: FleetCa
  domain: string
  rootPem: string
}

/** What the new device is: fresh keys made for `kind` and `name`, or keys made earlier (a benchmark's pool). */
export type NewDevice = { kind: string; name: string; keyType?: TlsKeyType } | { keys: EnrollKeys }

/** docs/PAIRING.md steps 3–4: the device's request (keys made here unless given) and the parent's signed authorize event. */
export async function authorizeThroughSteps(
  p: PureEnrollParties,
  device: NewDevice,
  choices: AuthorizeChoices,
  now: number,
): Promise<{ keys: EnrollKeys; authorize: EncodedEvent }> {
  const keys = 'keys' in device ? device.keys : await createEnrollRequest(p.crypto, p.pki, device)
  const authorize = authorizeChild(p.crypto, p.parent.ledger, p.parent, keys.request, choices, now)
  return { keys, authorize }
}

/** What one enrollment through the pure steps made; the caller appends `certified` where the device's fleet keeps it. */
export interface PureEnrollment {
  keys: EnrollKeys
  authorize: EncodedEvent
  accepted: AcceptedAuthorization
  issued: Issued
  certificate: DeviceCertificate
  certified: EncodedEvent
}

/**
 * The whole enrollment but its last step: request and authorize, the child's check of the proof and its CSR, L0's CA
 * (which takes the authorize event into L0's ledger), and the child's certified event over the issued certificate.
 * `keep` lets the parent keep its authorize event before the child sees it; `childLedger` is the ledger the child
 * records on, asked for once the CA has issued (so L0's ledger holds the authorize event by then).
 */
export async function enrollThroughSteps(
  p: PureEnrollParties,
  device: NewDevice,
  o: {
    choices: AuthorizeChoices
    now: number
    keep?: (authorize: EncodedEvent) => void
    childLedger: () => Ledger
  },
): Promise<PureEnrollment> {
  const { keys, authorize } = await authorizeThroughSteps(p, device, o.choices, o.now)
  o.keep?.(authorize)
  const accepted = acceptAuthorization(p.crypto, authorize.bytes, keys.request, p.domain)
  const issued = await p.ca.issue({
    authorizeBytes: authorize.bytes,
    csrPem: await createEnrollCsr(accepted, keys.secrets),
    now: o.now,
  })
  const { certificate, certified } = recordCertificate(
    p.crypto,
    p.pki,
    o.childLedger(),
    accepted,
    keys.secrets,
    issued.certificate.pem,
    p.rootPem,
    o.now,
  )
  return { keys, authorize, accepted, issued, certificate, certified }
}
