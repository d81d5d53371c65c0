/** @module A real fleet in one process, enrolled through the pure steps (no broker): real keys, certificates and ledgers. */
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { nodePki } from '../runtime/node/pki.ts'
import type { CryptoProvider } from '../agent/ports/platform.ts'
import { createFleet, type NewFleet } from '../agent/enroll/fleet.ts'
import { FleetCa, type CaLedger } from '../agent/enroll/ca.ts'
import { createEnrollRequest, type DeviceSecrets } from '../agent/enroll/request.ts'
import { rekeyChild, type AuthorizeChoices } from '../agent/enroll/parent.ts'
import { acceptRekey, createEnrollCsr, recordCertificate } from '../agent/enroll/child.ts'
import { signedRevoke } from '../agent/ledger/revoke.ts'
import { decideAs } from '../agent/access/decide.ts'
import { ChainCache } from '../agent/access/chain-cache.ts'
import { fleetChainVerifier } from '../agent/access/fleet-chain.ts'
import type { Decision, LocalPolicy } from '../agent/access/types.ts'
import { Ledger } from '../agent/ledger/ledger.ts'
import type { EncodedEvent, RevokeBody } from '../agent/ledger/types.ts'
import { DeviceCertificate } from '../agent/pki/certificate.ts'
import type { PkiProvider } from '../agent/ports/pki.ts'
import type { TlsKeyType } from '../agent/pki/key-type.ts'
import { authorizeThroughSteps, enrollThroughSteps, type EnrollKeys, type PureEnrollParties } from './pure-enroll.ts'

/** One enrolled device: its secrets, certificate and own ledger. */
export interface PureDevice {
  cn: string
  parentCn: string | undefined
  secrets: DeviceSecrets
  certificate: DeviceCertificate
  ledger: Ledger
  chainCache: ChainCache
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
    this.ca = new FleetCa({
      crypto,
      ledger: memoryCaLedger(this.l0Ledger),
      rootCertPem: fleet.root.pem,
      rootKeyPem: fleet.rootKey.privateKeyPem,
    })
    const l0Own = new Ledger(crypto)
    for (const e of fleet.events) l0Own.ingest(e)
    this.devices.set(fleet.cn, {
      cn: fleet.cn,
      parentCn: undefined,
      secrets: { tls: fleet.tls, ledgerSeed: fleet.ledgerSeed },
      certificate: fleet.certificate,
      ledger: l0Own,
      chainCache: new ChainCache(),
    })
  }

  /** A fleet whose root, L0 and devices hold `keyType` keys (default DEFAULT_TLS_KEY_TYPE, P-256). */
  static async create(
    opts: { domain?: string; now?: number; crypto?: CryptoProvider; pki?: PkiProvider; keyType?: TlsKeyType } = {},
  ): Promise<PureFleet> {
    const crypto = opts.crypto ?? nodeCrypto,
      pki = opts.pki ?? nodePki
    const now = opts.now ?? Math.floor(Date.now() / 1000)
    const fleet = await createFleet(crypto, pki, {
      domain: opts.domain ?? 'smith.home.arpa',
      now,
      keyType: opts.keyType,
    })
    const pure = new PureFleet(fleet, crypto, pki, now)
    pure.keyType = opts.keyType
    return pure
  }

  /** The key type new devices get; undefined for DEFAULT_TLS_KEY_TYPE. */
  keyType: TlsKeyType | undefined

  get l0(): string {
    return this.fleet.cn
  }

  device(cn: string): PureDevice {
    const d = this.devices.get(cn)
    if (d === undefined) throw new Error(`unknown device ${cn}`)
    return d
  }

  /** The parties of an enrollment under `parentCn`: the parent on its own ledger, L0's CA, the fleet's domain and root. */
  private parties(parentCn: string): PureEnrollParties {
    const parent = this.device(parentCn)
    return {
      crypto: this.crypto,
      pki: this.pki,
      parent: { cn: parentCn, ledgerSeed: parent.secrets.ledgerSeed, ledger: parent.ledger },
      ca: this.ca,
      domain: this.fleet.domain,
      rootPem: this.fleet.root.pem,
    }
  }

  /** docs/PAIRING.md steps 3–4: request and the parent's authorize event (appended to the parent's own ledger). */
  async authorize(
    parentCn: string,
    choices: AuthorizeChoices,
    info = { kind: 'phone', name: 'device' },
  ): Promise<{ request: EnrollKeys; authorize: EncodedEvent }> {
    const { keys, authorize } = await authorizeThroughSteps(
      this.parties(parentCn),
      { ...info, keyType: this.keyType },
      choices,
      this.now,
    )
    this.device(parentCn).ledger.ingest(authorize)
    return { request: keys, authorize }
  }

  /** The whole enrollment: authorize, CSR, CA, certified; the child's ledger is L0's ledger up to it plus its events. */
  async enroll(
    parentCn: string,
    choices: AuthorizeChoices,
    info = { kind: 'phone', name: 'device' },
  ): Promise<PureDevice> {
    const ledger = new Ledger(this.crypto)
    const enrolled = await enrollThroughSteps(
      this.parties(parentCn),
      { ...info, keyType: this.keyType },
      {
        choices,
        now: this.now,
        keep: authorize => this.device(parentCn).ledger.ingest(authorize),
        childLedger: () => {
          for (const e of this.l0Ledger.state.log) ledger.ingest(e)
          return ledger
        },
      },
    )
    ledger.ingest(enrolled.certified)
    this.l0Ledger.ingest(enrolled.certified)
    const d: PureDevice = {
      cn: enrolled.accepted.cn,
      parentCn,
      secrets: enrolled.keys.secrets,
      certificate: enrolled.certificate,
      ledger,
      chainCache: new ChainCache(),
    }
    this.devices.set(d.cn, d)
    return d
  }

  /** Signs a revoke of `targetCn` by `byCn` (the target itself or an ancestor) and submits it to L0 (the miner). */
  revoke(byCn: string, targetCn: string, body: RevokeBody): EncodedEvent {
    const by = this.device(byCn)
    const issuer = { cn: byCn, ledgerSeed: by.secrets.ledgerSeed }
    const e = signedRevoke(this.crypto, by.ledger.state, issuer, targetCn, body, this.now)
    by.ledger.ingest(e, { now: this.now })
    this.l0Ledger.ingest(e, { now: this.now })
    return e
  }

  /** The parent gives `childCn` new keys (rekey), the CA issues a certificate for them, the child records it. */
  async rekey(parentCn: string, childCn: string, notAfter?: number): Promise<PureDevice> {
    const parent = this.device(parentCn),
      old = this.device(childCn)
    const request = await createEnrollRequest(this.crypto, this.pki, {
      kind: 'phone',
      name: childCn,
      keyType: this.keyType,
    })
    const rekey = rekeyChild(
      this.crypto,
      parent.ledger,
      { cn: parentCn, ledgerSeed: parent.secrets.ledgerSeed },
      childCn,
      request.request,
      this.now,
      notAfter,
    )
    parent.ledger.ingest(rekey)
    const accepted = acceptRekey(this.crypto, rekey.bytes, request.request, this.fleet.domain)
    const issued = await this.ca.issue({
      authorizeBytes: rekey.bytes,
      csrPem: await createEnrollCsr(accepted, request.secrets),
      now: this.now,
    })
    this.sync(childCn)
    const { certificate, certified } = recordCertificate(
      this.crypto,
      this.pki,
      old.ledger,
      accepted,
      request.secrets,
      issued.certificate.pem,
      this.fleet.root.pem,
      this.now,
    )
    old.ledger.ingest(certified)
    this.l0Ledger.ingest(certified)
    const d: PureDevice = { ...old, secrets: request.secrets, certificate, chainCache: new ChainCache() }
    this.devices.set(childCn, d)
    return d
  }

  /** Brings a device's ledger up to L0's (the miner's) log: what gossip does over MQTT. */
  sync(cn: string): void {
    const d = this.device(cn)
    d.ledger.ingestMany(this.l0Ledger.state.log.filter(e => !d.ledger.state.has(e.idHex)))
  }

  /** Every device catches up with L0. */
  syncAll(): void {
    for (const cn of this.devices.keys()) this.sync(cn)
  }

  /** `targetCn` decides whether `peerCn` may do `action`, on its own ledger (proof of possession assumed). */
  decide(peerCn: string, targetCn: string, action: string, localPolicy?: LocalPolicy): Decision {
    const target = this.device(targetCn)
    const decider = {
      self: targetCn,
      parse: (der: Uint8Array) => new DeviceCertificate(der, { sha256: this.crypto.sha256 }),
      chainCache: target.chainCache,
      localPolicy,
      lastHeadTime: this.now,
      verifyChain: fleetChainVerifier(this.fleet.root, this.pki),
    }
    return decideAs(decider, this.device(peerCn).certificate, action, target.ledger.state, this.now)
  }
}
