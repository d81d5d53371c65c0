/** @module `kin init`: create L0 — fleet root CA, L0's identity, the genesis event. */
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { createFleet } from '../../agent/enroll/fleet.ts'
import { MAX_FLEET_DOMAIN_CHARS, validateFleetDomain } from '../../agent/ledger/names.ts'
import { requireString, type CommandSpec } from '../args.ts'
import { Home } from '../../runtime/home.ts'
import { refuseExistingHome, writeL0Home } from '../../runtime/home-writers.ts'
import { emit } from '../output.ts'
import { DEFAULT_TLS_KEY_TYPE, parseTlsKeyType } from '../../agent/pki/key-type.ts'

/** `kin init`. */
export const init: CommandSpec = {
  name: 'init',
  usage: 'kin init --home DIR --fleet DOMAIN [--name LABEL] [--key p256|rsa2048] [--json]',
  summary:
    "Create L0 in DIR: the fleet's root CA, L0's TLS and ledger keys and certificate, and the ledger's genesis event. Refuses to overwrite an existing home.",
  options: {
    home: { type: 'string', help: 'directory to create L0 in (must not hold a kinship home yet)' },
    fleet: {
      type: 'string',
      help: `the fleet domain, a DNS name such as smith.home.arpa, at most ${MAX_FLEET_DOMAIN_CHARS} characters (every CN must fit X.509's 64)`,
    },
    name: { type: 'string', help: 'a friendly name for L0', default: 'home pc' },
    key: {
      type: 'string',
      help: "the fleet root's and L0's TLS key type: p256 (ECDSA) or rsa2048",
      default: DEFAULT_TLS_KEY_TYPE,
    },
  },
  async run(args) {
    const keyType = parseTlsKeyType(args.values.key)
    const dir = requireString(args, 'home', 'the directory to create L0 in, e.g. --home ./l0')
    // The domain first: a refusal costs nothing and leaves no file behind (FLEET_DOMAIN_TOO_LONG, FLEET_DOMAIN).
    const domain = validateFleetDomain(requireString(args, 'fleet', 'the fleet domain, e.g. --fleet smith.home.arpa'))
    const home = new Home(dir)
    refuseExistingHome(home, 'refusing to overwrite it')
    const now = Math.floor(Date.now() / 1000)
    const fleet = await createFleet(nodeCrypto, nodePki, { domain, now, name: String(args.values.name), keyType })
    const written = await writeL0Home(home, fleet, String(args.values.name))
    emit(args.json, { ok: true, cn: fleet.cn, fleet: domain, home: home.dir, files: written }, () =>
      [
        `created L0 of fleet ${domain} in ${home.dir}`,
        `  cn:     ${fleet.cn}`,
        `  root:   ${written.root}`,
        `  ledger: ${written.ledger} (genesis + L0's certificate)`,
        `next: 'kin broker --home ${dir}' to run L0's services, then 'kin invite --home ${dir}' to enroll a device`,
      ].join('\n'),
    )
    return 0
  },
}
