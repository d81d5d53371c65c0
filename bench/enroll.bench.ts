/** @module Enrollment figures per TLS key type through the real L0 on loopback: the phases (key generation, CSR, authorize, CA issue, round trips), latency, and enrollments per second with 20 at once. */
import { createPublicKey } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { L0Services } from '../broker/l0.ts'
import { initL0Home, LoopbackL0 } from '../sim/live/l0.ts'
import { Home } from '../runtime/home.ts'
import { FleetCa } from '../agent/enroll/ca.ts'
import { acceptAuthorization, createEnrollCsr } from '../agent/enroll/child.ts'
import { authorizeChild } from '../agent/enroll/parent.ts'
import type { DeviceSecrets, EnrollRequest } from '../agent/enroll/request.ts'
import type { GossipClient } from '../agent/gossip/client.ts'
import {
  enrollThroughBroker,
  handOverFirstEvents,
  type EnrolledDevice,
  type EnrollOptions,
} from '../agent/gossip/enroll-session.ts'
import { completeInvite, openInvite, type Inviter } from '../agent/gossip/invite-session.ts'
import { connectDevice } from '../agent/gossip/login.ts'
import { Ledger } from '../agent/ledger/ledger.ts'
import type { TlsKeyPair } from '../agent/ports/pki.ts'
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { nodePki } from '../runtime/node/pki.ts'
import { nodeTransport } from '../runtime/node/transport.ts'
import { nodeVerifier } from '../runtime/node/verifier.ts'

/*
 * Key types measured: KIN_BENCH_KEY_TYPES (default "rsa2048,p256"); the first is the baseline every ratio is taken
 * against, in the same run. A type this build cannot make (the TLS key generator ignores the asked type and makes
 * another) gets one row saying so instead of figures that would be RSA's under another name.
 */
const KEY_TYPES = (process.env.KIN_BENCH_KEY_TYPES ?? 'rsa2048,p256')
  .split(',')
  .map(s => s.trim())
  .filter(s => s !== '')
/** Which parts run: KIN_BENCH_ENROLL_PARTS (default "phases,latency,concurrent"), e.g. one part under --cpu-prof. */
const PARTS = new Set((process.env.KIN_BENCH_ENROLL_PARTS ?? 'phases,latency,concurrent').split(',').map(s => s.trim()))
const DOMAIN = 'bench.home.arpa'
const STEP_MS = 60_000
const SEQUENTIAL_RUNS = 8
const PHASE_RUNS = 12
const AT_ONCE = 20
const now = () => Math.floor(Date.now() / 1000)

/** What node:crypto calls each key type's SPKI. */
const ASYMMETRIC: Record<string, string> = { rsa2048: 'rsa', p256: 'ec' }

type EnrollKeys = NonNullable<EnrollOptions['keys']>

/** A TLS key of `type` from the node provider; undefined when this build makes another type whatever is asked. */
async function tlsKey(type: string): Promise<TlsKeyPair | undefined> {
  // The argument is ignored by a provider that makes RSA-2048 only; the key it returns says what it made.
  const key = await (nodePki.generateTlsKeyPair as (keyType?: string) => Promise<TlsKeyPair>)(type)
  const made = createPublicKey({ key: Buffer.from(key.spkiDer), format: 'der', type: 'spki' }).asymmetricKeyType
  return made === ASYMMETRIC[type] ? key : undefined
}

/** Both key pairs of a new device with a TLS key of `type` (as createEnrollRequest makes them), and how long the TLS key took. */
async function enrollKeys(type: string, name = 'bench lock'): Promise<{ keys: EnrollKeys; keygenMs: number }> {
  const t0 = performance.now()
  const tls = await tlsKey(type)
  const keygenMs = performance.now() - t0
  if (tls === undefined) throw new Error(`no ${type} key`)
  const ledger = nodeCrypto.ed25519KeyPair()
  const request: EnrollRequest = { spkiDer: tls.spkiDer, ledgerKey: ledger.publicKey, kind: 'lock', name }
  const secrets: DeviceSecrets = { tls, ledgerSeed: ledger.secretKey }
  return { keys: { request, secrets }, keygenMs }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return Math.round((s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2) * 100) / 100
}

function ratio(x: number, baseline: number | undefined): number | undefined {
  return baseline === undefined || baseline === 0 ? undefined : Math.round((x / baseline) * 1000) / 1000
}

/**
 * The enrollment's own work, each step on its own, no broker: TLS key generation, the CSR (built and signed by the
 * device), the parent's authorize event, and the CA's checks and certificate, on a scratch copy of L0's ledger.
 */
async function phases(l0: L0Services, home: Home, type: string): Promise<Record<string, number>> {
  const scratch = new Ledger(nodeCrypto)
  for (const e of l0.ledger.ledger.state.log) scratch.ingest(e, { trustSignatures: true })
  // The CSR checked with the native verifier, as L0's CA service checks it.
  const ca = new FleetCa({
    crypto: nodeCrypto,
    verifier: nodeVerifier,
    rootCertPem: l0.rootPem,
    rootKeyPem: home.readText('caKey'),
    ledger: {
      ledger: scratch,
      append: async (e, o) => {
        scratch.ingest(e, o)
        return e
      },
    },
  })
  const parent = { cn: l0.cn, ledgerSeed: home.readLedgerKey() }
  const runs: Array<Record<string, number>> = []
  for (let i = 0; i < PHASE_RUNS; i++) {
    const { keys, keygenMs } = await enrollKeys(type, `bench lock ${i}`)
    const t = now()
    const t0 = performance.now()
    const authorize = authorizeChild(
      nodeCrypto,
      scratch,
      parent,
      keys.request,
      { role: 'device', notAfter: t + 86400 },
      t,
    )
    const t1 = performance.now()
    const accepted = acceptAuthorization(nodeCrypto, authorize.bytes, keys.request, DOMAIN)
    const csrPem = await createEnrollCsr(accepted, keys.secrets)
    const t2 = performance.now()
    await ca.issue({ authorizeBytes: authorize.bytes, csrPem, now: t })
    const t3 = performance.now()
    runs.push({ keygenMs, authorizeMs: t1 - t0, csrMs: t2 - t1, caIssueMs: t3 - t2 })
  }
  const out: Record<string, number> = {}
  for (const k of Object.keys(runs[0]!)) out[k] = median(runs.map(r => r[k]!))
  return out
}

/** One whole enrollment through the broker, its steps timed from the device's side. */
async function enrollOne(
  client: GossipClient,
  inviter: Inviter,
  url: string,
  type: string,
  keysBeforehand?: EnrollKeys,
) {
  const t0 = performance.now()
  const opened = await openInvite(
    nodeCrypto,
    client,
    inviter,
    { role: 'device', name: '', ttlSeconds: 600, guestValidSeconds: 86400 },
    { now: now(), timeoutMs: STEP_MS },
  )
  const t1 = performance.now()
  const parent = completeInvite(nodeCrypto, nodePki, client, inviter, opened, {
    keep: async () => undefined,
    now,
    stepTimeoutMs: STEP_MS,
  })
  const made = keysBeforehand === undefined ? await enrollKeys(type) : { keys: keysBeforehand, keygenMs: 0 }
  const steps = new Map<string, number>([['start', performance.now()]])
  const device: EnrolledDevice = await enrollThroughBroker(nodeCrypto, nodePki, nodeTransport, {
    code: opened.code,
    url,
    kind: 'lock',
    name: 'bench lock',
    stepTimeoutMs: STEP_MS,
    now,
    keys: made.keys,
    onStep: s => {
      steps.set(s, performance.now())
    },
  })
  const t2 = performance.now()
  await parent
  await handOverFirstEvents(nodeTransport, device, url, STEP_MS)
  const t3 = performance.now()
  const at = (s: string) => steps.get(s) ?? t2
  return {
    inviteMs: t1 - t0,
    keygenMs: made.keygenMs,
    loginMs: at('login') - at('start'),
    authorizeRoundTripMs: at('authorized') - at('login'),
    csrMs: at('csr') - at('authorized'),
    certRoundTripMs: at('certified') - at('csr'),
    submitMs: t3 - t2,
    totalMs: t3 - t0,
  }
}

export async function run(emit: (row: object) => void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kin-bench-enroll-'))
  let l0: L0Services | undefined
  let client: GossipClient | undefined
  try {
    const homeDir = join(dir, 'l0')
    await initL0Home(homeDir, { domain: DOMAIN, now: now() })
    const loopback = await LoopbackL0.start({ home: homeDir, log: () => undefined })
    l0 = loopback.services
    const url = loopback.url
    const home = new Home(homeDir)
    // In-process the inviting L0 reads the miner's live ledger (the CLI reads a snapshot of the same file).
    const inviter: Inviter = {
      cn: l0.cn,
      fleet: l0.fleet,
      l0Cn: l0.cn,
      ledgerSeed: home.readLedgerKey(),
      ledger: l0.ledger.ledger,
      rootPem: l0.rootPem,
    }
    client = await connectDevice(
      nodeTransport,
      {
        url,
        cn: l0.cn,
        certPem: home.readText('cert'),
        keyPem: home.readText('tlsKey'),
        rootPem: l0.rootPem,
        l0Cn: l0.cn,
      },
      { timeoutMs: STEP_MS },
    )
    const c = client
    const baseline: Record<string, number> = {}

    for (const type of KEY_TYPES) {
      if (ASYMMETRIC[type] === undefined || (await tlsKey(type)) === undefined) {
        emit({
          bench: 'enroll.keytype',
          keyType: type,
          skipped: `this build makes no ${type} TLS keys (known types: ${Object.keys(ASYMMETRIC).join(', ')})`,
        })
        continue
      }
      const isBaseline = Object.keys(baseline).length === 0
      const ratios = (figures: Record<string, number>, keys: string[]) =>
        isBaseline ? undefined : Object.fromEntries(keys.map(k => [k, ratio(figures[k]!, baseline[k])]))

      // The device's and the CA's own work, step by step, with nothing in between.
      const p = PARTS.has('phases') ? await phases(l0, home, type) : {}
      if (isBaseline) for (const [k, v] of Object.entries(p)) baseline[`phase.${k}`] = v
      if (PARTS.has('phases'))
        emit({
          bench: 'enroll.phases',
          keyType: type,
          runs: PHASE_RUNS,
          ...p,
          ...(isBaseline
            ? { baseline: true }
            : {
                ratioToBaseline: ratios(
                  Object.fromEntries(Object.entries(p).map(([k, v]) => [`phase.${k}`, v])),
                  Object.keys(p).map(k => `phase.${k}`),
                ),
              }),
          note: "medians, ms, in process without the broker: TLS key generation, the parent's authorize event, the device's CSR, the CA's checks and certificate",
        })

      // Latency, one enrollment at a time, keys made during the enrollment as `kin enroll` does.
      await enrollOne(c, inviter, url, type)
      if (PARTS.has('latency')) {
        const runs = []
        for (let i = 0; i < SEQUENTIAL_RUNS; i++) runs.push(await enrollOne(c, inviter, url, type))
        const lat: Record<string, number> = {}
        for (const k of Object.keys(runs[0]!) as Array<keyof (typeof runs)[number]>)
          lat[k] = median(runs.map(r => r[k]))
        if (isBaseline) baseline.totalMs = lat.totalMs!
        emit({
          bench: 'enroll.latency',
          keyType: type,
          runs: runs.length,
          ...lat,
          // What is neither the device's nor the CA's computation: logins, messages, fsyncs, the lineage check.
          roundTripsMs: Math.round((lat.totalMs! - lat.keygenMs! - lat.csrMs! - (p.caIssueMs ?? 0)) * 100) / 100,
          ...(isBaseline
            ? { baseline: true }
            : { ratioToBaseline: { totalMs: ratio(lat.totalMs!, baseline.totalMs) } }),
          note: 'medians, ms; authorizeRoundTripMs: request to checked authorization (the parent signs); certRoundTripMs: CSR sent to certificate, lineage and certified event; totalMs includes invite registration and submission',
        })
      }

      // Throughput: 20 devices enrolling at once through one L0, with keys made during enrollment and made beforehand.
      for (const keysBeforehand of PARTS.has('concurrent') ? [false, true] : []) {
        const keys = keysBeforehand
          ? await Promise.all(Array.from({ length: AT_ONCE }, async () => (await enrollKeys(type)).keys))
          : undefined
        const before = l0.ledger.ledger.size
        const start = performance.now()
        const results = await Promise.all(
          Array.from({ length: AT_ONCE }, (_, i) => enrollOne(c, inviter, url, type, keys?.[i])),
        )
        // A submission is acknowledged before the miner wrote it: the run ends when L0's ledger holds every event.
        const expected = before + 2 * AT_ONCE
        const deadline = performance.now() + STEP_MS
        while (l0.ledger.ledger.size < expected && performance.now() < deadline)
          await new Promise(r => setTimeout(r, 10))
        const seconds = (performance.now() - start) / 1000
        const perSec = Math.round((AT_ONCE / seconds) * 10) / 10
        const key = `perSec.${keysBeforehand}`
        if (isBaseline) baseline[key] = perSec
        emit({
          bench: 'enroll.concurrent',
          keyType: type,
          devices: AT_ONCE,
          keygen: keysBeforehand ? 'beforehand' : 'during',
          seconds: Math.round(seconds * 100) / 100,
          enrollmentsPerSec: perSec,
          medianTotalMs: median(results.map(r => r.totalMs)),
          maxTotalMs: Math.round(Math.max(...results.map(r => r.totalMs))),
          l0EventsAdded: l0.ledger.ledger.size - before,
          ...(isBaseline
            ? { baseline: true }
            : { ratioToBaseline: { enrollmentsPerSec: ratio(perSec, baseline[key]) } }),
        })
      }
    }
  } finally {
    await client?.close()
    await l0?.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run(row => process.stdout.write(JSON.stringify(row) + '\n'))
}
