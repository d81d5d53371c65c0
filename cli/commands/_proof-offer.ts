/** @module What a requesting home sends a device that stated its head: an offline proof from its own replica, else the miner's bundle for that size. */
import { KinError } from '../../agent/errors.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import type { OfferedProof } from '../../runtime/node/tls-endpoint.ts'
import { fetchBundle } from '../../agent/gossip/bundle-request.ts'
import { connectDevice } from '../../agent/gossip/login.ts'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { buildOfflineProof, type HeadStatement } from '../../agent/ledger/offline-proof.ts'
import { encodeOfflineProof } from '../../agent/ledger/proof-encoding.ts'
import type { Home, HomeConfig } from '../../runtime/home.ts'
import { readHomeLog } from '../home-view.ts'
import { LEDGER_LOCK_FILE, brokerLoginOf, followsBroker, lockHolder } from '../../runtime/following-home.ts'

/** What went with the action and where it came from, for the command's output. */
export interface ProofOffer extends OfferedProof {
  /** 'replica': built from this home's ledger and head; 'miner': L0's bundle for the stated size; 'none': nothing sent. */
  source: 'replica' | 'miner' | 'none'
  /** Why nothing, or why the miner: the code that stopped the replica. */
  note: string | undefined
}

/**
 * The answer to a device's head statement for this home's CN (DESIGN.md "Offline proofs are negotiated"): from the
 * home's own replica what the device lacks (nothing when its head is as new as this home's); when the replica cannot
 * prove this CN's events (no head yet, or events its head does not cover), L0's compact bundle built for the stated
 * tree size, within `deadline` (ms since the epoch), over a short session of this device. Never throws: a proof that
 * cannot be had sends nothing, and the device decides on what it holds.
 */
export async function offerFor(
  home: Home,
  config: HomeConfig,
  statement: HeadStatement,
  deadline: number,
): Promise<ProofOffer> {
  let note: string | undefined
  try {
    const proof = await readHomeLog(home, config, log => buildOfflineProof(log.proofs, config.cn, statement))
    if (proof === undefined) return { source: 'none', note: "the device lacks nothing this home's head proves" }
    return { source: 'replica', note: undefined, proof: encodeOfflineProof(proof) }
  } catch (err) {
    if (!(err instanceof KinError)) return { source: 'none', note: `INTERNAL: ${(err as Error)?.message ?? err}` }
    if (err.code !== 'HEAD_MISSING' && err.code !== 'BUNDLE_INCOMPLETE')
      return { source: 'none', note: `${err.code}: ${err.message}` }
    note = `${err.code}: ${err.message}`
  }
  if (config.l0 === true || !followsBroker(config)) return { source: 'none', note }
  const holder = lockHolder(home, LEDGER_LOCK_FILE)
  if (holder !== undefined)
    return { source: 'none', note: `${note}; the process following this home (pid ${holder}) holds its broker session` }
  try {
    const bytes = await fromMiner(home, config, statement, deadline)
    return { source: 'miner', note, bundle: bytes }
  } catch (err) {
    return {
      source: 'none',
      note: `${note}; L0's miner: ${err instanceof KinError ? err.code : 'INTERNAL'}: ${(err as Error)?.message ?? err}`,
    }
  }
}

async function fromMiner(
  home: Home,
  config: HomeConfig,
  statement: HeadStatement,
  deadline: number,
): Promise<Uint8Array> {
  const remaining = (): number => Math.max(1, deadline - Date.now())
  const client = await connectDevice(nodeTransport, brokerLoginOf(home, config), { timeoutMs: remaining() })
  try {
    await client.subscribe([fleetTopics(config.fleet).syncResp(config.cn)])
    const anchor = await readHomeLog(home, config, log => ({
      minerKey: log.minerKey,
      genesisId: log.genesisId,
      knownHead: log.head,
    }))
    const fetched = await fetchBundle(client, {
      crypto: nodeCrypto,
      fleet: config.fleet,
      selfCn: config.cn,
      cn: config.cn,
      now: Math.floor(Date.now() / 1000),
      timeoutMs: remaining(),
      anchor,
      knownTreeSize: statement.treeSize,
    })
    return fetched.bytes
  } finally {
    await client.close().catch(() => undefined)
  }
}
