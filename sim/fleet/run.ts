/** @module `kin sim fleet` as a function: plan, enroll through the broker, faults, convergence, access checks, figures. */
import { statSync } from 'node:fs'
import { availableParallelism as availableCores, loadavg } from 'node:os'
import { join } from 'node:path'
import { KinError } from '../../agent/errors.ts'
import { SEAL_INTERVAL_MS } from '../../broker/miner-service.ts'
import { LiveFleet, simClock, type LiveDevice } from '../live/fleet.ts'
import { BundleTier } from './bundle-tier.ts'
import { refreshBundleTier } from './bundle-converge.ts'
import { CHECK_ACTIONS, drawChecks, predict, seededRandom, type FleetCheck } from './checks.ts'
import { Enroller, type EnrollTiming } from './enroller.ts'
import { takeTlsKeys } from './key-pool.ts'
import { planFleet, type FleetPlan, type PlannedDevice } from './plan.ts'
import type { ProgressBar } from './progress.ts'
import { fleetReport } from './report.ts'
import { quantile, round, sampleMemory } from './stats.ts'

export type { FleetRunOptions, FleetRunResult, PhaseFigures } from './run-types.ts'
import type { FleetRunOptions, FleetRunResult, PhaseFigures } from './run-types.ts'

/** `n thing` or `n things`. */
function plural(n: number, thing: string): string {
  return `${n} ${thing}${n === 1 ? '' : 's'}`
}

/**
 * L0's longest wait before sealing when the run names none, ms: the broker's SEAL_INTERVAL_MS up to
 * 5 × SEAL_INTERVAL_MS devices, then N/5 (2 s at 10,000). Every full device syncs on every head, so fewer heads as N
 * grows keep that fan-out in bounds; a bundle device's first bundle waits for the next seal, so not N ms either.
 */
export function defaultSealIntervalMs(devices: number): number {
  return Math.max(SEAL_INTERVAL_MS, Math.round(devices / 5))
}

const NO_BAR: ProgressBar = { update: () => undefined, done: () => undefined }

function phases(timings: readonly EnrollTiming[]): PhaseFigures {
  const med = (k: Exclude<keyof EnrollTiming, 'label'>) =>
    round(
      quantile(
        timings.map(t => t[k]),
        0.5,
      ),
      1,
    )
  return {
    queuedMs: med('queuedMs'),
    inviteMs: med('inviteMs'),
    pairingMs: med('pairingMs'),
    homeMs: med('homeMs'),
    submitMs: med('submitMs'),
    followMs: med('followMs'),
    totalMs: med('totalMs'),
    p99TotalMs: round(
      quantile(
        timings.map(t => t.totalMs),
        0.99,
      ),
      1,
    ),
  }
}

/** Waits until every device in good standing holds L0's whole log under L0's latest head. */
async function convergeAll(
  fleet: LiveFleet,
  timeoutMs: number,
  bar: ProgressBar,
): Promise<{ ms: number; sameHead: boolean }> {
  const started = Date.now()
  for (;;) {
    const miner = fleet.l0.miner.miner
    const size = fleet.l0.ledger.ledger.size,
      headId = miner.latestHeadId()
    const standing = fleet.standing()
    const lagging = standing
      .filter(d => d.replica !== undefined)
      .filter(d => d.replica!.replica.coveredSize < size || d.replica!.replica.headId !== headId)
    bar.update(standing.length - lagging.length)
    if (lagging.length === 0 && !miner.unsealed) return { ms: Date.now() - started, sameHead: true }
    if (Date.now() - started > timeoutMs) {
      throw new KinError(
        'BROKER_TIMEOUT',
        `${lagging.length} devices (${lagging
          .slice(0, 5)
          .map(d => d.label)
          .join(', ')}…) did not reach L0's head over ${size} events within ${timeoutMs} ms`,
      )
    }
    await new Promise(r => setTimeout(r, 20))
  }
}

function roleCounts(plan: FleetPlan): Record<string, number> {
  const out: Record<string, number> = {}
  for (const d of plan.devices) out[d.role] = (out[d.role] ?? 0) + 1
  return out
}

/**
 * Runs a fleet: L0 in process, `devices` enrolled through the broker with pairing codes (RSA keys from the pool),
 * optional faults, convergence on one head, random access checks with predicted outcomes, and the figures.
 * Resolves with `ok` false (and `failures`) when a check, the convergence or the no-loss check failed; rejects
 * only when the fleet could not run at all.
 */
export async function runFleet(o: FleetRunOptions): Promise<FleetRunResult> {
  const started = performance.now()
  const cpu0 = process.cpuUsage()
  const bars = o.bars ?? (() => NO_BAR)
  const say = o.say ?? (() => undefined)
  const memory = sampleMemory(500)
  const plan = planFleet({
    devices: o.devices,
    depth: o.depth ?? 3,
    ...(o.fanout !== undefined ? { fanout: o.fanout } : {}),
    tiers: o.tiers ?? 'full',
  })
  const n = plan.devices.length
  const concurrency = o.concurrency ?? 16
  const failures: string[] = []
  const random = seededRandom(o.seed ?? 1)

  const keyBar = bars('keys', n)
  const { keys, stats: keyStats } = await takeTlsKeys(n, o.keyPool, done => keyBar.update(done), o.keyType)
  keyBar.done()
  say(
    `keys: ${keyStats.fromDisk} RSA-2048 key pairs from the pool${keyStats.file ? ` (${keyStats.file})` : ''}, ${keyStats.made} made now in ${round(keyStats.makeMs / 1000)} s — key generation is kept out of the enrollment figures`,
  )

  const load0 = loadavg()[0]!
  const sealIntervalMs = o.sealIntervalMs ?? defaultSealIntervalMs(n)
  const fleet = await LiveFleet.start({
    dir: o.dir,
    domain: 'fleet.home.arpa',
    clock: simClock(),
    sealIntervalMs,
    ...(o.log ? { log: o.log } : {}),
  })
  const baselineRssMb = round(process.memoryUsage().rss / 2 ** 20)
  const bundleTier = new BundleTier(fleet)
  const enroller = new Enroller(fleet, { concurrency, bundle: bundleTier })
  try {
    // Two waves when a fault is asked for: the fault happens between them, so the second wave enrolls through a
    // restarted L0 and partitioned devices miss it.
    const faults = o.killBroker === true || (o.partition ?? 0) > 0
    const split = faults ? Math.max(1, Math.ceil(n / 2)) : n
    const waveA = plan.devices.slice(0, split),
      waveB = plan.devices.slice(split)
    const enrollBar = bars('enroll', n)
    const timings: EnrollTiming[] = []
    const curve: Array<{ seconds: number; enrolled: number }> = [{ seconds: 0, enrolled: 0 }]
    const enrollStarted = performance.now()
    let enrollPaused = 0
    const onEnrolled = (t: EnrollTiming) => {
      timings.push(t)
      enrollBar.update(timings.length)
      curve.push({
        seconds: round((performance.now() - enrollStarted - enrollPaused) / 1000, 2),
        enrolled: timings.length,
      })
    }
    await enroller.enroll(waveA, keys.slice(0, split), onEnrolled)

    // Cut off and revoked: first-wave devices that invite nobody in the second wave (a parent's follower pauses and
    // resumes around its invites, which would end its partition). Revocations take leaves, so nobody else falls with them.
    const waveBParents = new Set(waveB.map(d => d.parent))
    const shuffled = (xs: PlannedDevice[]) => {
      const a = [...xs]
      for (let i = a.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1))
        ;[a[i], a[j]] = [a[j]!, a[i]!]
      }
      return a
    }
    const free = shuffled(waveA.filter(d => !waveBParents.has(d.label)))
    const revokeCount = Math.min(
      free.filter(d => !d.inner).length,
      o.revocations ?? Math.min(10, Math.max(1, Math.round(n / 100))),
    )
    const toRevoke = free.filter(d => !d.inner).slice(0, revokeCount)
    const revokedLabels = new Set(toRevoke.map(d => d.label))
    const revokedUnder = (d: PlannedDevice) => revokedLabels.has(d.label) || revokedLabels.has(d.parent)
    // The parents of revoked devices sign the revocations, through their followers: they stay connected.
    const revokers = new Set(toRevoke.map(d => d.parent))
    // Only full devices follow the ledger, so only they can be cut off from it.
    const pool = free.filter(d => !revokedUnder(d) && !revokers.has(d.label) && d.tier === 'full')
    const partitioned: LiveDevice[] = []
    const interlude = performance.now()
    let partitionStarted = 0,
      sizeAtPartition = 0
    if ((o.partition ?? 0) > 0) {
      const k = Math.min(o.partition!, pool.length)
      if (k < o.partition!)
        say(
          `partition: only ${k} first-wave devices can be cut off (asked ${o.partition}): the others invite second-wave devices, revoke or are revoked`,
        )
      for (const p of pool.slice(0, k)) partitioned.push(fleet.device(p.label))
      await Promise.all(partitioned.map(d => enroller.pause(d)))
      partitionStarted = performance.now()
      sizeAtPartition = fleet.l0.ledger.ledger.size
      say(`partition: ${plural(partitioned.length, 'device')} stopped following the ledger`)
    }
    const revokeIds: string[] = []
    const revocations = Promise.all(
      toRevoke.map(async p => {
        const e = await fleet.revoke(p.parent, p.label, { reason: 'retired', subtree: false })
        revokeIds.push(e.idHex)
      }),
    )
    revocations.catch(() => undefined)
    let brokerRestart: FleetRunResult['brokerRestart']
    if (o.killBroker === true) {
      // The revocations are on their way (submitted, maybe not yet mined) when L0 goes down.
      await new Promise(r => setTimeout(r, 5))
      const eventsBefore = fleet.l0.ledger.ledger.size
      await enroller.closeL0Session()
      const t0 = performance.now()
      await fleet.restartL0()
      const restartMs = round(performance.now() - t0, 1)
      const eventsAfterRestart = fleet.l0.ledger.ledger.size
      brokerRestart = { restartMs, eventsBefore, inFlight: 0, eventsAfterRestart }
      say(
        `kill-broker: L0 restarted in ${restartMs} ms on the same home and port; its ledger reopened with ${eventsAfterRestart} events (${eventsBefore} before)`,
      )
    }
    await revocations
    if (brokerRestart !== undefined) brokerRestart.inFlight = revokeIds.length
    say(
      `revoked ${plural(toRevoke.length, 'device')} (${toRevoke.map(p => p.label).join(', ')}) by their parents${brokerRestart ? ', across the restart' : ''}`,
    )
    enrollPaused = performance.now() - interlude
    await enroller.enroll(waveB, keys.slice(split), onEnrolled)
    enrollBar.done()
    const enrollSeconds = (performance.now() - enrollStarted - enrollPaused) / 1000
    const perSecond = round(n / enrollSeconds, 1)
    say(
      `enrolled ${n} devices through the broker in ${round(enrollSeconds)} s: ${perSecond}/s with ${concurrency} at once (pairing codes over MQTT/TLS, CA, miner, homes on disk)`,
    )

    let partition: FleetRunResult['partition']
    if (partitioned.length > 0) {
      const waitMs = (o.partitionMinMs ?? 2000) - (performance.now() - partitionStarted)
      if (waitMs > 0) await new Promise(r => setTimeout(r, waitMs))
      const missed = fleet.l0.ledger.ledger.size - sizeAtPartition
      const seconds = round((performance.now() - partitionStarted) / 1000, 1)
      const t0 = performance.now()
      for (const d of partitioned) enroller.resume(d)
      const healBar = bars('partition', partitioned.length)
      const deadline = Date.now() + (o.convergeTimeoutMs ?? Math.max(120_000, n * 300))
      for (;;) {
        const size = fleet.l0.ledger.ledger.size
        const behind = partitioned.filter(d => d.replica!.replica.coveredSize < size)
        healBar.update(partitioned.length - behind.length)
        if (behind.length === 0) break
        if (Date.now() > deadline)
          throw new KinError('BROKER_TIMEOUT', `${behind.length} partitioned devices did not catch up`)
        await new Promise(r => setTimeout(r, 20))
      }
      healBar.done()
      partition = {
        devices: partitioned.length,
        labels: partitioned.map(d => d.label),
        seconds,
        eventsMissed: missed,
        catchUpMs: round(performance.now() - t0, 1),
      }
      say(
        `partition healed after ${seconds} s: ${partitioned.length} devices caught up on ${missed} events they missed in ${partition.catchUpMs} ms`,
      )
    }

    const convergeBar = bars('converge', n)
    const converged = await convergeAll(fleet, o.convergeTimeoutMs ?? Math.max(120_000, n * 300), convergeBar)
    convergeBar.done()
    const tierFailures = await refreshBundleTier(fleet, bundleTier, concurrency, bars, say)
    failures.push(...tierFailures)
    const miner = fleet.l0.miner.miner
    const state = fleet.l0.ledger.ledger.state
    const standingCount = fleet.standing().length
    say(
      `converged: ${standingCount} devices in good standing hold L0's head ${miner.latestHead()?.height} over ${fleet.l0.ledger.ledger.size} events (${converged.ms} ms after the last change)`,
    )
    const everySubmitted = [...enroller.submitted, ...revokeIds]
    const lost = everySubmitted.filter(id => !state.has(id)).length
    if (lost > 0) failures.push(`${lost} submitted events are not in L0's ledger`)

    // Access checks: the plan predicts each outcome; revoked devices are asked for once each on purpose.
    const parents = new Map(plan.devices.map(d => [d.label, d.parent]))
    const roles = new Map(plan.devices.map(d => [d.label, d.role as string]))
    const revokedSet = new Set(toRevoke.map(p => p.label))
    const draws = drawChecks(fleet, o.checks ?? 500, random, bundleTier)
    const standing = [...fleet.standing(), ...bundleTier.standing()].filter(d => d.label !== 'L0')
    for (const label of revokedSet) {
      const target = standing[Math.floor(random() * standing.length)]
      if (target !== undefined) draws.unshift({ peer: fleet.device(label), target, action: CHECK_ACTIONS[0] })
    }
    const checkBar = bars('checks', draws.length)
    const checks: FleetCheck[] = []
    for (const [i, c] of draws.entries()) {
      const { decision, ms } = bundleTier.decide(c.peer, c.target, c.action)
      const p = predict(parents, roles, revokedSet, c.peer.label, c.target.label, c.action)
      checks.push({
        peer: c.peer.label,
        target: c.target.label,
        action: c.action,
        decision,
        ...p,
        ok: decision.allow === (p.expected === 'allow'),
        ms,
        via: 'session',
        decidedBy: 'target',
      })
      if (i % 50 === 0) {
        checkBar.update(i + 1)
        await new Promise(r => setImmediate(r))
      }
    }
    checkBar.done()
    const tlsChecks: FleetCheck[] = []
    // Over mutual TLS both ends decide on their own replicas: full devices only.
    for (const c of draws
      .filter(c => !bundleTier.has(c.peer.label) && !bundleTier.has(c.target.label))
      .slice(0, o.tlsChecks ?? 10)) {
      const t0 = performance.now()
      const { decision, decidedBy } = await fleet.ask(c.peer.label, c.target.label, c.action)
      const ms = performance.now() - t0
      const p = predict(parents, roles, revokedSet, c.peer.label, c.target.label, c.action)
      tlsChecks.push({
        peer: c.peer.label,
        target: c.target.label,
        action: c.action,
        decision,
        ...p,
        ok: decision.allow === (p.expected === 'allow'),
        ms,
        via: 'tls',
        decidedBy,
      })
    }
    const unexpected = checks.filter(c => !c.ok),
      unexpectedTls = tlsChecks.filter(c => !c.ok)
    for (const c of [...unexpected, ...unexpectedTls].slice(0, 10))
      failures.push(
        `${c.peer} → ${c.target} ${c.action}: ${c.decision.allow ? 'allow' : 'deny'} ${c.decision.code}, expected ${c.expected} (${c.because}) [${c.via}${c.decidedBy === 'requester' ? ", refused by the requester's server check" : ''}]`,
      )
    const lat = checks.map(c => c.ms),
      tlsLat = tlsChecks.map(c => c.ms)
    const decisions: FleetRunResult['decisions'] = {
      via: "in process, on each target's AccessSession with its own replica (the peer's certificate DER as a TLS handshake hands it over)",
      count: checks.length,
      p50Ms: round(quantile(lat, 0.5), 3),
      p99Ms: round(quantile(lat, 0.99), 3),
      maxMs: round(Math.max(0, ...lat), 3),
      allowed: checks.filter(c => c.decision.allow).length,
      denied: checks.filter(c => !c.decision.allow).length,
      unexpected: unexpected.length,
      tls: {
        count: tlsChecks.length,
        p50Ms: round(quantile(tlsLat, 0.5), 1),
        p99Ms: round(quantile(tlsLat, 0.99), 1),
        unexpected: unexpectedTls.length,
        refusedByRequester: tlsChecks.filter(c => c.decidedBy === 'requester').length,
      },
    }
    if (checks.length === 0) say('decisions: none — no device in good standing to ask')
    else
      say(
        `decisions: ${checks.length} in process (p50 ${decisions.p50Ms} ms, p99 ${decisions.p99Ms} ms), ${decisions.allowed} allowed, ${decisions.denied} denied, ${unexpected.length} not as the plan predicts; ` +
          `${tlsChecks.length} also over mutual TLS (p50 ${decisions.tls.p50Ms} ms), ${unexpectedTls.length} unexpected` +
          (decisions.tls.refusedByRequester > 0
            ? `, ${decisions.tls.refusedByRequester} refused by the requester's own server check (its ledger lacks the target)`
            : ''),
      )

    const log = state.log
    const eventBytes = log.reduce((s, e) => s + e.bytes.length, 0)
    const enrollBytes = log
      .filter(e => e.event.type === 'authorize' || e.event.type === 'certified')
      .reduce((s, e) => s + e.bytes.length, 0)
    let fileBytes = 0
    try {
      fileBytes = statSync(join(fleet.l0Home.dir, 'ledger.cbor')).size
    } catch {
      /* reported as 0 */
    }
    const ledger = {
      events: log.length,
      eventBytes,
      fileBytes,
      bytesPerDevice: round(eventBytes / n, 1),
      enrollmentBytesPerDevice: round(enrollBytes / (log.filter(e => e.event.type === 'certified').length || 1), 1),
    }

    const samples = memory.stop()
    const end = samples[samples.length - 1]!
    const cpu = process.cpuUsage(cpu0)
    const seconds = round((performance.now() - started) / 1000, 1)
    const headCounts = [...enroller.counters.heads.values()]
    if (enroller.counters.alarms.length > 0)
      failures.push(
        `${enroller.counters.alarms.length} forking-miner alarms (first: ${enroller.counters.alarms[0]!.code})`,
      )
    const result: FleetRunResult = {
      ok: failures.length === 0,
      failures,
      seconds,
      plan: { devices: n, depth: plan.depth, fanout: plan.fanout, roles: roleCounts(plan) },
      dir: o.dir,
      keys: keyStats,
      enrollment: {
        devices: n,
        seconds: round(enrollSeconds, 2),
        perSecond,
        concurrency,
        phases: phases(timings),
        retries: Object.fromEntries(enroller.counters.retries),
      },
      brokerRestart,
      partition,
      revoked: toRevoke.map(p => p.label),
      convergence: {
        ms: converged.ms,
        events: fleet.l0.ledger.ledger.size,
        headHeight: miner.latestHead()?.height ?? 0,
        devices: standingCount,
        sameHead: converged.sameHead,
      },
      decisions,
      ledger,
      memory: {
        peakRssMb: memory.peakRssMb(),
        peakHeapMb: memory.peakHeapMb(),
        endRssMb: end.rssMb,
        endHeapMb: end.heapMb,
        baselineRssMb,
        rssPerDeviceKb: round(((end.rssMb - baselineRssMb) * 1024) / n, 0),
      },
      cpu: {
        userSeconds: round(cpu.user / 1e6, 1),
        systemSeconds: round(cpu.system / 1e6, 1),
        coresBusy: round((cpu.user + cpu.system) / 1e6 / Math.max(0.001, (performance.now() - started) / 1000), 2),
        cores: availableCores(),
        loadAverage: [round(load0, 1), round(loadavg()[0]!, 1)],
      },
      followers: {
        alarms: enroller.counters.alarms.length,
        errors: Object.fromEntries(enroller.counters.errors),
        headsAdoptedMedian: quantile(headCounts, 0.5),
      },
      lost,
      checks: [...checks, ...tlsChecks],
      memorySamples: samples,
      enrollCurve: curve,
      report: undefined,
      tiers: bundleTier.devices.size > 0 ? bundleTier.figures(checks) : undefined,
    }
    if (o.report === true) result.report = fleetReport(fleet, enroller.kinds, result, o)
    await o.inspect?.(
      fleet,
      partitioned.map(d => d.label),
      bundleTier,
    )
    return result
  } finally {
    await enroller.closeL0Session()
    const closeBar = bars('stopping', 1)
    await fleet.close()
    closeBar.done()
    memory.stop()
  }
}
