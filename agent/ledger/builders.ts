/** @module Builders of unsigned events: what a parent, a child or L0 signs at each step of a device's life. */
import { fromHex } from '../codec/bytes.ts'
import type { CryptoProvider } from '../ports/platform.ts'
import { deriveLabel, labelFromBase32 } from './names.ts'
import {
  EVENT_VERSION,
  type Binding,
  type GenesisBody,
  type PolicyBody,
  type RevokeBody,
  type RoleName,
  type UnsignedEvent,
} from './types.ts'

/** Bytes of authorization nonces kinship generates. */
export const NONCE_BYTES = 12

/** The genesis event of a new fleet; its subject label is derived from the nonce and L0's keys. */
export function genesisEvent(
  crypto: CryptoProvider,
  body: Omit<GenesisBody, 'nonce'> & { nonce?: Uint8Array },
  time: number,
): UnsignedEvent {
  const nonce = body.nonce ?? crypto.randomBytes(NONCE_BYTES)
  const label = deriveLabel(crypto, nonce, body.spkiHash, body.ledgerKey)
  return {
    version: EVENT_VERSION,
    type: 'genesis',
    subject: label,
    issuer: label,
    links: [],
    time,
    body: { ...body, nonce },
  }
}

/** What a parent needs to know about a child to authorize it (the request of docs/PAIRING.md step 3 plus the parent's choices). */
export interface AuthorizeRequest {
  spkiHash: Uint8Array
  ledgerKey: Uint8Array
  role: RoleName
  depth: number
  notAfter: number
  kind: string
  name: string
  nonce?: Uint8Array
}

/** The authorization proof a parent signs for a child; the child's label commits to the nonce and its keys. */
export function authorizeEvent(
  crypto: CryptoProvider,
  parent: Binding,
  req: AuthorizeRequest,
  time: number,
): UnsignedEvent {
  const nonce = req.nonce ?? crypto.randomBytes(NONCE_BYTES)
  const label = deriveLabel(crypto, nonce, req.spkiHash, req.ledgerKey)
  return {
    version: EVENT_VERSION,
    type: 'authorize',
    subject: label,
    issuer: labelFromBase32(parent.label),
    links: [fromHex(parent.id)],
    time,
    body: {
      spkiHash: req.spkiHash,
      ledgerKey: req.ledgerKey,
      nonce,
      notAfter: req.notAfter,
      role: req.role,
      depth: req.depth,
      kind: req.kind,
      name: req.name,
    },
  }
}

/** The child's record of the certificate it received, signed with its own ledger key. */
export function certifiedEvent(self: Binding, certHash: Uint8Array, time: number): UnsignedEvent {
  const label = labelFromBase32(self.label)
  return {
    version: EVENT_VERSION,
    type: 'certified',
    subject: label,
    issuer: label,
    links: [fromHex(self.id)],
    time,
    body: { certHash },
  }
}

/** A revocation of `target` by `issuer` (the subject itself or an ancestor). */
export function revokeEvent(issuer: Binding, target: Binding, body: RevokeBody, time: number): UnsignedEvent {
  return {
    version: EVENT_VERSION,
    type: 'revoke',
    subject: labelFromBase32(target.label),
    issuer: labelFromBase32(issuer.label),
    links: [fromHex(issuer.id), fromHex(target.id)],
    time,
    body,
  }
}

/** New keys for `target`'s CN, signed by its parent. */
export function rekeyEvent(
  crypto: CryptoProvider,
  parent: Binding,
  target: Binding,
  keys: { spkiHash: Uint8Array; ledgerKey: Uint8Array; notAfter: number; nonce?: Uint8Array },
  time: number,
): UnsignedEvent {
  return {
    version: EVENT_VERSION,
    type: 'rekey',
    subject: labelFromBase32(target.label),
    issuer: labelFromBase32(parent.label),
    links: [fromHex(parent.id), fromHex(target.id)],
    time,
    body: {
      spkiHash: keys.spkiHash,
      ledgerKey: keys.ledgerKey,
      nonce: keys.nonce ?? crypto.randomBytes(NONCE_BYTES),
      notAfter: keys.notAfter,
    },
  }
}

/** Trust criteria for `target` (and its subtree when body.subtree), set by `issuer`, an ancestor. */
export function policyEvent(issuer: Binding, target: Binding, body: PolicyBody, time: number): UnsignedEvent {
  return {
    version: EVENT_VERSION,
    type: 'policy',
    subject: labelFromBase32(target.label),
    issuer: labelFromBase32(issuer.label),
    links: [fromHex(issuer.id), fromHex(target.id)],
    time,
    body,
  }
}
