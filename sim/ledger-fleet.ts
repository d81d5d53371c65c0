/** @module A deterministic fleet built directly on the ledger, for ledger-level tests, vectors and the heap measurements (no X.509). */
import type { CryptoProvider } from '../agent/ports/platform.ts'
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { Ledger } from '../agent/ledger/ledger.ts'
import { signEvent } from '../agent/ledger/event.ts'
import {
  authorizeEvent,
  certifiedEvent,
  genesisEvent,
  policyEvent,
  rekeyEvent,
  type AuthorizeRequest,
} from '../agent/ledger/builders.ts'
import { signedRevoke } from '../agent/ledger/revoke.ts'
import { concatBytes, utf8 } from '../agent/codec/bytes.ts'
import { KinError } from '../agent/errors.ts'
import type { Binding, EncodedEvent, PolicyBody, RevokeBody, UnsignedEvent } from '../agent/ledger/types.ts'

export const T0 = 1_800_000_000
export const YEAR = 365 * 86400

/** Builds events with deterministic keys and nonces; applies them to its own ledger unless told not to. */
export class LedgerFleet {
  readonly crypto: CryptoProvider
  readonly ledger: Ledger
  readonly secrets = new Map<string, Uint8Array>()
  readonly events: EncodedEvent[] = []
  private counter = 0
  private readonly tag: string
  l0!: string

  constructor(crypto: CryptoProvider = nodeCrypto, tag = 'fleet') {
    this.crypto = crypto
    this.ledger = new Ledger(crypto)
    this.tag = tag
  }

  /** Deterministic bytes: SHA-256(tag ‖ counter), cut to `n`. */
  bytes(n: number): Uint8Array {
    return this.crypto.sha256(concatBytes(utf8(this.tag), utf8(String(this.counter++)))).subarray(0, n)
  }

  static create(opts: { crypto?: CryptoProvider; domain?: string; time?: number; tag?: string } = {}): LedgerFleet {
    const f = new LedgerFleet(opts.crypto ?? nodeCrypto, opts.tag)
    const seed = f.bytes(32)
    const kp = f.crypto.ed25519KeyPair(seed)
    const unsigned = genesisEvent(
      f.crypto,
      {
        domain: opts.domain ?? 'smith.home.arpa',
        rootCertHash: f.bytes(32),
        spkiHash: f.bytes(32),
        ledgerKey: kp.publicKey,
        minerKey: kp.publicKey,
        nonce: f.bytes(12),
        notAfter: (opts.time ?? T0) + 20 * YEAR,
        name: 'home pc',
      },
      opts.time ?? T0,
    )
    const e = signEvent(f.crypto, unsigned, seed)
    f.ledger.ingest(e)
    f.events.push(e)
    f.l0 = f.ledger.state.genesis!.cn
    f.secrets.set(f.l0, seed)
    return f
  }

  binding(cn: string): Binding {
    const b = this.ledger.state.currentBinding(cn)
    if (b === undefined) throw new Error(`no binding for ${cn}`)
    return b
  }

  /** Signs with `byCn`'s secret (or `secret`) and ingests unless `apply` is false. */
  sign(unsigned: UnsignedEvent, byCn: string, apply = true, secret?: Uint8Array): EncodedEvent {
    return this.keep(signEvent(this.crypto, unsigned, secret ?? this.secrets.get(byCn)!), apply)
  }

  /** Ingests a signed event unless `apply` is false. */
  private keep(e: EncodedEvent, apply: boolean): EncodedEvent {
    if (apply) {
      this.ledger.ingest(e)
      this.events.push(e)
    }
    return e
  }

  authorizeUnsigned(
    parentCn: string,
    req: Partial<AuthorizeRequest> & { time?: number } = {},
  ): { unsigned: UnsignedEvent; seed: Uint8Array } {
    const seed = this.bytes(32)
    const kp = this.crypto.ed25519KeyPair(seed)
    const parent = this.binding(parentCn)
    const unsigned = authorizeEvent(
      this.crypto,
      parent,
      {
        spkiHash: req.spkiHash ?? this.bytes(32),
        ledgerKey: req.ledgerKey ?? kp.publicKey,
        role: req.role ?? 'member',
        depth: req.depth ?? (req.role === 'device' || req.role === 'guest' ? 0 : Math.max(0, parent.depth - 1)),
        notAfter: req.notAfter ?? parent.notAfter,
        kind: req.kind ?? 'phone',
        name: req.name ?? 'device',
        nonce: req.nonce ?? this.bytes(12),
      },
      req.time ?? parent.time + 60,
    )
    return { unsigned, seed }
  }

  /** Authorizes a child of `parentCn`, records its certificate hash, and returns its CN. */
  enroll(parentCn: string, req: Partial<AuthorizeRequest> & { time?: number; certify?: boolean } = {}): string {
    const { unsigned, seed } = this.authorizeUnsigned(parentCn, req)
    const e = this.sign(unsigned, parentCn)
    const cn = this.ledger.state.cnOfLabel(e.event.subject)
    this.secrets.set(cn, seed)
    if (req.certify !== false) this.sign(certifiedEvent(this.binding(cn), this.bytes(32), unsigned.time + 1), cn)
    return cn
  }

  revoke(
    byCn: string,
    targetCn: string,
    body: Partial<RevokeBody> & { time?: number } = {},
    apply = true,
  ): EncodedEvent {
    const time = body.time ?? this.binding(targetCn).time + 3600
    const issuer = { cn: byCn, ledgerSeed: this.secrets.get(byCn)! }
    const full = {
      reason: body.reason ?? 'compromised',
      effective: body.effective ?? time,
      subtree: body.subtree ?? false,
    }
    return this.keep(signedRevoke(this.crypto, this.ledger.state, issuer, targetCn, full, time), apply)
  }

  rekey(parentCn: string, targetCn: string, time?: number, apply = true): EncodedEvent {
    const seed = this.bytes(32)
    const kp = this.crypto.ed25519KeyPair(seed)
    const target = this.binding(targetCn)
    const e = this.sign(
      rekeyEvent(
        this.crypto,
        this.binding(parentCn),
        target,
        {
          spkiHash: this.bytes(32),
          ledgerKey: kp.publicKey,
          notAfter: target.notAfter,
          nonce: this.bytes(12),
        },
        time ?? target.time + 7200,
      ),
      parentCn,
      apply,
    )
    if (apply) this.secrets.set(targetCn, seed)
    return e
  }

  /** A deterministic Ed25519 key pair (seed = secret key) from this fleet's counter. */
  keyPair(): { seed: Uint8Array; publicKey: Uint8Array } {
    const seed = this.bytes(32)
    return { seed, publicKey: this.crypto.ed25519KeyPair(seed).publicKey }
  }

  /** The CN an event names as its subject, in this fleet. */
  subjectCn(e: EncodedEvent): string {
    return this.ledger.state.cnOfLabel(e.event.subject)
  }

  /**
   * An authorize event for the very CN `original` binds (same nonce and keys, hence the same label) by another
   * parent or at another time: the conflict merge has to settle. Not applied.
   */
  twinAuthorize(original: EncodedEvent, parentCn: string, time: number): EncodedEvent {
    if (original.event.type !== 'authorize') throw new Error('twinAuthorize needs an authorize event')
    const b = original.event.body
    return this.sign(
      authorizeEvent(
        this.crypto,
        this.binding(parentCn),
        {
          spkiHash: b.spkiHash,
          ledgerKey: b.ledgerKey,
          nonce: b.nonce,
          role: b.role,
          depth: b.depth,
          notAfter: Math.min(b.notAfter, this.binding(parentCn).notAfter),
          kind: b.kind,
          name: b.name,
        },
        time,
      ),
      parentCn,
      false,
    )
  }

  /** Like `rekey`, but also returns the new ledger secret (needed when the rekey is applied later, elsewhere). */
  rekeyWithSeed(
    parentCn: string,
    targetCn: string,
    time?: number,
    apply = true,
  ): { event: EncodedEvent; seed: Uint8Array } {
    const { seed, publicKey } = this.keyPair()
    const target = this.binding(targetCn)
    const event = this.sign(
      rekeyEvent(
        this.crypto,
        this.binding(parentCn),
        target,
        {
          spkiHash: this.bytes(32),
          ledgerKey: publicKey,
          notAfter: target.notAfter,
          nonce: this.bytes(12),
        },
        time ?? target.time + 7200,
      ),
      parentCn,
      apply,
    )
    if (apply) this.secrets.set(targetCn, seed)
    return { event, seed }
  }

  policy(byCn: string, targetCn: string, body: Partial<PolicyBody> = {}, time?: number, apply = true): EncodedEvent {
    return this.sign(
      policyEvent(
        this.binding(byCn),
        this.binding(targetCn),
        {
          subtree: body.subtree ?? true,
          maxHops: body.maxHops ?? 8,
          maxHeadAge: body.maxHeadAge ?? 0,
          anchors: body.anchors ?? [],
          rules: body.rules ?? [],
        },
        time ?? this.binding(targetCn).time + 100,
      ),
      byCn,
      apply,
    )
  }
}

/** The KinError code `fn` throws, undefined when it returns, or 'NOT_A_KIN_ERROR: …' for any other throw. */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
    return undefined
  } catch (e) {
    if (e instanceof KinError) return e.code
    return `NOT_A_KIN_ERROR: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`
  }
}

/** The house of DESIGN.md, cut down: L0 → laptop (admin) → owner phone (member) → front-door lock (device), each certified. */
export function houseFleet(
  tag = 'kinship-vectors',
  crypto: CryptoProvider = nodeCrypto,
): { f: LedgerFleet; laptop: string; phone: string; lock: string } {
  const f = LedgerFleet.create({ tag, time: T0, crypto })
  const laptop = f.enroll(f.l0, { role: 'admin', kind: 'laptop', name: 'laptop', time: T0 + 100 })
  const phone = f.enroll(laptop, { role: 'member', kind: 'phone', name: 'owner phone', time: T0 + 200 })
  const lock = f.enroll(phone, { role: 'device', kind: 'lock', name: 'front-door-1', time: T0 + 300 })
  return { f, laptop, phone, lock }
}
