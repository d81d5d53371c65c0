/** @module The MQTT topics of a fleet (DESIGN.md, "MQTT topics"), built and parsed in one place. */

/** Topic names for fleet `F`. */
export function fleetTopics(fleet: string) {
  const base = `kin/${fleet}`
  return {
    base,
    /** Pairing session of one invite: request, authorize, csr, cert. */
    pair: (inviteId: string, leaf: PairLeaf) => `${base}/pair/${inviteId}/${leaf}`,
    pairAll: (inviteId: string) => `${base}/pair/${inviteId}/#`,
    /** Device `cn` submits its events to the miner. */
    submit: (cn: string) => `${base}/ledger/submit/${cn}`,
    submitAll: `${base}/ledger/submit/+`,
    /** Retained signed head, and new events, published by the miner only. */
    head: `${base}/ledger/head`,
    events: `${base}/ledger/events`,
    /** Sync request/response of device `cn`. */
    syncReq: (cn: string) => `${base}/ledger/sync/${cn}/req`,
    syncResp: (cn: string) => `${base}/ledger/sync/${cn}/resp`,
    syncReqAll: `${base}/ledger/sync/+/req`,
    /**
     * What device `senderCn` writes into device `cn`'s inbox: challenges, invite registrations (L0), replies. The
     * broker lets a session publish there only under its own CN, so the last level is the true sender.
     */
    inbox: (cn: string, senderCn: string) => `${base}/dev/${cn}/inbox/${senderCn}`,
    /** Device `cn`'s whole inbox, every sender: what it subscribes to. */
    inboxAll: (cn: string) => `${base}/dev/${cn}/inbox/+`,
  }
}

/**
 * The sender level of a topic in device `cn`'s inbox of fleet `fleet` (`kin/F/dev/<cn>/inbox/<sender>`), else
 * undefined: the identity whose session published it.
 */
export function inboxSender(fleet: string, cn: string, topic: string): string | undefined {
  const prefix = `kin/${fleet}/dev/${cn}/inbox/`
  if (!topic.startsWith(prefix)) return undefined
  const sender = topic.slice(prefix.length)
  return sender.length === 0 || sender.includes('/') ? undefined : sender
}

/** The leaves of a pairing topic. */
export type PairLeaf = 'request' | 'authorize' | 'csr' | 'cert'

/** Fleet topic names as returned by `fleetTopics`. */
export type FleetTopics = ReturnType<typeof fleetTopics>

/** Largest MQTT payload kinship accepts (bytes); larger ones are dropped by the broker and logged. */
export const MAX_PAYLOAD_BYTES = 64 * 1024
