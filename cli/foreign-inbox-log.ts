/** @module What `kin serve` says of inbox messages that are none of kinship's (INBOX_FOREIGN): each sender's first at once, then one line per interval with the count. */

/** Shortest interval (ms) between two lines about one sender's foreign inbox messages. */
export const FOREIGN_LOG_INTERVAL_MS = 60_000
/** Senders remembered at once; past it the one heard from longest ago is forgotten (its next message is told again). */
export const FOREIGN_LOG_SENDERS = 256

/** One line to write: the sender, what arrived, and how many of its messages went untold since its last line. */
export interface ForeignLine {
  sender: string
  detail: string
  /** Messages of this sender dropped without a line since the last one written. */
  untold: number
}

/** Settings of a foreignInboxLog. */
export interface ForeignLogOptions {
  /** L0's CN: its messages on this inbox are replies to the commands this agent carries out (invite, renew), never told. */
  l0Cn: string | undefined
  write: (line: ForeignLine) => void
  /** Milliseconds (default performance.now). */
  nowMs?: () => number
  intervalMs?: number
}

/**
 * Makes the hook told of each foreign inbox message: a device that writes text or its own format into another's
 * inbox (with mosquitto_pub, say) learns from the receiver's log why nothing happened, and a flood costs one line
 * per sender per interval.
 */
export function foreignInboxLog(opts: ForeignLogOptions): (sender: string | undefined, detail: string) => void {
  const now = opts.nowMs ?? (() => performance.now())
  const interval = opts.intervalMs ?? FOREIGN_LOG_INTERVAL_MS
  const senders = new Map<string, { at: number; untold: number }>()
  return (sender, detail) => {
    if (sender === undefined || sender === opts.l0Cn) return
    const t = now()
    const last = senders.get(sender)
    if (last !== undefined && t - last.at < interval) {
      last.untold++
      return
    }
    senders.delete(sender)
    if (senders.size >= FOREIGN_LOG_SENDERS) senders.delete(senders.keys().next().value!)
    senders.set(sender, { at: t, untold: 0 })
    opts.write({ sender, detail, untold: last?.untold ?? 0 })
  }
}
