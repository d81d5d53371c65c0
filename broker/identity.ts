/** @module Who a broker session is: a fleet device (by its certificate) or a pairing session (by its one-time code). */

/** A session that logged in with a fleet certificate; `cn` is also its MQTT client id. */
export interface DeviceIdentity {
  readonly kind: 'device'
  readonly cn: string
  /** SHA-256 of the certificate's SPKI and of the certificate itself, rechecked against the ledger after changes. */
  readonly spkiHash: Uint8Array
  readonly certHash: Uint8Array
  /** The certificate's notAfter (seconds): the session ends with it. */
  readonly notAfter: number
}

/** A session that logged in with a pairing code; it may only use `kin/<fid>/pair/<inviteId>/…`. */
export interface PairIdentity {
  readonly kind: 'pair'
  readonly inviteId: string
}

/** Either kind of logged-in session. */
export type SessionIdentity = DeviceIdentity | PairIdentity

/** The MQTT client id a pairing session must use (docs/PAIRING.md step 2). */
export function pairingClientId(inviteId: string): string {
  return `pair-${inviteId}`
}

/** The MQTT user name of a pairing session: `pair:<inviteId>`. */
export const PAIR_USERNAME_PREFIX = 'pair:'

/** A short description for logs. */
export function describeIdentity(id: SessionIdentity): Record<string, string> {
  return id.kind === 'device' ? { kind: 'device', cn: id.cn } : { kind: 'pair', inviteId: id.inviteId }
}
