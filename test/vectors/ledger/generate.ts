/** @module Writes the ledger test vectors (encodings, refusals, sizes) from deterministic fleets: `npx tsx test/vectors/ledger/generate.ts`. */
import { writeFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { nodeCrypto } from '../../../runtime/node/crypto.ts'
import { portableCrypto } from '../../../agent/portable/crypto.ts'
import { concatBytes, fromHex, toHex, utf8 } from '../../../agent/codec/bytes.ts'
import { decodeCbor, encodeCbor, type CborValue } from '../../../agent/codec/cbor.ts'
import { EVENT_SIGNING_PREFIX, signEvent, signingInput } from '../../../agent/ledger/event.ts'
import {
  authorizeEvent,
  certifiedEvent,
  genesisEvent,
  policyEvent,
  type AuthorizeRequest,
} from '../../../agent/ledger/builders.ts'
import { Ledger } from '../../../agent/ledger/ledger.ts'
import type { IntakeClock } from '../../../agent/ledger/validate.ts'
import { isKinError } from '../../../agent/errors.ts'
import { deriveLabel, labelFromBase32 } from '../../../agent/ledger/names.ts'
import { LedgerFleet, T0, YEAR, houseFleet } from '../../helpers/ledger-fleet.ts'
import type { Binding, EncodedEvent, UnsignedEvent } from '../../../agent/ledger/types.ts'
import { eventToJson, type Json } from './fields.ts'

// ---- shared fleet ------------------------------------------------------------------------------------------

const house = houseFleet

function authorizeOf(f: LedgerFleet, cn: string): EncodedEvent {
  const b = f.ledger.state.bindingsByCn.get(cn)![0]!
  return f.ledger.state.event(b.id)!
}

function certifiedOf(f: LedgerFleet, cn: string): EncodedEvent {
  const id = f.binding(cn).id
  return f.events.find(e => e.event.type === 'certified' && toHex(e.event.links[0]!) === id)!
}

function request(f: LedgerFleet, over: Partial<AuthorizeRequest> = {}): AuthorizeRequest {
  return {
    spkiHash: f.bytes(32),
    ledgerKey: f.keyPair().publicKey,
    role: 'device',
    depth: 0,
    notAfter: T0 + YEAR,
    kind: 'sensor',
    name: 'hall sensor',
    nonce: f.bytes(12),
    ...over,
  }
}

/** An authorize by `parent` (any binding, current or not) signed with `secret`. */
function authorizeBy(
  f: LedgerFleet,
  parent: Binding,
  secret: Uint8Array,
  time: number,
  over: Partial<AuthorizeRequest> = {},
): EncodedEvent {
  return signEvent(f.crypto, authorizeEvent(f.crypto, parent, request(f, over), time), secret)
}

function signWith(f: LedgerFleet, unsigned: UnsignedEvent, secret: Uint8Array): EncodedEvent {
  return signEvent(f.crypto, unsigned, secret)
}

/** The accepted events `events` depend on through links, plus those events, in ledger order. */
function closure(f: LedgerFleet, roots: EncodedEvent[], links: Uint8Array[] = []): EncodedEvent[] {
  const want = new Set<string>()
  const todo = [...roots.map(e => e.idHex), ...links.map(toHex)]
  while (todo.length > 0) {
    const id = todo.pop()!
    if (want.has(id)) continue
    want.add(id)
    const e = f.ledger.state.event(id)
    if (e === undefined) throw new Error(`closure: ${id} is not an accepted event`)
    for (const l of e.event.links) todo.push(toHex(l))
  }
  return f.ledger.state.log.filter(e => want.has(e.idHex))
}

/** Bytes of a CBOR array assembled from already-encoded items (lets a vector hold what encodeCbor refuses to write). */
function rawArray(items: Uint8Array[]): Uint8Array {
  if (items.length > 23) throw new Error('rawArray: at most 23 items')
  return concatBytes(new Uint8Array([0x80 | items.length]), ...items)
}

function mutateTop(bytes: Uint8Array, change: (top: CborValue[]) => CborValue[]): Uint8Array {
  return encodeCbor(change(decodeCbor(bytes) as CborValue[]))
}

// ---- (a) encodings -------------------------------------------------------------------------------------------

/** One event of each type, with the signer's seed so a test can re-sign and compare. */
export function encodingVectors(): { [k: string]: Json } {
  const { f, laptop, phone, lock } = house()
  const out: Json[] = []
  const add = (e: EncodedEvent, signerSeed: Uint8Array, note: string): void => {
    const kp = nodeCrypto.ed25519KeyPair(signerSeed)
    const { signature: _s, ...unsigned } = e.event
    const subjectCn = f.ledger.state.cnOfLabel(e.event.subject)
    out.push({
      name: e.event.type,
      note,
      subjectCn,
      signerSeed: toHex(signerSeed),
      signerPublicKey: toHex(kp.publicKey),
      fields: eventToJson(e.event),
      signingInput: toHex(signingInput(unsigned as UnsignedEvent)),
      bytes: toHex(e.bytes),
      id: e.idHex,
      signature: toHex(e.event.signature),
    })
  }
  add(
    f.events[0]!,
    f.secrets.get(f.l0)!,
    'L0 founds the fleet smith.home.arpa; subject = issuer = label derived from nonce and keys',
  )
  add(
    authorizeOf(f, lock),
    f.secrets.get(phone)!,
    'the owner phone authorizes the front-door lock (device, depth 0, 12-character name)',
  )
  add(certifiedOf(f, lock), f.secrets.get(lock)!, 'the lock records the hash of the certificate the CA issued it')
  const policySeed = f.secrets.get(laptop)!
  const policy = f.sign(
    policyEvent(
      f.binding(laptop),
      f.binding(phone),
      {
        subtree: true,
        maxHops: 4,
        maxHeadAge: 86400,
        anchors: [labelFromBase32(f.binding(laptop).label)],
        rules: [
          { action: 'unlock', roles: ['admin', 'member', 'guest'], from: 7 * 3600, to: 22 * 3600 },
          { action: '*', roles: ['admin'], from: 0, to: 86400 },
        ],
      },
      T0 + 400,
    ),
    laptop,
  )
  add(policy, policySeed, 'the laptop sets trust criteria for the phone and its subtree')
  const revokeSeed = f.secrets.get(phone)!
  const revoke = f.revoke(phone, lock, { reason: 'lost', effective: T0 + 500, subtree: false, time: T0 + 510 })
  add(revoke, revokeSeed, 'the phone revokes the lock as lost, effective 10 s before it signs')
  const rekeySeed = f.secrets.get(phone)!
  const rekey = f.rekey(phone, lock, T0 + 600)
  add(rekey, rekeySeed, 'the phone gives the lock new keys; the CN stays')
  return {
    description:
      'One ledger event of each type: readable fields (hex for bytes), the signing input, canonical bytes, id and signature. ' +
      'Re-encode the fields, sign the signing input with signerSeed (Ed25519, RFC 8032), hash the bytes (SHA-256): all must match.',
    generator: 'test/vectors/ledger/generate.ts',
    signingPrefix: toHex(EVENT_SIGNING_PREFIX),
    domain: f.ledger.state.domain!,
    vectors: out,
  }
}

// ---- (b) refusals ------------------------------------------------------------------------------------------

interface Refusal {
  name: string
  code: string
  description: string
  prefix: EncodedEvent[]
  event: Uint8Array
  now?: number
  /** The miner's clock at intake, for the refused event only (the prefix is a log already taken in). */
  intake?: IntakeClock
}

function refusal(
  name: string,
  code: string,
  description: string,
  prefix: EncodedEvent[],
  event: Uint8Array | EncodedEvent,
  now?: number,
): Refusal {
  return {
    name,
    code,
    description,
    prefix,
    event: event instanceof Uint8Array ? event : event.bytes,
    ...(now === undefined ? {} : { now }),
  }
}

function intakeRefusal(
  name: string,
  code: string,
  description: string,
  prefix: EncodedEvent[],
  event: EncodedEvent,
  intake: IntakeClock,
): Refusal {
  return { ...refusal(name, code, description, prefix, event), intake }
}

function decodeRefusals(): Refusal[] {
  const { f, lock } = house()
  const auth = authorizeOf(f, lock)
  const pre = closure(f, [], auth.event.links)
  const field = (v: CborValue): Uint8Array => encodeCbor(v)
  const top = decodeCbor(auth.bytes) as CborValue[]
  const nested = new Uint8Array([0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x01])
  return [
    refusal(
      'truncated',
      'DECODE_CBOR',
      'the lock authorize with its last byte cut off',
      pre,
      auth.bytes.subarray(0, auth.bytes.length - 1),
    ),
    refusal('empty', 'DECODE_CBOR', 'zero bytes', pre, new Uint8Array(0)),
    refusal(
      'trailing-byte',
      'DECODE_TRAILING',
      'the lock authorize followed by one 0x00 byte',
      pre,
      concatBytes(auth.bytes, new Uint8Array([0])),
    ),
    refusal(
      'version-two-byte-head',
      'DECODE_NONCANONICAL',
      'version 1 written as 0x18 0x01 instead of 0x01 (RFC 8949 §4.2.1 shortest form)',
      pre,
      concatBytes(new Uint8Array([0x88, 0x18, 0x01]), auth.bytes.subarray(2)),
    ),
    refusal(
      'seven-fields',
      'DECODE_SHAPE',
      'the lock authorize without its signature field',
      pre,
      mutateTop(auth.bytes, t => t.slice(0, 7)),
    ),
    refusal(
      'nested-too-deep',
      'DECODE_SHAPE',
      'body replaced by arrays nested 9 deep (limit 8 below the event)',
      pre,
      rawArray([...top.slice(0, 6).map(field), nested, field(top[7]!)]),
    ),
    refusal(
      'subject-9-bytes',
      'DECODE_FIELD',
      'subject label of 9 bytes instead of 10',
      pre,
      mutateTop(auth.bytes, t => {
        t[2] = (t[2] as Uint8Array).subarray(0, 9)
        return t
      }),
    ),
    refusal(
      'role-out-of-range',
      'DECODE_FIELD',
      'authorize role 4 (roles are 0..3)',
      pre,
      mutateTop(auth.bytes, t => {
        ;(t[6] as CborValue[])[4] = 4
        return t
      }),
    ),
    refusal(
      'negative-version',
      'DECODE_FIELD',
      'version written as CBOR negative integer -1 (0x20)',
      pre,
      concatBytes(new Uint8Array([0x88, 0x20]), auth.bytes.subarray(2)),
    ),
    refusal(
      'map-body',
      'DECODE_FIELD',
      'body replaced by an empty CBOR map (0xa0): maps are not part of the format',
      pre,
      rawArray([...top.slice(0, 6).map(field), new Uint8Array([0xa0]), field(top[7]!)]),
    ),
    refusal(
      'oversize',
      'DECODE_OVERSIZE',
      'an authorize whose name makes it 4,100+ bytes (limit 4,096 per event)',
      pre,
      mutateTop(auth.bytes, t => {
        ;(t[6] as CborValue[])[7] = 'x'.repeat(4100)
        return t
      }),
    ),
    refusal(
      'version-2',
      'UNKNOWN_VERSION',
      'event version 2',
      pre,
      mutateTop(auth.bytes, t => {
        t[0] = 2
        return t
      }),
    ),
    refusal(
      'type-6',
      'UNKNOWN_TYPE',
      'event type 6 (types are 0..5)',
      pre,
      mutateTop(auth.bytes, t => {
        t[1] = 6
        return t
      }),
    ),
  ]
}

function genesisRefusals(): Refusal[] {
  const { f, lock } = house()
  const genesis = f.events[0]!
  const other = LedgerFleet.create({ tag: 'another-fleet' }).events[0]!
  const g = (tag: string, change: (u: UnsignedEvent) => UnsignedEvent): EncodedEvent => {
    const h = new LedgerFleet(nodeCrypto, tag)
    const seed = h.bytes(32)
    const kp = h.crypto.ed25519KeyPair(seed)
    const u = genesisEvent(
      h.crypto,
      {
        domain: 'smith.home.arpa',
        rootCertHash: h.bytes(32),
        spkiHash: h.bytes(32),
        ledgerKey: kp.publicKey,
        minerKey: kp.publicKey,
        nonce: h.bytes(12),
        notAfter: T0 + 20 * YEAR,
        name: 'home pc',
      },
      T0,
    )
    return signEvent(h.crypto, change(u), seed)
  }
  const badDomain = g('bad-domain', u => {
    const body = { ...(u.body as Extract<UnsignedEvent, { type: 'genesis' }>['body']), domain: 'Smith.Home.Arpa' }
    return { ...u, body } as UnsignedEvent
  })
  const notSelf = g('not-self', u => ({ ...u, issuer: new Uint8Array(10).fill(7) }) as UnsignedEvent)
  const wrongLabel = g(
    'wrong-label',
    u => ({ ...u, subject: new Uint8Array(10).fill(9), issuer: new Uint8Array(10).fill(9) }) as UnsignedEvent,
  )
  const flipped = decodeCbor(genesis.bytes) as CborValue[]
  const sig = Uint8Array.from(flipped[7] as Uint8Array)
  sig[0]! ^= 1
  flipped[7] = sig
  return [
    refusal('no-genesis', 'NO_GENESIS', 'an authorize offered to an empty ledger', [], authorizeOf(f, lock)),
    refusal(
      'second-genesis',
      'GENESIS_EXISTS',
      "another fleet's genesis offered to a ledger that has one",
      [genesis],
      other,
    ),
    refusal(
      'genesis-bad-domain',
      'GENESIS_INVALID',
      'genesis naming the fleet domain "Smith.Home.Arpa" (uppercase)',
      [],
      badDomain,
    ),
    refusal(
      'genesis-not-self-issued',
      'GENESIS_INVALID',
      'genesis whose issuer label differs from its subject label',
      [],
      notSelf,
    ),
    refusal(
      'genesis-label-not-derived',
      'CN_MISMATCH',
      'genesis whose subject = issuer label is not derived from its nonce and keys',
      [],
      wrongLabel,
    ),
    refusal(
      'genesis-bad-signature',
      'BAD_SIGNATURE',
      'the genesis with one bit of its signature flipped',
      [],
      encodeCbor(flipped),
    ),
  ]
}

function linkRefusals(): Refusal[] {
  const r: Refusal[] = []
  {
    const { f, laptop, phone, lock } = house()
    const auth = authorizeOf(f, lock)
    r.push(
      refusal('duplicate', 'DUPLICATE_EVENT', 'the lock authorize offered a second time', closure(f, [auth]), auth),
    )
    r.push(
      refusal(
        'certified-before-authorize',
        'MISSING_LINK',
        "the lock's certified event offered to a ledger without the lock's authorize",
        closure(f, [authorizeOf(f, phone)]),
        certifiedOf(f, lock),
      ),
    )
    const wrongFirstLink = authorizeEvent(f.crypto, f.binding(phone), request(f), T0 + 400)
    wrongFirstLink.links = [fromHex(f.binding(laptop).id)]
    r.push(
      refusal(
        'first-link-not-issuer',
        'LINK_MISMATCH',
        "an authorize issued by the phone whose first link is the laptop's binding",
        closure(f, [authorizeOf(f, lock)]),
        signWith(f, wrongFirstLink, f.secrets.get(phone)!),
      ),
    )
    const certWrongTarget = certifiedEvent(f.binding(lock), f.bytes(32), T0 + 400)
    certWrongTarget.links = [fromHex(f.binding(phone).id)]
    r.push(
      refusal(
        'certified-links-other-binding',
        'LINK_MISMATCH',
        "a certified event by the lock linking to the phone's binding",
        closure(f, [authorizeOf(f, lock)]),
        signWith(f, certWrongTarget, f.secrets.get(lock)!),
      ),
    )
    // CERTIFIED_NOT_SUBJECT cannot be reached (validate.ts resolves both link checks first): this is what happens instead.
    const certByParent = certifiedEvent(f.binding(lock), f.bytes(32), T0 + 400)
    certByParent.issuer = f.events.find(e => e.idHex === f.binding(phone).id)!.event.subject
    certByParent.links = [fromHex(f.binding(phone).id)]
    r.push(
      refusal(
        'certified-signed-by-parent',
        'CERTIFIED_NOT_SUBJECT',
        'a certified event for the lock issued and signed by the phone: refused by the subject rule, checked right after the links resolve',
        closure(f, [authorizeOf(f, lock)]),
        signWith(f, certByParent, f.secrets.get(phone)!),
      ),
    )
  }
  {
    const { f, phone, lock } = house()
    const oldLock = f.binding(lock)
    const rk = f.rekey(phone, lock, T0 + 1000)
    const fresh = f.rekeyWithSeed(phone, lock, T0 + 1200, false).event
    const { signature: _s, ...u } = { ...fresh.event, links: [fresh.event.links[0]!, fromHex(oldLock.id)] }
    r.push(
      refusal(
        'rekey-of-superseded-binding',
        'LINK_MISMATCH',
        "a rekey of the lock linking to the lock's binding that an earlier rekey replaced",
        closure(f, [rk]),
        signWith(f, u as UnsignedEvent, f.secrets.get(phone)!),
      ),
    )
  }
  return r
}

function issuerRefusals(): Refusal[] {
  const r: Refusal[] = []
  {
    const { f, phone, lock } = house()
    const early = authorizeBy(f, f.binding(phone), f.secrets.get(phone)!, T0 + 150)
    r.push(
      refusal(
        'issuer-not-yet-bound',
        'ISSUER_NOT_CURRENT',
        'an authorize by the phone dated T0+150, before the phone was bound (T0+200)',
        closure(f, [authorizeOf(f, lock)]),
        early,
      ),
    )
  }
  {
    const { f, laptop, phone, lock } = house()
    const oldPhone = f.binding(phone)
    const oldSecret = f.secrets.get(phone)!
    const rk = f.rekey(laptop, phone, T0 + 1000)
    r.push(
      refusal(
        'old-key-after-rekey',
        'ISSUER_NOT_CURRENT',
        "an authorize signed with the phone's old key, dated after the laptop rekeyed the phone",
        closure(f, [rk, authorizeOf(f, lock)]),
        authorizeBy(f, oldPhone, oldSecret, T0 + 1100),
      ),
    )
  }
  {
    const { f, phone } = house()
    const sensor = f.enroll(phone, {
      role: 'device',
      kind: 'sensor',
      name: 'short-lived',
      notAfter: T0 + 1000,
      time: T0 + 400,
    })
    const late = f.sign(certifiedEvent(f.binding(sensor), f.bytes(32), T0 + 1001), sensor, false)
    r.push(
      refusal(
        'issuer-expired',
        'ISSUER_EXPIRED',
        'a certified event by a device whose notAfter (T0+1000) passed one second before',
        closure(f, [authorizeOf(f, sensor)]),
        late,
      ),
    )
  }
  {
    const { f, laptop, phone, lock } = house()
    const rev = f.revoke(laptop, phone, {
      reason: 'compromised',
      effective: T0 + 2000,
      subtree: false,
      time: T0 + 2000,
    })
    r.push(
      refusal(
        'signed-after-compromise',
        'VOID_AFTER_REVOKE',
        'an authorize by the phone at T0+2000, the effective time of its revocation as compromised',
        closure(f, [rev, authorizeOf(f, lock)]),
        authorizeBy(f, f.binding(phone), f.secrets.get(phone)!, T0 + 2000),
      ),
    )
  }
  {
    const { f, laptop, phone, lock } = house()
    const rev = f.revoke(laptop, phone, { reason: 'lost', effective: T0 + 2000, subtree: false, time: T0 + 2000 })
    r.push(
      refusal(
        'signed-after-lost',
        'ISSUER_REVOKED',
        'an authorize by the phone at T0+2500, after its revocation as lost took effect (T0+2000)',
        closure(f, [rev, authorizeOf(f, lock)]),
        authorizeBy(f, f.binding(phone), f.secrets.get(phone)!, T0 + 2500),
      ),
    )
  }
  {
    const { f, laptop, lock } = house()
    const rev = f.revoke(f.l0, laptop, { reason: 'retired', effective: T0 + 3000, subtree: true, time: T0 + 3000 })
    const cert = f.sign(certifiedEvent(f.binding(lock), f.bytes(32), T0 + 3000), lock, false)
    r.push(
      refusal(
        'ancestor-subtree-revoked',
        'ISSUER_REVOKED',
        "a certified event by the lock at T0+3000, when L0's subtree revocation of the laptop takes effect",
        closure(f, [rev, certifiedOf(f, lock)]),
        cert,
      ),
    )
  }
  {
    const { f, laptop, phone, lock } = house()
    const rev = f.revoke(laptop, phone, { reason: 'lost', effective: T0 + 2000, subtree: false, time: T0 + 2000 })
    r.push(
      refusal(
        'back-dated-after-revocation',
        'ISSUER_REVOKED_IN_LOG',
        'an authorize by the phone dated T0+1500, offered after its revocation (effective T0+2000) is in the log',
        closure(f, [rev, authorizeOf(f, lock)]),
        authorizeBy(f, f.binding(phone), f.secrets.get(phone)!, T0 + 1500),
      ),
    )
  }
  {
    const { f, laptop, lock } = house()
    const rev = f.revoke(f.l0, laptop, { reason: 'compromised', effective: T0 + 3000, subtree: true, time: T0 + 3000 })
    const cert = f.sign(certifiedEvent(f.binding(lock), f.bytes(32), T0 + 2999), lock, false)
    r.push(
      refusal(
        'back-dated-after-ancestor-revocation',
        'ISSUER_REVOKED_IN_LOG',
        "a certified event by the lock dated T0+2999, offered after L0's subtree revocation of the laptop (effective T0+3000) is in the log",
        closure(f, [rev, certifiedOf(f, lock)]),
        cert,
      ),
    )
  }
  {
    const { f, phone, lock } = house()
    const pre = closure(f, [certifiedOf(f, lock)])
    const old = authorizeBy(f, f.binding(phone), f.secrets.get(phone)!, T0 + 1000)
    r.push(
      intakeRefusal(
        'time-too-old',
        'TIME_TOO_OLD',
        "an authorize dated 301 s before the miner's clock (limit 300 s of skew)",
        pre,
        old,
        { now: T0 + 1301 },
      ),
    )
    r.push(
      intakeRefusal(
        'time-before-head',
        'TIME_BEFORE_HEAD',
        "an authorize dated 301 s before the miner's last head, with the miner's clock behind that head",
        pre,
        old,
        { now: T0 + 1000, headTime: T0 + 1301 },
      ),
    )
  }
  {
    const { f, phone, lock } = house()
    const pre = closure(f, [certifiedOf(f, lock)])
    const future = authorizeBy(f, f.binding(phone), f.secrets.get(phone)!, T0 + 5000)
    r.push(
      refusal(
        'time-in-future',
        'TIME_IN_FUTURE',
        'an authorize dated 301 s after the validating clock (limit 300 s of skew)',
        pre,
        future,
        T0 + 5000 - 301,
      ),
    )
  }
  {
    const { f, laptop, phone } = house()
    const wrongKey = authorizeBy(f, f.binding(phone), f.secrets.get(laptop)!, T0 + 400)
    r.push(
      refusal(
        'signed-with-wrong-key',
        'BAD_SIGNATURE',
        "an authorize issued by the phone but signed with the laptop's ledger key",
        closure(f, [authorizeOf(f, phone)]),
        wrongKey,
      ),
    )
  }
  return r
}

function authorizeRefusals(): Refusal[] {
  const r: Refusal[] = []
  const { f, laptop, phone, lock } = house()
  const pre = closure(f, [certifiedOf(f, lock)])
  const by = (cn: string, time: number, over: Partial<AuthorizeRequest>): EncodedEvent =>
    authorizeBy(f, f.binding(cn), f.secrets.get(cn)!, time, over)
  r.push(
    refusal(
      'device-authorizes',
      'ROLE_CANNOT_DELEGATE',
      'the lock (role device) authorizes a sensor',
      pre,
      by(lock, T0 + 400, {}),
    ),
  )
  r.push(
    refusal(
      'member-authorizes-member',
      'ROLE_ESCALATION',
      'the phone (role member) authorizes a member',
      pre,
      by(phone, T0 + 400, { role: 'member', depth: 0 }),
    ),
  )
  r.push(
    refusal(
      'device-with-depth',
      'DEPTH_EXHAUSTED',
      'the phone authorizes a device with delegation depth 1 (devices must have 0)',
      pre,
      by(phone, T0 + 400, { depth: 1 }),
    ),
  )
  r.push(
    refusal(
      'child-depth-not-below-parent',
      'DEPTH_EXHAUSTED',
      "the laptop (depth 14) authorizes an admin with depth 14 (a child may have at most its parent's depth - 1)",
      pre,
      by(laptop, T0 + 400, { role: 'admin', depth: 14 }),
    ),
  )
  r.push(
    refusal(
      'not-after-beyond-parent',
      'NOT_AFTER_EXCEEDS_PARENT',
      "the phone authorizes a device whose notAfter is one second past the phone's",
      pre,
      by(phone, T0 + 400, { notAfter: f.binding(phone).notAfter + 1 }),
    ),
  )
  r.push(
    refusal(
      'not-after-passed',
      'NOT_AFTER_PASSED',
      'the phone authorizes at T0+1000 a device whose notAfter is T0+999',
      pre,
      by(phone, T0 + 1000, { notAfter: T0 + 999 }),
    ),
  )
  r.push(
    refusal(
      'label-not-derived',
      'CN_MISMATCH',
      'an authorize whose subject label is not derived from its nonce and keys',
      pre,
      (() => {
        const u = authorizeEvent(f.crypto, f.binding(phone), request(f), T0 + 400)
        u.subject = f.bytes(10)
        return signWith(f, u, f.secrets.get(phone)!)
      })(),
    ),
  )
  const lockAuth = authorizeOf(f, lock)
  r.push(
    refusal(
      'cn-authorized-twice',
      'CN_EXISTS',
      "the laptop authorizes the lock's CN again (same nonce and keys, so the same label)",
      pre,
      f.twinAuthorize(lockAuth, laptop, T0 + 400),
    ),
  )
  const lb = (lockAuth.event as Extract<EncodedEvent['event'], { type: 'authorize' }>).body
  r.push(
    refusal(
      'nonce-reused',
      'NONCE_REUSED',
      "the phone authorizes new keys with the lock's nonce (a different label, so a new CN)",
      pre,
      by(phone, T0 + 400, { nonce: lb.nonce }),
    ),
  )
  r.push(
    refusal(
      'name-not-printable',
      'NAME_NOT_PRINTABLE',
      'the phone authorizes a device whose name carries a terminal escape and a line break (a forged output line)',
      pre,
      by(phone, T0 + 400, { name: 'hall\u001b[2K\r    9  revoke' }),
    ),
  )
  r.push(
    refusal(
      'kind-not-printable',
      'NAME_NOT_PRINTABLE',
      'the phone authorizes a device whose kind carries a right-to-left override',
      pre,
      by(phone, T0 + 400, { kind: 'sen\u202esor' }),
    ),
  )
  return r
}

function otherRefusals(): Refusal[] {
  const r: Refusal[] = []
  const { f, laptop, phone, lock } = house()
  const sensor = f.enroll(phone, { role: 'device', kind: 'sensor', name: 'hall sensor', time: T0 + 400 })
  const cert = certifiedOf(f, lock)
  const certHash = (cert.event as Extract<EncodedEvent['event'], { type: 'certified' }>).body.certHash
  r.push(
    refusal(
      'certificate-recorded-twice',
      'CERTIFIED_DUPLICATE',
      'the lock records the same certificate hash again, one second later',
      closure(f, [cert]),
      f.sign(certifiedEvent(f.binding(lock), certHash, T0 + 302), lock, false),
    ),
  )
  r.push(
    refusal(
      'sibling-revokes',
      'REVOKE_NOT_ALLOWED',
      'the hall sensor revokes its sibling, the lock',
      closure(f, [cert, authorizeOf(f, sensor)]),
      f.revoke(sensor, lock, { time: T0 + 500 }, false),
    ),
  )
  r.push(
    refusal(
      'grandparent-rekeys',
      'REKEY_NOT_PARENT',
      'the laptop (grandparent) rekeys the lock',
      closure(f, [cert]),
      f.rekey(laptop, lock, T0 + 500, false),
    ),
  )
  r.push(
    refusal(
      'self-rekey-new-ledger-key',
      'REKEY_SELF_LIMITS',
      'the lock rekeys itself with a new ledger key (only its TLS key is its own to replace)',
      closure(f, [cert]),
      f.rekey(lock, lock, T0 + 500, false),
    ),
  )
  r.push(
    refusal(
      'descendant-sets-policy',
      'POLICY_NOT_ANCESTOR',
      'the lock sets a policy on the phone, its parent',
      closure(f, [cert]),
      f.policy(lock, phone, {}, T0 + 500, false),
    ),
  )
  r.push(
    refusal(
      'device-sets-own-policy',
      'POLICY_NOT_DELEGATOR',
      'the lock (a device: it may not delegate) sets a policy on itself',
      closure(f, [cert]),
      f.policy(lock, lock, {}, T0 + 500, false),
    ),
  )
  return r
}

/** Every refusal vector, each checked here against a fresh ledger with both crypto providers. */
export function refusalVectors(): { [k: string]: Json } {
  const all = [
    ...decodeRefusals(),
    ...genesisRefusals(),
    ...linkRefusals(),
    ...issuerRefusals(),
    ...authorizeRefusals(),
    ...otherRefusals(),
  ]
  for (const v of all) {
    for (const crypto of [nodeCrypto, portableCrypto]) {
      const l = new Ledger(crypto)
      const opts = v.now === undefined ? {} : { now: v.now }
      for (const e of v.prefix) l.ingest(e.bytes, opts)
      try {
        l.ingest(v.event, { ...opts, intake: v.intake })
        throw new Error(`vector ${v.name}: accepted, expected ${v.code}`)
      } catch (err) {
        if (!isKinError(err) || err.code !== v.code)
          throw new Error(`vector ${v.name}: expected ${v.code}, got ${String((err as Error).message)}`, { cause: err })
      }
    }
  }
  return {
    description:
      'Refused events, one or more per refusal code of the ledger codec (agent/codec/cbor.ts, agent/ledger/event.ts) and ingest validation ' +
      '(agent/ledger/validate.ts). Ingest every prefix event into a fresh ledger (all must be accepted), then the event: it must be refused with code. ' +
      'When now is given, validate every event with that clock (seconds since the epoch). When intake is given, validate the ' +
      'refused event as the miner takes it in: claimed time within 300 s of intake.now and not before intake.headTime less 300 s.',
    generator: 'test/vectors/ledger/generate.ts',
    vectors: all.map(v => ({
      name: v.name,
      code: v.code,
      description: v.description,
      ...(v.now === undefined ? {} : { now: v.now }),
      ...(v.intake === undefined ? {} : { intake: { ...v.intake } }),
      prefix: v.prefix.map(e => toHex(e.bytes)),
      event: toHex(v.event),
    })),
  }
}

// ---- sizes -------------------------------------------------------------------------------------------------

const TOP_FIELDS = ['version', 'type', 'subject', 'issuer', 'links', 'time', 'body', 'signature']
const BODY_FIELDS: Record<string, string[]> = {
  authorize: ['spkiHash', 'ledgerKey', 'nonce', 'notAfter', 'role', 'depth', 'kind', 'name'],
  certified: ['certHash'],
}

function breakdown(e: EncodedEvent): Json {
  const top = decodeCbor(e.bytes) as CborValue[]
  const body = top[6] as CborValue[]
  const fields: Array<{ field: string; bytes: number }> = [{ field: 'array head (8 items)', bytes: 1 }]
  top.forEach((v, i) => {
    if (i === 6) {
      fields.push({ field: `body array head (${body.length} items)`, bytes: 1 })
      body.forEach((b, j) =>
        fields.push({ field: `body.${BODY_FIELDS[e.event.type]![j]}`, bytes: encodeCbor(b).length }),
      )
    } else {
      fields.push({ field: TOP_FIELDS[i]!, bytes: encodeCbor(v).length })
    }
  })
  const sum = fields.reduce((n, x) => n + x.bytes, 0)
  if (sum !== e.bytes.length)
    throw new Error(`size breakdown of ${e.event.type} sums to ${sum}, event has ${e.bytes.length}`)
  return { type: e.event.type, total: e.bytes.length, bytes: toHex(e.bytes), fields }
}

/** The bytes an enrolled device costs the ledger: its authorize and certified events, field by field. */
export function sizeVectors(): { [k: string]: Json } {
  const { f, lock } = house()
  const auth = authorizeOf(f, lock)
  const cert = certifiedOf(f, lock)
  const name = (auth.event.body as { name: string }).name
  if (utf8(name).length !== 12) throw new Error('the size vector needs a 12-character device name')
  const label = deriveLabel(
    nodeCrypto,
    (auth.event.body as { nonce: Uint8Array }).nonce,
    (auth.event.body as { spkiHash: Uint8Array }).spkiHash,
    (auth.event.body as { ledgerKey: Uint8Array }).ledgerKey,
  )
  if (toHex(label) !== toHex(auth.event.subject)) throw new Error('size vector: label not derived')
  return {
    description:
      'Bytes per enrolled device: the authorize + certified pair of a device (role device, kind "lock", 12-character name, 12-byte nonce).',
    generator: 'test/vectors/ledger/generate.ts',
    name,
    kind: 'lock',
    pairTotal: auth.bytes.length + cert.bytes.length,
    events: [breakdown(auth), breakdown(cert)],
  }
}

function main(): void {
  const dir = new URL('./', import.meta.url)
  const write = (file: string, value: Json): void =>
    writeFileSync(new URL(file, dir), JSON.stringify(value, null, 2) + '\n')
  write('encodings.json', encodingVectors())
  write('refusals.json', refusalVectors())
  write('sizes.json', sizeVectors())
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) main()
