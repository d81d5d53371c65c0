/** @module A device's audit.log on Node: append-only JSON lines, rotated at a size limit to audit.log.1 … .N; unauthenticated refusals summarised. */
import { rename, type FileHandle } from 'node:fs/promises'
import { KinError } from '../../agent/errors.ts'
import {
  RefusalSummary,
  auditRecordOf,
  formatAuditLine,
  formatAuditSummaryLine,
  isUnauthenticatedRefusal,
  type AuditRecord,
  type AuditSummary,
} from '../../agent/access/audit.ts'
import type { Decision } from '../../agent/access/types.ts'
import { APPEND_FLAGS, HOME_FILE_MODE, openHomeFile } from './home-file.ts'

/** Sizes and counts of an audit log. */
export interface AuditLogOptions {
  /** Rotate before a line would take the file past this many bytes (default 1 MiB). */
  maxBytes?: number
  /** Rotated files kept: audit.log.1 (newest) … audit.log.<keep> (default 5). */
  keep?: number
  /** Seconds per summary of unauthenticated refusals (default DEFAULT_SUMMARY_INTERVAL_SECONDS). */
  summaryIntervalSeconds?: number
  /** The clock, seconds since the epoch (default: the system clock). */
  now?: () => number
}

function ioError(what: string, cause: unknown): KinError {
  return new KinError('STORAGE_IO', `audit log: ${what} failed: ${(cause as Error)?.message ?? cause}`, { cause })
}

function isMissing(e: unknown): boolean {
  return (e as { code?: string })?.code === 'ENOENT'
}

/**
 * Appends one line per decision. Lines go straight to the OS (no user-space buffer), in call order; `flush`
 * makes them durable. Access decisions must not wait for a disk sync, so appends do not fsync each line.
 */
export class AuditLog {
  readonly path: string
  readonly maxBytes: number
  readonly keep: number
  #handle: FileHandle
  #size: number
  #queue: Promise<void> = Promise.resolve()
  readonly #summary: RefusalSummary
  readonly #now: () => number
  readonly #timer: ReturnType<typeof setInterval>

  private constructor(
    path: string,
    handle: FileHandle,
    size: number,
    maxBytes: number,
    keep: number,
    summary: RefusalSummary,
    now: () => number,
  ) {
    this.path = path
    this.#handle = handle
    this.#size = size
    this.maxBytes = maxBytes
    this.keep = keep
    this.#summary = summary
    this.#now = now
    // A flood that stops still gets its summary written within an interval, not at the next refusal.
    this.#timer = setInterval(() => {
      // A write that fails here fails the next append too, which reports it.
      this.#writeSummaries(this.#summary.due(this.#now())).catch(() => undefined)
    }, summary.intervalSeconds * 1000)
    this.#timer.unref()
  }

  /** Opens (creating with mode 0600) the log at `path`. */
  static async open(path: string, options: AuditLogOptions = {}): Promise<AuditLog> {
    const maxBytes = options.maxBytes ?? 1024 * 1024
    const keep = options.keep ?? 5
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1)
      throw new KinError('BAD_ARGUMENT', `"maxBytes" expected a positive integer, got ${maxBytes}`)
    if (!Number.isInteger(keep) || keep < 1 || keep > 99)
      throw new KinError('BAD_ARGUMENT', `"keep" expected 1..99, got ${keep}`)
    const interval = options.summaryIntervalSeconds
    if (interval !== undefined && (!Number.isSafeInteger(interval) || interval < 1))
      throw new KinError('BAD_ARGUMENT', `"summaryIntervalSeconds" expected a positive integer, got ${interval}`)
    const summary = new RefusalSummary(interval === undefined ? {} : { intervalSeconds: interval })
    try {
      const handle = await openHomeFile(path, APPEND_FLAGS, HOME_FILE_MODE)
      return new AuditLog(
        path,
        handle,
        (await handle.stat()).size,
        maxBytes,
        keep,
        summary,
        options.now ?? (() => Math.floor(Date.now() / 1000)),
      )
    } catch (e) {
      if (e instanceof KinError) throw e
      throw ioError(`opening ${path}`, e)
    }
  }

  /**
   * Audits a decision made for a peer at network address `remote`: a line of its own, unless it refuses a peer that
   * never authenticated — then it is counted, and written as one summary line per interval, address and code.
   */
  record(decision: Decision, remote: string): Promise<void> {
    if (!isUnauthenticatedRefusal(decision)) return this.append(auditRecordOf(decision))
    return this.#writeSummaries(this.#summary.count(remote, decision.code, this.#now()))
  }

  /** Refusals counted and not yet written as a summary. */
  get unsummarised(): number {
    return this.#summary.pending
  }

  /** Appends the record as one JSON line. */
  append(record: AuditRecord): Promise<void> {
    return this.appendLine(formatAuditLine(record))
  }

  /** Appends one line (no line breaks inside); resolves once the OS has it. */
  appendLine(line: string): Promise<void> {
    if (/[\r\n]/.test(line))
      return Promise.reject(new KinError('BAD_ARGUMENT', 'an audit line must not contain a line break'))
    const bytes = new TextEncoder().encode(line + '\n')
    const done = this.#queue.then(() => this.#write(bytes))
    this.#queue = done.catch(() => undefined)
    return done
  }

  /** Makes every appended line durable (fdatasync). */
  flush(): Promise<void> {
    const done = this.#queue
      .then(() => this.#handle.datasync())
      .catch(e => {
        throw ioError('sync', e)
      })
    this.#queue = done.catch(() => undefined)
    return done
  }

  /** Writes the summaries counted so far, flushes and closes the file. */
  async close(): Promise<void> {
    clearInterval(this.#timer)
    await this.#writeSummaries(this.#summary.drain(this.#now()))
    await this.flush()
    await this.#handle.close()
  }

  #writeSummaries(summaries: AuditSummary[]): Promise<void> {
    return Promise.all(summaries.map(s => this.appendLine(formatAuditSummaryLine(s)))).then(() => undefined)
  }

  async #write(bytes: Uint8Array): Promise<void> {
    try {
      if (this.#size > 0 && this.#size + bytes.length > this.maxBytes) await this.#rotate()
      await this.#handle.write(bytes)
      this.#size += bytes.length
    } catch (e) {
      throw e instanceof KinError ? e : ioError('append', e)
    }
  }

  // Renames happen while the old file is still open (POSIX renames keep open handles valid), so a failed
  // rotation leaves a working log behind rather than a closed handle.
  async #rotate(): Promise<void> {
    for (let i = this.keep - 1; i >= 1; i--) {
      try {
        await rename(`${this.path}.${i}`, `${this.path}.${i + 1}`)
      } catch (e) {
        if (!isMissing(e)) throw ioError(`rotating ${this.path}.${i}`, e)
      }
    }
    await rename(this.path, `${this.path}.1`)
    const previous = this.#handle
    this.#handle = await openHomeFile(this.path, APPEND_FLAGS, HOME_FILE_MODE)
    this.#size = 0
    await previous.datasync()
    await previous.close()
  }
}
