/** @module The broker's logged-in sessions and who each one is; the ACLs and the revocation sweep read it. */
import type { SessionIdentity } from './identity.ts'

/** One logged-in session as L0 reports it. */
export interface L0Session {
  readonly clientId: string
  readonly identity: SessionIdentity
  /** When the login was accepted (milliseconds since the epoch). */
  readonly since: number
  readonly remote: string | undefined
}

/**
 * Sessions keyed by the broker's client object. A session is added when its login is accepted and removed when
 * its connection closes or L0 ends it; a client without an entry is allowed nothing.
 */
export class Sessions<C extends object> {
  private readonly byClient = new Map<C, L0Session>()
  /** Sessions whose identity was revoked, kept open a moment so the device learns why (l0.ts, REVOKED_GRACE_MS). */
  private readonly leaving = new Set<C>()

  /** Records an accepted login. */
  add(client: C, session: L0Session): void {
    this.byClient.set(client, session)
  }

  /** Forgets a session; its client is allowed nothing from now on. */
  remove(client: C): L0Session | undefined {
    const s = this.byClient.get(client)
    this.byClient.delete(client)
    this.leaving.delete(client)
    return s
  }

  /** Marks a session as leaving: from now on it may only read the ledger topics and ask its own sync (acl.ts leavingAllows). */
  markLeaving(client: C): void {
    if (this.byClient.has(client)) this.leaving.add(client)
  }

  /** Whether a session is leaving (its identity revoked, its close scheduled). */
  isLeaving(client: C): boolean {
    return this.leaving.has(client)
  }

  /** The identity a client logged in with, if it still holds a session. */
  identityOf(client: C): SessionIdentity | undefined {
    return this.byClient.get(client)?.identity
  }

  /** Every session with its client. */
  entries(): Array<[C, L0Session]> {
    return [...this.byClient.entries()]
  }

  /** Device sessions by CN (a CN has at most one: its client id). */
  clientsByCn(): Map<string, L0Session> {
    const out = new Map<string, L0Session>()
    for (const s of this.byClient.values()) if (s.identity.kind === 'device') out.set(s.identity.cn, s)
    return out
  }

  /** Pairing sessions by invite id. */
  pairingSessions(): Map<string, L0Session> {
    const out = new Map<string, L0Session>()
    for (const s of this.byClient.values()) if (s.identity.kind === 'pair') out.set(s.identity.inviteId, s)
    return out
  }
}
