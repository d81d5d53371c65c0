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
    /** Inbox of device `cn`: challenges, invite registrations (L0), replies. */
    inbox: (cn: string) => `${base}/dev/${cn}/inbox`,
  }
}

/** The leaves of a pairing topic. */
export type PairLeaf = 'request' | 'authorize' | 'csr' | 'cert'

/** Fleet topic names as returned by `fleetTopics`. */
export type FleetTopics = ReturnType<typeof fleetTopics>

/** Largest MQTT payload kinship accepts (bytes); larger ones are dropped by the broker and logged. */
export const MAX_PAYLOAD_BYTES = 64 * 1024
