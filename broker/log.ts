/** @module L0's structured log: one JSON object per line, one line per decision worth auditing. */

/** Log events L0 writes; the `event` field of every record. */
export type L0LogEvent =
  | 'broker.listening'
  | 'broker.closed'
  | 'broker.error'
  | 'tls.error'
  | 'connection.closed'
  | 'broker.connected'
  | 'broker.disconnected'
  | 'broker.users'
  | 'login.accepted'
  | 'login.refused'
  | 'session.closed'
  | 'session.leaving'
  | 'acl.refused'
  | 'payload.dropped'
  | 'ledger.accepted'
  | 'ledger.refused'
  | 'ledger.error'
  | 'ledger.sealed'
  | 'sync.refused'
  | 'bundle.sent'
  | 'bundle.refused'
  | 'delegated.sent'
  | 'delegated.refused'
  | 'invite.registered'
  | 'invite.refused'
  | 'invite.used'
  | 'invite.purged'
  | 'invite.withdrawn'
  | 'ca.issued'
  | 'ca.renewed'
  | 'ca.rekeyed'
  | 'ca.refused'
  | 'server.certificate'

/** One log record: `time` (ISO-8601, wall clock), `level`, `event`, then fields of that event. */
export interface L0LogRecord {
  time: string
  level: 'info' | 'warn' | 'error'
  event: L0LogEvent
  [field: string]: unknown
}

/** Where records go; the default writes JSON lines to stderr. */
export type LogSink = (record: object) => void

/** Writes one JSON line per record to stderr. */
export function stderrSink(record: object): void {
  process.stderr.write(JSON.stringify(record) + '\n')
}

/** A logger bound to a sink. A sink that throws must not take the broker down, so its errors are swallowed. */
export type L0Logger = (level: L0LogRecord['level'], event: L0LogEvent, fields?: Record<string, unknown>) => void

/** Makes a logger writing `{time, level, event, ...fields}` to `sink`. */
export function makeLogger(sink: LogSink = stderrSink): L0Logger {
  return (level, event, fields = {}) => {
    try {
      sink({ time: new Date().toISOString(), level, event, ...fields })
    } catch {
      // A broken log sink is not a reason to refuse a login or lose an event.
    }
  }
}
