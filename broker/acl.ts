/** @module Topic ACLs of L0's broker (DESIGN.md "MQTT topics", docs/PAIRING.md): who may publish and subscribe where. */
import { fleetTopics, parseTopic, type PairLeaf } from '../agent/gossip/topics.ts'
import { labelOfCn } from '../agent/ledger/names.ts'
import type { DeviceIdentity, SessionIdentity } from './identity.ts'

/** What the ACL needs to know beyond the session itself. */
export interface AclContext {
  /** The fleet domain whose topic id `<fid>` heads `kin/<fid>/…`. */
  readonly fleet: string
  /** Whether device `cn` registered invite `inviteId` and the invite is still on record. */
  ownsInvite(cn: string, inviteId: string): boolean
  /** Whether the ledger records a certified event for this session's certificate (see login.ts, "fresh"). */
  isCertified(id: DeviceIdentity): boolean
}

// The CA's answer (`cert`) is published by L0's services only: nobody else has anything true to say there.
const CLIENT_PAIR_LEAVES: ReadonlySet<string> = new Set<PairLeaf>(['request', 'authorize', 'csr'])

/**
 * True when every topic that MQTT filter `filter` can match is also matched by `pattern` (both valid filters).
 * [MQTT-4.7.1-2]: `a/#` matches `a` itself too, which is why a pattern ending in `/#` covers its parent level.
 */
export function filterCovers(pattern: string, filter: string): boolean {
  const p = pattern.split('/'),
    f = filter.split('/')
  for (let i = 0; i < f.length; i++) {
    const pl = p[i]
    if (pl === undefined) return false
    if (pl === '#') return true
    const fl = f[i]!
    if (fl === '#') return false
    if (pl === '+') continue
    if (fl !== pl) return false
  }
  return p.length === f.length || (p.length === f.length + 1 && p[f.length] === '#')
}

/** The invite id and the levels after it of a topic or filter `kin/<fid>/pair/<inviteId>/…`, else undefined. */
export function parsePairTopic(topic: string, fleet: string): { inviteId: string; rest: string[] } | undefined {
  const parsed = parseTopic(fleet, topic)
  return parsed?.kind === 'pair' ? { inviteId: parsed.inviteId, rest: parsed.rest } : undefined
}

/** The target and sender CNs of an inbox topic `kin/<fid>/dev/<target label>/inbox/<sender label>`, else undefined. */
export function parseInboxTopic(topic: string, fleet: string): { target: string; sender: string } | undefined {
  const parsed = parseTopic(fleet, topic)
  return parsed?.kind === 'inbox' ? { target: parsed.target, sender: parsed.sender } : undefined
}

/** Whether `cn` is a device name of fleet `fleet` (so it can stand as one topic level). */
export function isFleetCn(cn: string, fleet: string): boolean {
  try {
    labelOfCn(cn, fleet)
    return true
  } catch {
    return false
  }
}

function isClientPairTopic(topic: string, fleet: string, allowed: (inviteId: string) => boolean): boolean {
  const pair = parsePairTopic(topic, fleet)
  return pair !== undefined && pair.rest.length === 1 && CLIENT_PAIR_LEAVES.has(pair.rest[0]!) && allowed(pair.inviteId)
}

/**
 * May this session publish on `topic` (a topic name, no wildcards)? A device: its own `submit`, `sync/…/req` and `delegated/…/req`,
 * any fleet device's inbox under its own label as the sender level (so every inbox message names its true sender: a
 * device challenges only the identity whose session asked, PROTOCOL.md §12.4), and the client leaves of the pairing sessions of invites it registered. A pairing
 * session: the client leaves of its own pairing topic. Nobody but L0's services: `ledger/head`, `ledger/events`,
 * `sync/<label>/resp`, `delegated/<label>/head`, `pair/<id>/cert`. A freshly enrolled device whose certified event L0 does not hold yet may
 * only submit (that is how the certified event arrives, docs/PAIRING.md step 7).
 */
export function publishAllowed(id: SessionIdentity, topic: string, ctx: AclContext): boolean {
  if (id.kind === 'pair') return isClientPairTopic(topic, ctx.fleet, inviteId => inviteId === id.inviteId)
  // Device levels are compared as the CNs they stand for: the session's own label, nobody else's.
  const parsed = parseTopic(ctx.fleet, topic)
  if (parsed?.kind === 'submit') return parsed.cn === id.cn
  if (!ctx.isCertified(id)) return false
  if (parsed?.kind === 'syncReq' || parsed?.kind === 'delegatedReq') return parsed.cn === id.cn
  if (parsed?.kind === 'inbox') return parsed.sender === id.cn && isFleetCn(parsed.target, ctx.fleet)
  return isClientPairTopic(topic, ctx.fleet, inviteId => ctx.ownsInvite(id.cn, inviteId))
}

/** The filters a session may subscribe to (or to any narrower filter); the invite pattern only for `filter`'s own invite. */
export function subscribePatterns(id: SessionIdentity, filter: string, ctx: AclContext): string[] {
  const t = fleetTopics(ctx.fleet)
  if (id.kind === 'pair') return [t.pairAll(id.inviteId)]
  const patterns = [t.head, t.events, t.syncResp(id.cn), t.inboxAll(id.cn), t.delegatedHead(id.cn)]
  const pair = parsePairTopic(filter, ctx.fleet)
  // Only a literal invite id can name an invite; `+` or `#` there would reach other parents' sessions.
  if (pair !== undefined && pair.inviteId !== '+' && pair.inviteId !== '#' && ctx.ownsInvite(id.cn, pair.inviteId))
    patterns.push(t.pairAll(pair.inviteId))
  return patterns
}

/** May this session subscribe to `filter`? Only when one allowed pattern covers everything the filter can match. */
export function subscribeAllowed(id: SessionIdentity, filter: string, ctx: AclContext): boolean {
  if (id.kind === 'device' && !ctx.isCertified(id)) return false
  return subscribePatterns(id, filter, ctx).some(p => filterCovers(p, filter))
}

/**
 * What a session whose identity was just revoked may still do until L0 closes it (l0.ts REVOKED_GRACE_MS): receive
 * the ledger's head and events and its own sync answers, and ask its own sync — so the device reads its revocation
 * in its own verified ledger before it is cut off. Nothing it could act with: no submit, no inbox, no pairing.
 */
export function leavingAllows(cn: string, topic: string, fleet: string): boolean {
  const t = fleetTopics(fleet)
  return (
    topic === t.head ||
    topic === t.events ||
    topic === t.syncResp(cn) ||
    topic === t.syncReq(cn) ||
    topic === t.delegatedHead(cn)
  )
}
