/** @module A real fleet built through the pure enrollment steps: real keys, real certificates, real ledgers. */
import { nodeCrypto } from '../../firmware-shims/node/crypto.ts'
import { nodePki } from '../../firmware-shims/node/pki.ts'
import type { CryptoProvider } from '../../firmware-shims/types.ts'
import { createFleet, type NewFleet } from '../../agent/enroll/fleet.ts'
import { FleetCa, type CaLedger } from '../../agent/enroll/ca.ts'
import { createEnrollRequest, type DeviceSecrets } from '../../agent/enroll/request.ts'
import { authorizeChild, type AuthorizeChoices } from '../../agent/enroll/parent.ts'
import { acceptAuthorization, createEnrollCsr, recordCertificate } from '../../agent/enroll/child.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import type { DeviceCertificate } from '../../agent/pki/certificate.ts'
import type { PkiProvider } from '../../agent/pki/provider.ts'

/** One enrolled device: its secrets, certificate and own ledger. */
export interface PureDevice {
  cn: string
  parentCn: string | undefined
  secrets: DeviceSecrets
  certificate: DeviceCertificate
  ledger: Ledger
}

/** An in-memory CaLedger over a Ledger. */
export function memoryCaLedger(ledger: Ledger): CaLedger {
  return { ledger, append: async (e, opts) => ledger.ingest(e, opts) }
}

/** A fleet whose devices enroll through the pure steps; L0's ledger is the miner's copy. */
export class PureFleet {
  readonly crypto: CryptoProvider
  readonly pki: PkiProvider
  readonly fleet: NewFleet
  readonly l0Ledger: Ledger
  readonly ca: FleetCa
  readonly devices = new Map<string, PureDevice>()
  now: number

  private constructor(fleet: NewFleet, crypto: CryptoProvider, pki: PkiProvider, now: number) {
    this.crypto = crypto
    this.pki = pki
    this.fleet = fleet
    this.now = now
    this.l0Ledger = new Ledger(crypto)
    for (const e of fleet.events) this.l0Ledger.ingest(e)
    this.ca = new FleetCa({ crypto, ledger: memoryCaLedger(this.l0Ledger), rootCertPem: fleet.root.pem, rootKeyPem: fleet.rootKey.privateKeyPem })
    const l0Own = new Ledger(crypto)
    for (const e of fleet.events) l0Own.ingest(e)
    this.devices.set(fleet.cn, { cn: fleet.cn, parentCn: undefined, secrets: { tls: fleet.tls, ledgerSeed: fleet.ledgerSeed }, certificate: fleet.certificate, ledger: l0Own })
  }

  static async create(opts: { domain?: string; now?: number; crypto?: CryptoProvider; pki?: PkiProvider } = {}): Promise<PureFleet> {
    const crypto = opts.crypto ?? nodeCrypto, pki = opts.pki ?? nodePki
    const now = opts.now ?? Math.floor(Date.now() / 1000)
    const fleet = await createFleet(crypto, pki, { domain: opts.domain ?? 'smith.home.arpa', now })
    return new PureFleet(fleet, crypto, pki, now)
  }

  get l0(): string {
    return this.fleet.cn
  }

  device(cn: string): PureDevice {
    const d = this.devices.get(cn)
    if (d === undefined) throw new Error(`unknown device ${cn}`)
    return d
  }

  /** Steps 1–6: request and the parent's authorize event (appended to the parent's own ledger). */
  async authorize(parentCn: string, choices: AuthorizeChoices, info = { kind: 'phone', name: 'device' }): Promise<{ request: Awaited<ReturnType<typeof createEnrollRequest>>; authorize: EncodedEvent }> {
    const parent = this.device(parentCn)
    const request = await createEnrollRequest(this.crypto, this.pki, info)
    const authorize = authorizeChild(this.crypto, parent.ledger, { cn: parentCn, ledgerSeed: parent.secrets.ledgerSeed }, request.request, choices, this.now)
    parent.ledger.ingest(authorize)
    return { request, authorize }
  }

  /** The whole enrollment: authorize, CSR, CA, certified; the child's ledger is L0's ledger up to it plus its events. */
  async enroll(parentCn: string, choices: AuthorizeChoices, info = { kind: 'phone', name: 'device' }): Promise<PureDevice> {
    const { request, authorize } = await this.authorize(parentCn, choices, info)
    const accepted = acceptAuthorization(this.crypto, authorize.bytes, request.request, this.fleet.domain)
    const csr = createEnrollCsr(accepted, request.secrets)
    const issued = await this.ca.issue({ authorizeBytes: authorize.bytes, csrPem: csr, now: this.now })
    const ledger = new Ledger(this.crypto)
    for (const e of this.l0Ledger.state.log) ledger.ingest(e)
    const { certificate, certified } = recordCertificate(this.crypto, this.pki, ledger, accepted, request.secrets, issued.certificate.pem, this.fleet.root.pem, this.now)
    ledger.ingest(certified)
    this.l0Ledger.ingest(certified)
    const d: PureDevice = { cn: accepted.cn, parentCn, secrets: request.secrets, certificate, ledger }
    this.devices.set(d.cn, d)
    return d
  }
}
