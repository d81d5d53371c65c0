/** @module `kin show CN|NAME`: one identity from the home's ledger — its lineage up to L0, certificates, revocations and policies. */
import { toHex } from '../../agent/codec/bytes.ts'
import { base32 } from '../../agent/ledger/names.ts'
import type { LedgerState } from '../../agent/ledger/state.ts'
import type { Binding } from '../../agent/ledger/types.ts'
import { requireString, usageError, type CommandSpec } from '../args.ts'
import { emit, isoTime } from '../output.ts'
import {
  findIdentity,
  openHomeView,
  revocationJson,
  revocationText,
  shown,
  standingJson,
  standingText,
} from '../home-view.ts'

/** The certified events recorded for `cn`, oldest first: certificate hash and when. */
function certificatesOf(state: LedgerState, cn: string): Array<{ certHash: string; time: number; eventId: string }> {
  const out: Array<{ certHash: string; time: number; eventId: string }> = []
  for (const e of state.log) {
    if (e.event.type === 'certified' && state.cnOfLabel(e.event.subject) === cn)
      out.push({ certHash: toHex(e.event.body.certHash), time: e.event.time, eventId: e.idHex })
  }
  return out
}

function hop(b: Binding): Record<string, unknown> {
  return { cn: b.cn, name: b.name, role: b.role, kind: b.kind }
}

/** `kin show`. */
export const show: CommandSpec = {
  name: 'show',
  usage: 'kin show CN|NAME --home DIR [--json]',
  summary:
    "One identity with its lineage up to L0. From this home's ledger: its friendly name, role, kind and expiry; its lineage up to L0 (each hop's name, role " +
    'and CN); the certificates recorded for it; its revocations and the policies set on it; and whether it stands now. NAME is the ' +
    "friendly name from its authorize event (or a CN's 16-character label); a name several identities share is refused with their CNs " +
    '(NAME_AMBIGUOUS), an unknown one with IDENTITY_UNKNOWN. Times are ISO 8601 (seconds since the epoch with --json).',
  options: {
    home: { type: 'string', help: 'the home whose ledger to read' },
  },
  async run(args) {
    const dir = requireString(args, 'home', 'the home whose ledger to read, e.g. --home ./phone')
    const query = args.positionals[0]
    if (query === undefined || args.positionals.length > 1)
      throw usageError(
        `give one CN or friendly name, e.g. 'kin show "front door" --home ./phone' (put a name with spaces in quotes)`,
      )
    const { state } = await openHomeView(dir)
    const cn = findIdentity(state, query)
    const bindings = state.bindingsByCn.get(cn)!
    const current = bindings[bindings.length - 1]!
    const now = Math.floor(Date.now() / 1000)
    const lineage = state.lineageOf(current)
    const invalid = state.invalidAt(current, now)
    const certificates = certificatesOf(state, cn)
    const revocations = bindings.flatMap(b => b.revocations).map(r => revocationJson(state, r))
    const policies = state.policies(cn).map(p => ({
      by: state.bindings.get(p.issuerBindingId)?.cn ?? null,
      time: p.time,
      subtree: p.body.subtree,
      maxHops: p.body.maxHops,
      maxHeadAge: p.body.maxHeadAge,
      anchors: p.body.anchors.map(a => state.cnOfLabel(a)),
      rules: p.body.rules,
      eventId: p.eventId,
    }))
    const out = {
      ...hop(current),
      label: current.label,
      depth: current.depth,
      notAfter: current.notAfter,
      authorizedAt: current.time,
      generation: current.generation,
      lineage: lineage.map(hop),
      children: state.children(cn),
      certificates,
      revocations,
      policies,
      standing: standingJson(state, invalid),
    }
    emit(args.json, out, () => {
      const lines = [
        `${cn}  "${shown(current.name)}"`,
        `  role ${current.role}, kind ${shown(current.kind)}, delegation depth ${current.depth}, valid until ${isoTime(current.notAfter)}${current.generation > 0 ? `, keys replaced ${current.generation} time(s)` : ''}`,
        `  standing: ${standingText(state, invalid) ?? 'valid'}`,
        '  lineage (up to L0):',
        ...lineage.map((b, i) => `    ${'  '.repeat(i)}${i === 0 ? '' : '↑ '}"${shown(b.name)}" ${b.role} ${b.cn}`),
        `  certificates:${certificates.length === 0 ? ' none recorded' : ''}`,
        ...certificates.map(c => `    ${isoTime(c.time)}  sha256 ${c.certHash}`),
        `  revocations:${revocations.length === 0 ? ' none' : ''}`,
        ...bindings.flatMap(b => b.revocations).map(r => `    ${revocationText(state, r)}`),
        `  policies:${policies.length === 0 ? ' none (the default trust policy applies)' : ''}`,
        ...state
          .policies(cn)
          .map(
            p =>
              `    ${isoTime(p.time)} by ${shown(state.bindings.get(p.issuerBindingId)?.name ?? '?')}: max ${p.body.maxHops} hops${p.body.subtree ? ', for its subtree' : ''}, ${p.body.rules.length} rule(s)${p.body.anchors.length > 0 ? `, anchors ${p.body.anchors.map(a => base32(a)).join(' ')}` : ''}`,
          ),
      ]
      if (state.children(cn).length > 0)
        lines.push(`  authorized ${state.children(cn).length} identities (kin devices shows the tree)`)
      return lines.join('\n')
    })
    return 0
  },
}
