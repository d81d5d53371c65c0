/** @module Enrolling a device into a home through the live broker, as `kin invite` and `kin enroll` do it together. */
import type { GossipClient } from '../../agent/gossip/client.ts'
import { enrollThroughBroker, handOverFirstEvents, type EnrolledDevice } from '../../agent/gossip/enroll-session.ts'
import { completeInvite, openInvite, type Inviter, type OpenedInvite } from '../../agent/gossip/invite-session.ts'
import type { EncodedEvent, RoleName } from '../../agent/ledger/types.ts'
import { Home } from '../../runtime/home.ts'
import { writeDeviceHome } from '../../runtime/home-writers.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'

/** The limit of each step (login, invite, pairing, certificate): generous, so a loaded machine does not fail it. */
export const ENROLL_STEP_MS = 30_000

/** Who enrolls whom, and where the new device's home goes. */
export interface HomeEnrollment {
  /** The parent's broker session (it registers the invite and answers the new device on it). */
  client: GossipClient
  inviter: Inviter
  /** L0's broker URL, written into the new home. */
  url: string
  /** The new device's home directory, once its CN is known. */
  homeOf(cn: string): string
  role: RoleName
  kind: string
  name: string
  /** Seconds the pairing code stays valid (default 600). */
  ttlSeconds?: number
  /** How long a guest's authorization lasts, in seconds (default one day). */
  guestValidSeconds?: number
  /** Seconds since the epoch (the fleet's clock). */
  now(): number
  /** Where the parent keeps its own authorize event (default: nowhere, L0's miner has it). */
  keep?(event: EncodedEvent): Promise<void>
  /** Told of the invite once it is registered, before the new device pairs. */
  onInvite?(opened: OpenedInvite): void
  stepTimeoutMs?: number
}

/**
 * The whole enrollment over the broker: the parent registers an invite and shows a code, the new device pairs with
 * it, gets its certificate from L0's CA, writes its home (as `kin enroll` leaves it), and hands L0 its authorize
 * and certified events (enrollment's last step), so L0 admits it when this resolves.
 */
export async function enrollIntoHome(e: HomeEnrollment): Promise<{ device: EnrolledDevice; dir: string }> {
  const stepTimeoutMs = e.stepTimeoutMs ?? ENROLL_STEP_MS
  const opened = await openInvite(
    nodeCrypto,
    e.client,
    e.inviter,
    { role: e.role, name: e.name, ttlSeconds: e.ttlSeconds ?? 600, guestValidSeconds: e.guestValidSeconds ?? 86400 },
    { now: e.now(), timeoutMs: stepTimeoutMs },
  )
  e.onInvite?.(opened)
  const [device] = await Promise.all([
    enrollThroughBroker(nodeCrypto, nodePki, nodeTransport, {
      code: opened.code,
      url: e.url,
      kind: e.kind,
      name: e.name,
      stepTimeoutMs,
      now: e.now,
    }),
    completeInvite(nodeCrypto, nodePki, e.client, e.inviter, opened, {
      keep: e.keep ?? (async () => undefined),
      now: e.now,
      stepTimeoutMs,
    }),
  ])
  const dir = e.homeOf(device.cn)
  await writeDeviceHome(new Home(dir), device, e.url)
  await handOverFirstEvents(nodeTransport, device, e.url, stepTimeoutMs)
  return { device, dir }
}
