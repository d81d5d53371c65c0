/** @module `kin ledger show|verify`: inspect and verify a ledger file or a home's ledger. */
import { join } from 'node:path'
import { KinError } from '../../agent/errors.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { scanRecords } from '../../agent/ledger/store.ts'
import { escapeNonPrintable } from '../../agent/ledger/names.ts'
import { READ_FLAGS, READ_NAMED_FLAGS, readHomeFile, requirePrivateDir } from '../../runtime/node/home-file.ts'
import { replayRecords } from '../../agent/ledger/persistent.ts'
import type { Ledger } from '../../agent/ledger/ledger.ts'
import type { EncodedEvent, LedgerEvent } from '../../agent/ledger/types.ts'
import { usageError, type CommandSpec, type ParsedArgs } from '../args.ts'
import { HOME_FILES } from '../../runtime/home.ts'
import { emit, isoTime } from '../output.ts'

/** The ledger file to read and how: a home's own file never through a symlink; a FILE the user names may be one. */
function ledgerPath(args: ParsedArgs): { path: string; flags: number } {
  const home = args.values.home
  const file = args.positionals[0]
  if (typeof home === 'string' && file !== undefined)
    throw usageError('give either --home DIR or a ledger FILE, not both')
  if (typeof home === 'string') {
    requirePrivateDir(home)
    return { path: join(home, HOME_FILES.ledger), flags: READ_FLAGS }
  }
  if (file === undefined)
    throw usageError("which ledger? give --home DIR or a FILE (e.g. 'kin ledger verify --home ./l0')")
  return { path: file, flags: READ_NAMED_FLAGS }
}

/** A readable summary of one event for `kin ledger show`. */
export function describeEvent(ledger: Ledger, e: EncodedEvent): Record<string, unknown> {
  const ev: LedgerEvent = e.event
  const s = ledger.state
  const base = {
    id: e.idHex,
    type: ev.type,
    subject: s.cnOfLabel(ev.subject),
    issuer: s.cnOfLabel(ev.issuer),
    time: isoTime(ev.time),
    bytes: e.bytes.length,
  }
  switch (ev.type) {
    case 'genesis':
      return {
        ...base,
        domain: ev.body.domain,
        name: ev.body.name,
        rootCertHash: toHex(ev.body.rootCertHash),
        notAfter: isoTime(ev.body.notAfter),
      }
    case 'authorize':
      return {
        ...base,
        role: ev.body.role,
        depth: ev.body.depth,
        kind: ev.body.kind,
        name: ev.body.name,
        spkiHash: toHex(ev.body.spkiHash),
        notAfter: isoTime(ev.body.notAfter),
      }
    case 'certified':
      return { ...base, certHash: toHex(ev.body.certHash) }
    case 'revoke':
      return { ...base, reason: ev.body.reason, effective: isoTime(ev.body.effective), subtree: ev.body.subtree }
    case 'rekey':
      return { ...base, spkiHash: toHex(ev.body.spkiHash), notAfter: isoTime(ev.body.notAfter) }
    case 'policy':
      return { ...base, subtree: ev.body.subtree, maxHops: ev.body.maxHops, rules: ev.body.rules.length }
  }
}

// Opened once, regular files only (FILE_NOT_REGULAR; a FIFO or /dev/zero would never end), missing ones HOME_MISSING.
function load(path: string, flags: number): { ledger: Ledger; bytes: number; tornTailAt: number | undefined } {
  let bytes: Uint8Array
  try {
    bytes = readHomeFile(path, flags)
  } catch (err) {
    if (err instanceof KinError) throw err
    throw new KinError('HOME_MISSING', `no ledger file at ${path}: ${(err as Error).message}`, { cause: err })
  }
  const { records, tornTailAt } = scanRecords(bytes)
  // An empty file proves nothing: no genesis, no fleet, no event to check.
  if (records.length === 0) {
    throw new KinError(
      'LEDGER_EMPTY',
      `${path} holds no event${tornTailAt === undefined ? ` (${bytes.length} bytes)` : ` (only a torn record of ${bytes.length - tornTailAt} bytes)`}: not a ledger; restore it or run 'kin sync'`,
      { detail: { path, bytes: bytes.length } },
    )
  }
  return { ledger: replayRecords(nodeCrypto, records), bytes: bytes.length, tornTailAt }
}

const common = {
  home: { type: 'string', help: 'a device home directory (reads DIR/ledger.cbor)' },
} as const

/** `kin ledger show`. */
export const ledgerShow: CommandSpec = {
  name: 'ledger show',
  usage: 'kin ledger show (--home DIR | FILE) [--json]',
  summary: 'List the events of a ledger, oldest first, after verifying every one of them.',
  options: { ...common },
  async run(args) {
    const { path, flags } = ledgerPath(args)
    const { ledger, bytes, tornTailAt } = load(path, flags)
    const events = ledger.state.log.map(e => describeEvent(ledger, e))
    emit(args.json, { file: path, bytes, events, tornTailAt }, () => {
      const lines = events.map((e, i) => {
        const extra =
          e.type === 'authorize'
            ? ` ${e.role} "${e.name}" by ${String(e.issuer).split('.')[0]}`
            : e.type === 'revoke'
              ? ` ${e.reason}${e.subtree ? ' +subtree' : ''} by ${String(e.issuer).split('.')[0]}`
              : ''
        return `${String(i).padStart(5)}  ${e.time}  ${String(e.type).padEnd(9)} ${e.subject}${extra}  ${String(e.id).slice(0, 12)}`
      })
      lines.push(
        `${events.length} events, ${bytes} bytes${tornTailAt !== undefined ? `, torn tail at ${tornTailAt} (dropped on next open)` : ''}`,
      )
      // Names come from other devices: a control character in one must not move the cursor or forge a line.
      return lines.map(escapeNonPrintable).join('\n')
    })
    return 0
  },
}

/** `kin ledger verify`. */
export const ledgerVerify: CommandSpec = {
  name: 'ledger verify',
  usage: 'kin ledger verify (--home DIR | FILE) [--json]',
  summary:
    'Verify every event of a ledger (encoding, signatures, lineage rules). Exit 0 when it verifies, 1 when it does not.',
  options: { ...common },
  async run(args) {
    const { path, flags } = ledgerPath(args)
    try {
      const { ledger, bytes, tornTailAt } = load(path, flags)
      const domain = ledger.state.domain
      emit(
        args.json,
        { ok: true, file: path, events: ledger.size, bytes, fleet: domain, tornTailAt },
        () =>
          `ok: ${path}: ${ledger.size} events, ${bytes} bytes, fleet ${domain ?? '(no genesis)'}` +
          (tornTailAt !== undefined
            ? `\nnote: torn tail at byte ${tornTailAt} (an interrupted append; dropped when the device next opens the ledger)`
            : ''),
      )
      return 0
    } catch (err) {
      if (!(err instanceof KinError) || (err.code !== 'STORAGE_DAMAGED' && err.code !== 'LEDGER_EMPTY')) throw err
      const detail = err.detail ?? {}
      emit(
        args.json,
        {
          ok: false,
          file: path,
          code: err.code,
          recordCode: detail.recordCode,
          offset: detail.offset,
          message: err.message,
        },
        () => `FAILED: ${path}: ${err.message}`,
      )
      return 1
    }
  },
}
