/** @module `kin status`: who this device is and how it stands — identity, certificate expiry, ledger and head, broker, the agent holding the home, revocation. */
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { requireString, type CommandSpec } from '../args.ts'
import { emit, isoTime } from '../output.ts'
import { homeHolder, openHomeView, shown, standingJson, standingText } from '../home-view.ts'

/** `kin status`. */
export const status: CommandSpec = {
  name: 'status',
  usage: 'kin status --home DIR [--json]',
  summary:
    "Who this device is and how it stands. Shows its CN, friendly name, role, fleet and parent; when its certificate expires; the home's ledger " +
    '(events, and the last head it verified: height, tree size, time); the broker it follows; whether kin serve, kin sync --follow or kin broker ' +
    'holds the home; and whether its own identity was revoked or expired. Reads the home without taking it over. Times are ISO 8601 ' +
    '(seconds since the epoch with --json). Exit 0 when the identity stands, 1 when it is revoked or expired, 2 on errors.',
  options: {
    home: { type: 'string', help: 'the home directory to describe' },
  },
  async run(args) {
    const dir = requireString(args, 'home', 'the home to describe, e.g. --home ./lock')
    const view = await openHomeView(dir)
    const { home, config, state } = view
    const now = Math.floor(Date.now() / 1000)
    const self = state.currentBinding(config.cn)
    const parent = self?.parentCn === undefined ? undefined : state.currentBinding(self.parentCn)
    const cert = new DeviceCertificate(home.readText('cert'), { sha256: nodeCrypto.sha256 })
    // A home whose ledger lacks its own authorize event cannot be judged: say so rather than call it valid.
    const invalid = self === undefined ? undefined : state.invalidAt(self, now)
    const holder = homeHolder(home)
    const standing = self === undefined ? { valid: false, code: 'SUBJECT_UNKNOWN' } : standingJson(state, invalid)
    const out = {
      cn: config.cn,
      name: self?.name ?? null,
      role: self?.role ?? config.role,
      kind: self?.kind ?? null,
      fleet: config.fleet,
      l0: config.l0 === true,
      parent: parent === undefined ? null : { cn: parent.cn, name: parent.name, role: parent.role },
      certificate: { notAfter: cert.notAfter, expiresIn: cert.notAfter - now, serial: cert.serialHex },
      identityNotAfter: self?.notAfter ?? null,
      ledger: { events: state.log.length },
      head:
        view.head === undefined
          ? null
          : {
              height: view.head.height,
              treeSize: view.head.treeSize,
              time: view.head.time,
              id: view.headId,
              confirmedAt: view.confirmedAt ?? null,
            },
      broker: typeof config.broker === 'string' ? config.broker : null,
      agent: holder === undefined ? null : { pid: holder.pid, what: holder.what },
      standing,
    }
    emit(args.json, out, () => {
      const days = Math.floor((cert.notAfter - now) / 86400)
      const lines = [
        `${config.cn}${self === undefined ? '' : `  "${shown(self.name)}"`}`,
        `  role         ${out.role}${self === undefined ? '' : ` (${shown(self.kind)})`} in fleet ${config.fleet}${config.l0 === true ? ' — this is L0' : ''}`,
        `  parent       ${parent === undefined ? '— (L0 is the root of the fleet)' : `"${shown(parent.name)}" ${parent.role} ${parent.cn}`}`,
        `  certificate  expires ${isoTime(cert.notAfter)} (${cert.notAfter <= now ? 'EXPIRED' : `in ${days} days`})`,
        `  ledger       ${state.log.length} events; ${view.head === undefined ? 'no verified head yet (run kin sync)' : `head ${view.head.height} over ${view.head.treeSize} events sealed ${isoTime(view.head.time)}${view.confirmedAt === undefined ? '' : `, confirmed ${isoTime(view.confirmedAt)}`}`}`,
        `  broker       ${out.broker ?? (config.l0 === true ? 'this home runs it (kin broker)' : 'none named in config.json')}`,
        `  agent        ${holder === undefined ? 'none running on this home' : `${holder.what} (pid ${holder.pid}) holds this home`}`,
      ]
      if (self === undefined)
        lines.push(`  NOT IN LEDGER: ${config.cn} has no authorize event in this home's ledger (run kin sync)`)
      else if (invalid !== undefined) {
        const why = standingText(state, invalid)!
        lines.push(
          invalid.code === 'REVOKED' || invalid.code === 'ANCESTOR_REVOKED'
            ? `  REVOKED: this device's identity is no longer valid — ${why}. Peers refuse it; enroll it again under a new name.`
            : `  NOT VALID: ${why}.`,
        )
      } else lines.push('  identity     valid')
      return lines.join('\n')
    })
    return standing.valid === true ? 0 : 1
  },
}
