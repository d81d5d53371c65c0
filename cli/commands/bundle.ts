/** @module `kin ledger bundle`: export one CN's proof bundle from the home's ledger and verified head, or from the miner when the home lacks it. */
import { resolve } from 'node:path'
import { KinError } from '../../agent/errors.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { fetchBundle } from '../../agent/gossip/bundle-request.ts'
import { connectDevice } from '../../agent/gossip/login.ts'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { buildBundle, encodeBundle, verifyBundle, type VerifiedBundle } from '../../agent/ledger/bundle.ts'
import type { BlockHead } from '../../agent/ledger/head.ts'
import { parseDuration, requireFleetCn, requireString, usageError, type CommandSpec } from '../args.ts'
import { Home, writeFileDurable, type HomeConfig } from '../../runtime/home.ts'
import { emit } from '../output.ts'
import { refuseExistingFile } from '../../runtime/output-file.ts'
import { clientCwd } from '../control-socket.ts'
import { readHomeLog } from '../home-view.ts'
import {
  BROKER_LOCK_FILE,
  LEDGER_LOCK_FILE,
  brokerLoginOf,
  followsBroker,
  headSummary,
  lentFollower,
  lockHolder,
} from '../../runtime/following-home.ts'

/** What the home's own files give: the bundle (or why not), the verified head, and the anchor to check a bundle with. */
interface LocalOutcome {
  bundle: Uint8Array | undefined
  error: KinError | undefined
  head: BlockHead | undefined
  minerKey: Uint8Array
  genesisId: string
}

/**
 * The bundle from the home's own files, read without taking the home over: a device's verified head and the
 * miner-ordered ids of its replica, or on L0's home the miner's own log and heads.
 */
async function fromHome(
  home: Home,
  config: HomeConfig,
  cn: string,
  knownTreeSize: number | undefined,
): Promise<LocalOutcome> {
  return readHomeLog(home, config, log => {
    const anchor = { head: log.head, minerKey: log.minerKey, genesisId: log.genesisId }
    try {
      return {
        ...anchor,
        bundle: encodeBundle(buildBundle(log.proofs, cn, { knownTreeSize, compact: true })),
        error: undefined,
      }
    } catch (err) {
      if (!(err instanceof KinError) || (err.code !== 'BUNDLE_INCOMPLETE' && err.code !== 'HEAD_MISSING')) throw err
      if (config.l0 !== true) return { ...anchor, bundle: undefined, error: err }
      const hint =
        lockHolder(home, BROKER_LOCK_FILE) !== undefined
          ? '; the running broker seals new events within a moment: try again'
          : "; start 'kin broker' to seal them"
      return { ...anchor, bundle: undefined, error: new KinError(err.code, `${err.message}${hint}`, { cause: err }) }
    }
  })
}

/** Asks L0 for the bundle on a short session of this device; refused while another process holds the device's session. */
async function fromMiner(
  home: Home,
  config: HomeConfig,
  cn: string,
  local: LocalOutcome,
  timeoutMs: number,
  knownTreeSize: number | undefined,
): Promise<{ bytes: Uint8Array; verified: VerifiedBundle }> {
  // Carried out inside the home's agent: asked on the agent's own session.
  const lent = lentFollower(home.dir)
  if (lent !== undefined) return lent.requestBundle(cn, timeoutMs, knownTreeSize)
  const holder = lockHolder(home, LEDGER_LOCK_FILE)
  if (holder !== undefined) {
    throw new KinError(
      'STORAGE_BUSY',
      `${local.error!.message}; asking L0 would take the broker session of the process (pid ${holder}) that follows this home: let it sync, then run this again`,
      { detail: { pid: holder } },
    )
  }
  const login = brokerLoginOf(home, config)
  const end = Date.now() + timeoutMs
  const client = await connectDevice(nodeTransport, login, { timeoutMs })
  try {
    await client.subscribe([fleetTopics(config.fleet).syncResp(config.cn)])
    return await fetchBundle(client, {
      crypto: nodeCrypto,
      fleet: config.fleet,
      selfCn: config.cn,
      cn,
      now: Math.floor(Date.now() / 1000),
      timeoutMs: Math.max(1, end - Date.now()),
      anchor: { minerKey: local.minerKey, genesisId: local.genesisId, knownHead: local.head },
      // --known-size goes to the miner as asked (the verifier's size, not this home's): never dropped.
      ...(knownTreeSize === undefined ? {} : { knownTreeSize }),
    })
  } finally {
    await client.close().catch(() => undefined)
  }
}

function knownSizeOf(value: unknown): number | undefined {
  if (value === undefined) return undefined
  const text = String(value)
  const n = Number(text)
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1)
    throw usageError(`--known-size expects the verifier's tree size (a whole number ≥ 1), got "${text}"`)
  return n
}

/** `kin ledger bundle`. */
export const ledgerBundle: CommandSpec = {
  name: 'ledger bundle',
  usage: 'kin ledger bundle CN --home DIR [--out FILE [--force]] [--known-size N] [--timeout 5s] [--json]',
  summary:
    "Write CN's proof bundle to a file. The bundle holds CN's lineage events up to genesis with inclusion proofs against a signed " +
    "head, so a device without a link to L0 can verify CN offline (kin check --bundle). Built from the home's ledger and the head it verified " +
    "(DIR/sync.cbor; on L0's home, the miner's own log and heads); when they lack CN's events, asked from L0 over the home's broker " +
    "session. --known-size adds a consistency proof to the verifier's tree size, for a verifier holding an older head. An existing FILE is " +
    'replaced only with --force (STORAGE_EXISTS otherwise). Exit 0 written, ' +
    '2 on errors.',
  options: {
    home: { type: 'string', help: 'the home whose ledger proves CN' },
    out: { type: 'string', help: 'file to write (default: ./CN.bundle)' },
    'known-size': { type: 'string', help: "the verifier's tree size, for a consistency proof to its head" },
    timeout: { type: 'string', help: 'limit for asking L0', default: '5s' },
    force: { type: 'boolean', help: 'replace FILE when it exists (refused with STORAGE_EXISTS otherwise)' },
  },
  async run(args) {
    const dir = requireString(args, 'home', 'the home whose ledger proves CN, e.g. --home ./phone')
    const cn = args.positionals[0]
    if (cn === undefined || args.positionals.length > 1)
      throw usageError("give the CN whose bundle to write, e.g. 'kin ledger bundle 3xk…home.arpa --home ./phone'")
    const knownTreeSize = knownSizeOf(args.values['known-size'])
    const timeoutMs = parseDuration(String(args.values.timeout), 'timeout') * 1000
    const home = new Home(dir)
    const config = home.readConfig()
    requireFleetCn(cn, config.fleet)
    const out = resolve(clientCwd(), typeof args.values.out === 'string' ? args.values.out : `${cn}.bundle`)
    refuseExistingFile(out, args.values.force === true, '--out FILE')
    const local = await fromHome(home, config, cn, knownTreeSize)
    let bytes = local.bundle
    let source: 'local' | 'miner' = 'local'
    let verified: VerifiedBundle
    if (bytes === undefined) {
      if (config.l0 === true || !followsBroker(config)) throw local.error!
      const fetched = await fromMiner(home, config, cn, local, timeoutMs, knownTreeSize)
      bytes = fetched.bytes
      verified = fetched.verified
      source = 'miner'
    } else {
      // What this home would accept from anyone, it checks on its own bundle too.
      verified = verifyBundle(
        nodeCrypto,
        bytes,
        { minerKey: local.minerKey, genesisId: local.genesisId, knownHead: local.head },
        Math.floor(Date.now() / 1000),
      )
    }
    writeFileDurable(out, bytes)
    const head = verified.head
    emit(
      args.json,
      {
        ok: true,
        cn,
        file: out,
        bytes: bytes.length,
        source,
        entries: verified.bundle.entries.length,
        head: headSummary(head, verified.headId),
        consistency:
          verified.bundle.consistency === undefined ? null : { treeSize: verified.bundle.consistency.treeSize },
      },
      () =>
        `wrote ${out}: ${bytes!.length} bytes, ${verified.bundle.entries.length} events proving ${cn} against head ${head.height} over ${head.treeSize} events (${source === 'miner' ? "from L0's miner" : "from this home's ledger"})`,
    )
    return 0
  },
}
