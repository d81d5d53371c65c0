/** @module L0's services on any MQTT transport — the miner, ledger intake, sync and bundles, invites, the CA — wired to their topics. */
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { nodeVerifier } from '../runtime/node/verifier.ts'
import { FleetCa } from '../agent/enroll/ca.ts'
import { KinError } from '../agent/errors.ts'
import { fleetTopics, MAX_PAYLOAD_BYTES, parseTopic, type FleetTopics } from '../agent/gossip/topics.ts'
import type { EncodedEvent } from '../agent/ledger/types.ts'
import { isFleetCn } from './acl.ts'
import type { ServiceContext } from './context.ts'
import type { L0Home } from './home.ts'
import type { L0Logger } from './log.ts'
import { MinerService } from './miner-service.ts'
import { IntakeQuota, type QuotaOptions } from '../agent/ledger/quota.ts'
import { handleSubmission } from './submit.ts'
import { handleL0Inbox } from './inbox.ts'
import { handleCsr } from './ca-service.ts'
import { handleLedgerRequest } from './ledger-requests.ts'
import { DelegatedRegistry, DelegatedService } from './delegated.ts'

/** How the services meet the broker: L0's own aedes, or an existing broker they are a client of. */
export interface ServiceBus {
  /** Subscribes the services to `filter` (QoS 1); `deliver` gets every message, and must not block the broker. */
  subscribe(filter: string, deliver: (topic: string, payload: Uint8Array) => void): Promise<void>
  /** Publishes as L0's services (QoS 1, not retained unless asked). */
  publish(topic: string, payload: Uint8Array, opts?: { retain?: boolean }): Promise<void>
}

/** Options of startServices. */
export interface ServiceOptions {
  l0: L0Home
  bus: ServiceBus
  log: L0Logger
  /** Seconds since the epoch. */
  now: () => number
  /** Longest wait (ms) before accepted events are sealed (default 200). */
  sealIntervalMs?: number
  /** Per-submitter budgets over DEFAULT_QUOTAS (agent/ledger/quota.ts), and the clock (ms) they refill by. */
  quota?: Partial<QuotaOptions>
  /** Told after events entered the ledger (the aedes broker rechecks its sessions). */
  ledgerChanged?: (accepted: EncodedEvent[]) => void
}

/** The services running on a bus. */
export interface RunningServices {
  readonly ctx: ServiceContext
  readonly miner: MinerService
  readonly topics: FleetTopics
  /** Stops taking messages, waits for handlers in progress, seals, closes the heads file and the ledger. */
  stop(): Promise<void>
}

/** The device a submission or sync request is from (its topic's label level, as a CN), else undefined. */
function senderOf(fleet: string, topic: string): string | undefined {
  const parsed = parseTopic(fleet, topic)
  return parsed?.kind === 'submit' || parsed?.kind === 'syncReq' ? parsed.cn : undefined
}

/**
 * Opens the miner over L0's ledger (a heads file that contradicts the ledger stops here with HEAD_INCONSISTENT),
 * subscribes the handlers, then seals anything unsealed and publishes the latest head, retained. Every handler runs
 * detached from the broker's delivery; `stop` waits for them.
 */
export async function startServices(opts: ServiceOptions): Promise<RunningServices> {
  const { l0, bus, log, now } = opts
  const topics = fleetTopics(l0.fleet)
  let delegated: DelegatedService | undefined
  // Each published head may concern a delegated-tier device (delegated.ts): it hears of it after everyone else.
  const headPublished = (): void => {
    delegated?.headSealed().catch(err =>
      log('error', 'broker.error', {
        topic: topics.head,
        code: err instanceof KinError ? err.code : 'INTERNAL',
        message: (err as Error)?.message ?? String(err),
      }),
    )
  }
  const miner = await MinerService.open({
    crypto: nodeCrypto,
    homeDir: l0.home.dir,
    ledger: l0.ledger,
    minerSeed: l0.ledgerSeed,
    topics,
    now,
    log,
    publish: async (topic, payload, o) => {
      await bus.publish(topic, payload, o)
      if (topic === topics.head) headPublished()
    },
    sealIntervalMs: opts.sealIntervalMs,
    issued: l0.issued,
    quota: new IntakeQuota({ budgets: opts.quota?.budgets, clock: opts.quota?.clock ?? (() => performance.now()) }),
  })
  const work = new Set<Promise<void>>()
  let stopping = false

  const ctx: ServiceContext = {
    fleet: l0.fleet,
    cn: l0.cn,
    topics,
    crypto: nodeCrypto,
    ledger: l0.ledger,
    miner,
    invites: l0.invites,
    issued: l0.issued,
    now,
    log,
    publish: (topic, payload, o) => bus.publish(topic, payload, o),
    ca: new FleetCa({
      crypto: nodeCrypto,
      verifier: nodeVerifier,
      rootCertPem: l0.rootPem,
      rootKeyPem: l0.rootKeyPem,
      // The CA's authorize events enter through the miner too, so heads cover them like any submission.
      ledger: { ledger: l0.ledger.ledger, append: (e, o) => miner.appendOne(e, o?.now ?? now(), o?.verified) },
    }),
    async ledgerChanged(accepted: EncodedEvent[]) {
      opts.ledgerChanged?.(accepted)
    },
  }

  delegated = new DelegatedService(
    {
      registry: new DelegatedRegistry(l0.home.dir),
      topics,
      source: () => miner.miner.bundleSource(),
      log,
      publish: (topic, payload) => bus.publish(topic, payload),
    },
    miner.miner.latestHead()?.treeSize ?? 0,
  )

  const serve = (filter: string, handler: (topic: string, payload: Uint8Array) => Promise<void>): Promise<void> =>
    bus.subscribe(filter, (topic, payload) => {
      // Oversized payloads are the broker's to drop and log (hooks.ts); a client of another broker drops them here.
      if (stopping || payload.length > MAX_PAYLOAD_BYTES) return
      const job = handler(topic, payload).catch(err => {
        log('error', 'broker.error', { topic, code: 'INTERNAL', message: (err as Error)?.message ?? String(err) })
      })
      work.add(job)
      void job.finally(() => work.delete(job))
    })

  try {
    await serve(topics.submitAll, async (topic, payload) => {
      const from = senderOf(l0.fleet, topic)
      if (from !== undefined) await handleSubmission(ctx, from, topic, payload)
    })
    await serve(topics.syncReqAll, async (topic, payload) => {
      const from = senderOf(l0.fleet, topic)
      if (from !== undefined && isFleetCn(from, l0.fleet)) await handleLedgerRequest(ctx, from, topic, payload)
    })
    await serve(topics.delegatedReqAll, async (topic, payload) => {
      const parsed = parseTopic(l0.fleet, topic)
      if (parsed?.kind === 'delegatedReq') await delegated!.request(parsed.cn, payload)
    })
    await serve(topics.inboxAll(l0.cn), (topic, payload) => handleL0Inbox(ctx, topic, payload))
    await serve(topics.pairLeafAll('csr'), async (topic, payload) => {
      const pair = parseTopic(l0.fleet, topic)
      if (pair?.kind === 'pair') await handleCsr(ctx, pair.inviteId, topic, payload)
    })
    await miner.start()
  } catch (err) {
    stopping = true
    await Promise.allSettled([...work])
    await miner.close().catch(() => undefined)
    throw err
  }

  let stopped: Promise<void> | undefined
  return {
    ctx,
    miner,
    topics,
    stop: () => {
      stopped ??= (async () => {
        stopping = true
        await Promise.allSettled([...work])
        await miner.close()
      })()
      return stopped
    },
  }
}
