/** @module L0's invite book: registered pairing invites and their state, kept durably in the home's invites.json. */
import { KinError, VerificationError } from '../agent/errors.ts'
import type { Invite } from '../agent/enroll/invite.ts'
import { ROLE, type RoleName } from '../agent/ledger/types.ts'
import { JournalFile, readJournalRecords, type JournalChange, type JournalFormat } from './journal-file.ts'

/** File name of the invite book in L0's home. */
export const INVITES_FILE = 'invites.json'
/**
 * How long an invite stays on record after it expires: a late login still gets CONNACK 5 (expired) rather than
 * 4 (unknown), and an enrollment that logged in just before expiry can finish. Then it is purged.
 */
export const INVITE_RETENTION_SECONDS = 3600
/** Longest life of an invite L0 registers: a pairing code is meant for minutes, not for a drawer. */
export const MAX_INVITE_TTL_SECONDS = 7 * 86400
/** Invites one parent may have open at once (pending or logged in, not expired). */
export const MAX_OPEN_INVITES_PER_PARENT = 32

/**
 * pending: not logged in yet; used: the code logged in once (it never works again); done: a certificate was issued;
 * withdrawn: its parent withdrew it before that (its `kin invite` was stopped): no login, no certificate.
 */
export type InviteState = 'pending' | 'used' | 'done' | 'withdrawn'

/** An invite as L0 keeps it. */
export interface StoredInvite extends Invite {
  state: InviteState
  registered: number
  usedAt?: number
  withdrawnAt?: number
  /** CN of the device the CA issued a certificate to under this invite. */
  enrolledCn?: string
}

const ROLE_NAMES = Object.keys(ROLE) as RoleName[]

function sameRegistration(a: Invite, b: Invite): boolean {
  return (
    a.inviteId === b.inviteId &&
    a.loginVerifier === b.loginVerifier &&
    a.parentCn === b.parentCn &&
    a.role === b.role &&
    a.name === b.name &&
    a.expires === b.expires &&
    a.time === b.time &&
    a.rekeyCn === b.rekeyCn
  )
}

function damaged(path: string, why: string, cause?: unknown): KinError {
  return new KinError(
    'STORAGE_DAMAGED',
    `${path} is damaged (${why}); pending invites cannot be trusted — move invites.json and invites.journal away to start with no invites`,
    { cause, detail: { path } },
  )
}

function readRecord(path: string, v: unknown): StoredInvite {
  const r = v as Record<string, unknown>
  const ok =
    typeof r === 'object' &&
    r !== null &&
    typeof r.inviteId === 'string' &&
    /^[0-9a-f]{16}$/.test(r.inviteId) &&
    typeof r.loginVerifier === 'string' &&
    /^[0-9a-f]{64}$/.test(r.loginVerifier) &&
    typeof r.parentCn === 'string' &&
    typeof r.name === 'string' &&
    ROLE_NAMES.includes(r.role as RoleName) &&
    Number.isSafeInteger(r.expires) &&
    Number.isSafeInteger(r.time) &&
    Number.isSafeInteger(r.registered) &&
    (r.rekeyCn === undefined || typeof r.rekeyCn === 'string') &&
    (r.state === 'pending' || r.state === 'used' || r.state === 'done' || r.state === 'withdrawn')
  if (!ok) throw damaged(path, `malformed invite record ${JSON.stringify(v).slice(0, 80)}`)
  return r as unknown as StoredInvite
}

const FORMAT: JournalFormat<StoredInvite> = {
  field: 'invites',
  key: r => r.inviteId,
  read: (v, where) => readRecord(where, v),
  damaged,
}

/**
 * The invites on record in the book at `path` as another process sees them, changing nothing on disk (L0 may be
 * writing it). Tries again when it read across a compaction; STORAGE_DAMAGED when the book is damaged.
 */
export function readInvites(path: string): StoredInvite[] {
  return readJournalRecords(path, FORMAT)
}

/**
 * The invites L0 accepted. Every change is appended to invites.journal and fsynced before it takes effect in memory,
 * so a pending invite survives a restart and a used code stays used (journal-file.ts: the snapshot invites.json
 * plus the journal, compacted at open and when the journal outgrows the book).
 */
export class InviteBook {
  readonly path: string
  private readonly store: JournalFile<StoredInvite>

  private constructor(store: JournalFile<StoredInvite>) {
    this.path = store.path
    this.store = store
  }

  /**
   * Reads the book at `path` (none yet: empty; a version 1 book is migrated). A last line cut short by a power loss
   * is dropped and reported through `warn`; STORAGE_DAMAGED when the book is damaged otherwise.
   */
  static open(path: string, warn: (message: string) => void = m => process.emitWarning(m)): InviteBook {
    const store = JournalFile.open(path, FORMAT)
    if (store.tornTail !== undefined)
      warn(`${store.journalPath}: dropped a last line cut short (${store.tornTail.length} bytes, an interrupted write)`)
    return new InviteBook(store)
  }

  private get invites(): ReadonlyMap<string, StoredInvite> {
    return this.store.map
  }

  /** The invite with this id, if on record. */
  get(inviteId: string): StoredInvite | undefined {
    return this.invites.get(inviteId)
  }

  /** Every invite on record, oldest registration first. */
  list(): StoredInvite[] {
    return [...this.invites.values()]
  }

  /** Whether `cn` registered invite `inviteId` (still on record). */
  ownedBy(cn: string, inviteId: string): boolean {
    return this.invites.get(inviteId)?.parentCn === cn
  }

  /**
   * Records a verified registration. The same registration again is accepted unchanged (a parent may resend);
   * another one under a known id, an over-long life or too many open invites of one parent: INVITE_REFUSED.
   */
  register(invite: Invite, now: number): 'registered' | 'unchanged' {
    const stored = this.registration(invite, now)
    if (stored === 'unchanged') return stored
    this.commit([{ set: stored }])
    return 'registered'
  }

  /** As register, answered once the registration is durable under a group commit (L0's inbox: many at once). */
  async registerGrouped(invite: Invite, now: number): Promise<'registered' | 'unchanged'> {
    const stored = this.registration(invite, now)
    if (stored === 'unchanged') return stored
    await this.store.applyGrouped([{ set: stored }])
    return 'registered'
  }

  // The checks of a registration against the book as it will be once every waiting change is durable.
  private registration(invite: Invite, now: number): StoredInvite | 'unchanged' {
    const known = this.store.latest(invite.inviteId)
    if (known !== undefined) {
      if (sameRegistration(known, invite)) return 'unchanged'
      throw new VerificationError(
        'INVITE_REFUSED',
        `invite id ${invite.inviteId} is already registered; draw a new code`,
      )
    }
    if (invite.expires - now > MAX_INVITE_TTL_SECONDS) {
      throw new VerificationError(
        'INVITE_REFUSED',
        `an invite may live at most ${MAX_INVITE_TTL_SECONDS / 86400} days; use a shorter --ttl`,
      )
    }
    let open = 0
    for (const i of this.store.latestRecords())
      if (i.parentCn === invite.parentCn && (i.state === 'pending' || i.state === 'used') && i.expires > now) open++
    if (open >= MAX_OPEN_INVITES_PER_PARENT) {
      throw new VerificationError(
        'INVITE_REFUSED',
        `${invite.parentCn} already has ${open} open invites; wait for them to be used or expire`,
      )
    }
    return {
      inviteId: invite.inviteId,
      loginVerifier: invite.loginVerifier,
      parentCn: invite.parentCn,
      role: invite.role,
      name: invite.name,
      expires: invite.expires,
      time: invite.time,
      state: 'pending',
      registered: now,
      ...(invite.rekeyCn === undefined ? {} : { rekeyCn: invite.rekeyCn }),
    }
  }

  /** The code logged in: it never works again. */
  markUsed(inviteId: string, now: number): void {
    this.update(inviteId, r => ({ ...r, state: 'used', usedAt: now }))
  }

  /**
   * As markUsed, answered once durable under a group commit (L0's pairing logins at once). The invite must still be
   * pending counting the changes that wait: of two logins with one code at once, the second is PAIR_CODE_USED.
   */
  async markUsedGrouped(inviteId: string, now: number): Promise<void> {
    const r = this.store.latest(inviteId)
    if (r === undefined) throw new KinError('INVITE_REFUSED', `invite ${inviteId} is not on record`)
    if (r.state === 'withdrawn')
      throw new VerificationError('PAIR_WITHDRAWN', `invite ${inviteId} was withdrawn by ${r.parentCn}`)
    if (r.state !== 'pending')
      throw new VerificationError('PAIR_CODE_USED', `the code of invite ${inviteId} was already used`)
    await this.store.applyGrouped([{ set: { ...r, state: 'used', usedAt: now } }])
  }

  /** The CA issued a certificate under this invite: no second one. */
  markDone(inviteId: string, enrolledCn: string): void {
    this.update(inviteId, r => ({ ...r, state: 'done', enrolledCn }))
  }

  /** As markDone, answered once durable under a group commit (L0's CA: many enrollments at once). */
  async markDoneGrouped(inviteId: string, enrolledCn: string): Promise<void> {
    const r = this.store.latest(inviteId)
    if (r === undefined) throw new KinError('INVITE_REFUSED', `invite ${inviteId} is not on record`)
    await this.store.applyGrouped([{ set: { ...r, state: 'done', enrolledCn } }])
  }

  /**
   * The parent withdraws its invite: the code never logs in again and the CA issues nothing under it. Withdrawing
   * twice is accepted; an invite a certificate was issued under is refused ENROLL_STATE (revoke the device instead).
   */
  withdraw(inviteId: string, now: number): void {
    // A change still waiting for its group commit counts: an invite being marked done is not withdrawn under it.
    const r = this.store.latest(inviteId)
    if (r?.state === 'withdrawn') return
    if (r?.state === 'done')
      throw new VerificationError(
        'ENROLL_STATE',
        `a certificate was already issued under invite ${inviteId} (to ${r.enrolledCn}); revoke that device instead`,
      )
    this.update(inviteId, x => ({ ...x, state: 'withdrawn', withdrawnAt: now }))
  }

  /** Drops invites expired more than INVITE_RETENTION_SECONDS ago; returns them. */
  purge(now: number): StoredInvite[] {
    const gone = this.list().filter(i => now > i.expires + INVITE_RETENTION_SECONDS)
    this.commit(gone.map(i => ({ del: i.inviteId })))
    return gone
  }

  private update(inviteId: string, change: (r: StoredInvite) => StoredInvite): void {
    const r = this.store.latest(inviteId)
    if (r === undefined) throw new KinError('INVITE_REFUSED', `invite ${inviteId} is not on record`)
    this.commit([{ set: change(r) }])
  }

  // The journal line is written and fsynced first; memory changes only once the disk holds the change.
  private commit(changes: JournalChange<StoredInvite>[]): void {
    this.store.apply(changes)
  }
}
