/**
 * @module Handing one event this home signs (a revocation, a policy) to the fleet: recorded in the home's own ledger
 * and sealed by L0's miner — on a device through its follower, on L0 straight into its ledger or, while `kin broker`
 * owns that file, through the broker like any device's.
 */
import { KinError, VerificationError } from '../agent/errors.ts'
import { nodeCrypto } from './node/crypto.ts'
import { nodeTransport } from './node/transport.ts'
import { readHomeFile } from './node/home-file.ts'
import { connectDevice } from '../agent/gossip/login.ts'
import { submitEvents } from '../agent/gossip/submit.ts'
import type { Ledger } from '../agent/ledger/ledger.ts'
import { replayRecords } from '../agent/ledger/persistent.ts'
import { scanRecords } from '../agent/ledger/store.ts'
import type { EncodedEvent } from '../agent/ledger/types.ts'
import type { LedgerFollower } from '../agent/gossip/follower.ts'
import { openHomeLedger } from './device.ts'
import { Home, type HomeConfig } from './home.ts'
import { BROKER_LOCK_FILE, brokerLoginOf, headSummary, lockHolder, openFollowingHome } from './following-home.ts'

/**
 * What happened to the event. What is returned is the guarantee: on a device, a head signed by L0's miner covers the
 * event (the miner appends durably before it seals); on L0's home, L0's ledger file holds it. Anything less throws:
 * EVENT_PENDING when the event is in the device's own ledger and no head covers it yet (a broker's PUBACK included).
 */
export interface Delivery {
  /** Where the event was recorded: the home's ledger, or nowhere yet (L0's broker owns its file and records it). */
  recorded: 'ledger' | 'broker'
  /** Whether L0's ledger holds it (the miner accepted it): always true when returned (see Delivery). */
  delivered: boolean
  head: Record<string, unknown> | null
  note: string
}

/** Signs the event against the ledger this home holds now (throws VerificationError with the ledger's code when it refuses). */
export type EventSigner = (ledger: Ledger, home: Home, config: HomeConfig) => EncodedEvent

/** What to deliver and how long to wait. */
export interface DeliveryOptions {
  /** What the event is, for messages: 'revocation', 'policy'. */
  what: string
  now: number
  timeoutMs: number
  /** On L0's home while `kin broker` runs: the broker's URL (else config.json's). */
  broker?: string
  /** CNs (or names) the event names: when this device's ledger lacks one, it catches up with L0 first. */
  names?: string[]
}

function snapshot(home: Home): Ledger {
  return replayRecords(nodeCrypto, scanRecords(readHomeFile(home.path('ledger'))).records)
}

/** Polls L0's ledger file (written by the running broker) until it holds `idHex`. */
async function untilRecorded(home: Home, idHex: string, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (snapshot(home).state.has(idHex)) return true
    if (Date.now() > end) return false
    await new Promise(r => setTimeout(r, 100))
  }
}

/**
 * On L0's home. While `kin broker` runs, its miner owns ledger.cbor: the event goes to it over MQTT like any
 * device's (L0 logs in with its own certificate). Without a broker, it is appended to the file, and the miner
 * seals it when the broker next starts.
 */
async function deliverOnL0(
  home: Home,
  config: HomeConfig,
  sign: EventSigner,
  opts: DeliveryOptions,
): Promise<{ e: EncodedEvent; delivery: Delivery }> {
  const pid = lockHolder(home, BROKER_LOCK_FILE)
  if (pid === undefined) {
    const ledger = await openHomeLedger(home)
    try {
      const e = sign(ledger.ledger, home, config)
      await ledger.append(e, { now: opts.now })
      return {
        e,
        delivery: {
          recorded: 'ledger',
          delivered: true,
          head: null,
          note: "appended to L0's ledger; the miner seals it when 'kin broker' starts",
        },
      }
    } finally {
      await ledger.close()
    }
  }
  const e = sign(snapshot(home), home, config)
  if (opts.broker === undefined && typeof config.broker !== 'string') {
    throw new KinError(
      'USAGE',
      `'kin broker' (pid ${pid}) owns L0's ledger: give --broker mqtts://HOST:PORT to hand it the ${opts.what} (its ledger file is not written behind its back)`,
    )
  }
  const client = await connectDevice(nodeTransport, brokerLoginOf(home, config, opts.broker), {
    timeoutMs: opts.timeoutMs,
  })
  try {
    await submitEvents(client, config.fleet, config.cn, [e])
  } finally {
    await client.close().catch(() => undefined)
  }
  const delivered = await untilRecorded(home, e.idHex, opts.timeoutMs)
  if (!delivered)
    throw new KinError(
      'BROKER_TIMEOUT',
      `handed the ${opts.what} to 'kin broker' (pid ${pid}) but its ledger does not hold it after ${opts.timeoutMs} ms: see its log`,
      { detail: { id: e.idHex } },
    )
  return {
    e,
    delivery: {
      recorded: 'broker',
      delivered: true,
      head: null,
      note: `submitted to the miner of 'kin broker' (pid ${pid}); it seals it within a moment`,
    },
  }
}

/**
 * Records one event this device signed in its own ledger through its follower (VerificationError with the ledger's
 * code when it refuses: `what` names the event there), then starts the follower, which resubmits every uncovered
 * event, and waits until a head of L0's covers it; when none does in time, throws `late(cause)` (what the person reads
 * about the event now recorded here but not sealed).
 */
export async function recordAndSeal(
  follower: LedgerFollower,
  e: EncodedEvent,
  opts: { what: string; timeoutMs: number; late: (cause: KinError) => KinError },
): Promise<void> {
  const out = await follower.submit([e])
  if (out.accepted.length !== 1) {
    const r = out.refused[0]
    throw new VerificationError(
      (r?.code ?? 'MISSING_LINK') as KinError['code'],
      `this device's ledger refused the ${opts.what}: ${r?.message ?? 'a link is missing'}`,
    )
  }
  try {
    follower.start()
    await follower.waitCovered([e.idHex], opts.timeoutMs)
  } catch (err) {
    throw opts.late(follower.lastError ?? (err as KinError))
  }
}

/**
 * On a device's home: recorded in its own ledger at once (so its own decisions enforce it offline), then handed to
 * the miner through a follower, which waits until a signed head covers it.
 */
async function deliverOnDevice(
  dir: string,
  sign: EventSigner,
  opts: DeliveryOptions,
): Promise<{ e: EncodedEvent; delivery: Delivery }> {
  const opened = await openFollowingHome(dir)
  try {
    const { follower, home, config } = opened
    // A CN enrolled after this device's last sync: catch up first, then sign against its current binding.
    const state = opened.files.ledger.ledger.state
    if (
      (opts.names ?? []).some(
        name =>
          state.currentBinding(name) === undefined &&
          ![...state.bindingsByCn.values()].some(bs => bs.at(-1)?.name === name),
      )
    )
      await follower.syncOnce(opts.timeoutMs).catch(() => undefined)
    const e = sign(opened.files.ledger.ledger, home, config)
    await recordAndSeal(follower, e, {
      what: opts.what,
      timeoutMs: opts.timeoutMs,
      // A broker's PUBACK is no promise: only a head of L0's miner covering the event is. Without one, it is pending.
      late: cause =>
        new KinError(
          'EVENT_PENDING',
          `recorded the ${opts.what} in this device's ledger (in force here from now on), but L0 has not sealed it within ${opts.timeoutMs} ms (${cause.code}: ${cause.message}); it is pending and goes out with the next 'kin sync' or 'kin serve'`,
          { cause, detail: { id: e.idHex, recorded: true, delivered: false, cause: cause.code } },
        ),
    })
    const r = follower.replica
    return {
      e,
      delivery: {
        recorded: 'ledger',
        delivered: true,
        head: headSummary(r.head, r.headId),
        note: `sealed by L0 in head ${r.head?.height}`,
      },
    }
  } finally {
    await opened.close()
  }
}

/** Signs an event with this home's identity and hands it to the fleet (see the module): the event and what became of it. */
export function deliverSignedEvent(
  dir: string,
  config: HomeConfig,
  sign: EventSigner,
  opts: DeliveryOptions,
): Promise<{ e: EncodedEvent; delivery: Delivery }> {
  return config.l0 === true ? deliverOnL0(new Home(dir), config, sign, opts) : deliverOnDevice(dir, sign, opts)
}
