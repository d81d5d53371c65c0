/**
 * @module The MQTT topics of a fleet (DESIGN.md, "MQTT topics"), built and parsed in one place. No level holds a dot:
 * NATS refuses dotted subjects and RabbitMQ turns dots into level separators, so the fleet domain stands as its topic
 * id (`.` → `_`) and a device as the 16-character label of its CN (`<label>.<fleet domain>`).
 */
import { KinError } from '../errors.ts'

/** The first level of every kinship topic. */
export const TOPIC_ROOT = 'kin'

/** The topic id of fleet domain `fleet`: its dots as `_` (DNS labels hold no `_`, so two fleets never share one). */
export function fleetTopicId(fleet: string): string {
  return fleet.split('.').join('_')
}

/**
 * The topic level of device `cn` of fleet `fleet`: its label. `+` passes through (a filter level). Throws KinError
 * CERT_NAMES for a name that is not `<label>.<fleet>` or whose label could not stand as one level.
 */
export function deviceLevel(fleet: string, cn: string): string {
  if (cn === '+') return cn
  const suffix = '.' + fleet
  const label = cn.endsWith(suffix) ? cn.slice(0, -suffix.length) : ''
  if (label.length === 0 || /[./+#\0]/.test(label))
    throw new KinError('CERT_NAMES', `"${cn}" is not a device name of fleet ${fleet}`)
  return label
}

/** The CN a device level of fleet `fleet` stands for, else undefined (empty, dotted or a wildcard). */
export function cnOfLevel(fleet: string, level: string | undefined): string | undefined {
  if (level === undefined || level.length === 0 || /[./+#\0]/.test(level)) return undefined
  return `${level}.${fleet}`
}

/** Topic names for fleet `F`; every device is named by its CN and written as its label. */
export function fleetTopics(fleet: string) {
  const base = `${TOPIC_ROOT}/${fleetTopicId(fleet)}`
  const dev = (cn: string) => deviceLevel(fleet, cn)
  return {
    fleet,
    base,
    /** Pairing session of one invite: request, authorize, csr, cert. */
    pair: (inviteId: string, leaf: PairLeaf) => `${base}/pair/${inviteId}/${leaf}`,
    pairAll: (inviteId: string) => `${base}/pair/${inviteId}/#`,
    /** Every pairing session's leaf `leaf` (`+` for the invite): what L0's CA serves. */
    pairLeafAll: (leaf: PairLeaf) => `${base}/pair/+/${leaf}`,
    /** Device `cn` submits its events to the miner. */
    submit: (cn: string) => `${base}/ledger/submit/${dev(cn)}`,
    submitAll: `${base}/ledger/submit/+`,
    /** Retained signed head, and new events, published by the miner only. */
    head: `${base}/ledger/head`,
    events: `${base}/ledger/events`,
    /** Sync request/response of device `cn`. */
    syncReq: (cn: string) => `${base}/ledger/sync/${dev(cn)}/req`,
    syncResp: (cn: string) => `${base}/ledger/sync/${dev(cn)}/resp`,
    syncReqAll: `${base}/ledger/sync/+/req`,
    /** The delegated tier (PROTOCOL.md §11.6): L0's MACed heads for device `cn` (L0 only), and its boot request. */
    delegatedHead: (cn: string) => `${base}/ledger/delegated/${dev(cn)}/head`,
    delegatedReq: (cn: string) => `${base}/ledger/delegated/${dev(cn)}/req`,
    delegatedReqAll: `${base}/ledger/delegated/+/req`,
    /**
     * What device `senderCn` writes into device `cn`'s inbox: challenges, invite registrations (L0), replies. The
     * broker lets a session publish there only under its own label, so the last level is the true sender.
     */
    inbox: (cn: string, senderCn: string) => `${base}/dev/${dev(cn)}/inbox/${dev(senderCn)}`,
    /** Device `cn`'s whole inbox, every sender: what it subscribes to. */
    inboxAll: (cn: string) => `${base}/dev/${dev(cn)}/inbox/+`,
  }
}

/** A topic (or filter) of a fleet, parsed; devices named by CN. Wildcard levels stay as they are in `inviteId`/`rest`. */
export type ParsedTopic =
  | { kind: 'pair'; inviteId: string; rest: string[] }
  | { kind: 'submit'; cn: string }
  | { kind: 'head' }
  | { kind: 'events' }
  | { kind: 'syncReq'; cn: string }
  | { kind: 'syncResp'; cn: string }
  | { kind: 'delegatedHead'; cn: string }
  | { kind: 'delegatedReq'; cn: string }
  | { kind: 'inbox'; target: string; sender: string }

/**
 * What topic `topic` of fleet `fleet` is, else undefined (another fleet, another shape, or a device level that is
 * not a plain label). Pairing topics are parsed for filters too (the invite level may be `+` or `#`).
 */
export function parseTopic(fleet: string, topic: string): ParsedTopic | undefined {
  const p = topic.split('/')
  if (p.length < 3 || p[0] !== TOPIC_ROOT || p[1] !== fleetTopicId(fleet)) return undefined
  if (p[2] === 'pair' && p.length >= 4) return { kind: 'pair', inviteId: p[3]!, rest: p.slice(4) }
  if (p[2] === 'ledger') {
    if (p.length === 4 && p[3] === 'head') return { kind: 'head' }
    if (p.length === 4 && p[3] === 'events') return { kind: 'events' }
    const cn = cnOfLevel(fleet, p[4])
    if (cn === undefined) return undefined
    if (p.length === 5 && p[3] === 'submit') return { kind: 'submit', cn }
    if (p.length === 6 && p[3] === 'sync' && p[5] === 'req') return { kind: 'syncReq', cn }
    if (p.length === 6 && p[3] === 'sync' && p[5] === 'resp') return { kind: 'syncResp', cn }
    if (p.length === 6 && p[3] === 'delegated' && p[5] === 'head') return { kind: 'delegatedHead', cn }
    if (p.length === 6 && p[3] === 'delegated' && p[5] === 'req') return { kind: 'delegatedReq', cn }
    return undefined
  }
  if (p[2] === 'dev' && p.length === 6 && p[4] === 'inbox') {
    const target = cnOfLevel(fleet, p[3]),
      sender = cnOfLevel(fleet, p[5])
    return target === undefined || sender === undefined ? undefined : { kind: 'inbox', target, sender }
  }
  return undefined
}

/**
 * The sender of a topic in device `cn`'s inbox of fleet `fleet` (`kin/<fid>/dev/<label>/inbox/<sender label>`), as
 * a CN, else undefined: the identity whose session published it.
 */
export function inboxSender(fleet: string, cn: string, topic: string): string | undefined {
  const parsed = parseTopic(fleet, topic)
  return parsed?.kind === 'inbox' && parsed.target === cn ? parsed.sender : undefined
}

/**
 * Whether `topic` (a name or filter) is a kinship topic of the scheme before dotless levels, `kin/<domain>/…` with
 * CNs as levels: under `kin/` no level of the current scheme holds a dot.
 */
export function isOldSchemeTopic(topic: string): boolean {
  const p = topic.split('/')
  return p[0] === TOPIC_ROOT && p.slice(1).some(level => level.includes('.'))
}

/** The leaves of a pairing topic. */
export type PairLeaf = 'request' | 'authorize' | 'csr' | 'cert'

/** Fleet topic names as returned by `fleetTopics`. */
export type FleetTopics = ReturnType<typeof fleetTopics>

/** Largest MQTT payload kinship accepts (bytes); larger ones are dropped by the broker and logged. */
export const MAX_PAYLOAD_BYTES = 64 * 1024
