/** @module Reaching the broker as a live device without pushing its ledger follower off: riding on the follower's session. */
import { KinError } from '../../agent/errors.ts'
import { GossipClient } from '../../agent/gossip/client.ts'
import type { SessionStatus, TransportSession } from '../../agent/ports/transport.ts'
import type { LiveFleet } from '../live/fleet.ts'

const SESSION_WAIT_MS = 10_000

/**
 * Runs `use` on the broker session `label`'s follower holds (PROTOCOL.md §12.4: the broker keeps one session per
 * CN) and again on each session the follower opens later; resolves, once `use` is done with the first, to a
 * function that stops the later calls.
 */
export function rideFollowerSessions(
  fleet: LiveFleet,
  label: string,
  use: (session: TransportSession) => Promise<void>,
): Promise<() => void> {
  return new Promise((resolve, reject) => {
    let first = true
    let stop: () => void = () => undefined
    const timer = setTimeout(() => {
      stop()
      reject(
        new KinError(
          'BROKER_TIMEOUT',
          `${label}'s ledger follower opened no broker session within ${SESSION_WAIT_MS} ms`,
        ),
      )
    }, SESSION_WAIT_MS)
    stop = fleet.onSession(label, session => {
      const used = use(session)
      if (!first) {
        used.catch(() => undefined)
        return
      }
      first = false
      clearTimeout(timer)
      used.then(
        () => resolve(stop),
        err => {
          stop()
          reject(err)
        },
      )
    })
  })
}

/**
 * A GossipClient on `label`'s follower session (askOverInbox and the raw exchanges take one). Its `close()` only
 * takes its own listeners off: the session stays the follower's.
 */
export async function borrowFollowerClient(fleet: LiveFleet, label: string): Promise<GossipClient> {
  let session: TransportSession | undefined
  const stop = await rideFollowerSessions(fleet, label, async s => {
    session ??= s
  })
  stop()
  return new GossipClient(borrowed(session!))
}

function borrowed(session: TransportSession): TransportSession {
  const listeners: Array<() => void> = []
  const keep = (stop: () => void): (() => void) => {
    listeners.push(stop)
    return stop
  }
  return {
    publish: (topic, payload, options) => session.publish(topic, payload, options),
    subscribe: filters => session.subscribe(filters),
    onMessage: listener => keep(session.onMessage(listener)),
    onStatus: (listener: (status: SessionStatus, error: KinError | undefined) => void) =>
      keep(session.onStatus(listener)),
    peerCertificate: () => session.peerCertificate(),
    get connected() {
      return session.connected
    },
    end: async () => {
      for (const stop of listeners.splice(0)) stop()
    },
  }
}
