/** @module Enrollment figures through the real L0 on loopback: latency with key generation apart, and enrollments per second with 20 at once. */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startL0, type L0Services } from '../broker/l0.ts'
import { Home } from '../agent/cli/home.ts'
import { writeL0Home } from '../agent/cli/home-writers.ts'
import { createFleet } from '../agent/enroll/fleet.ts'
import { createEnrollRequest } from '../agent/enroll/request.ts'
import type { GossipClient } from '../agent/gossip/client.ts'
import { enrollThroughBroker, type EnrolledDevice } from '../agent/gossip/enroll-session.ts'
import { completeInvite, openInvite, type Inviter } from '../agent/gossip/invite-session.ts'
import { connectDevice } from '../agent/gossip/login.ts'
import { submitEvents } from '../agent/gossip/submit.ts'
import { nodeCrypto } from '../firmware-shims/node/crypto.ts'
import { nodePki } from '../firmware-shims/node/pki.ts'
import { nodeTransport } from '../firmware-shims/node/transport.ts'

const DOMAIN = 'bench.home.arpa'
const STEP_MS = 60_000
const SEQUENTIAL_RUNS = 8
const AT_ONCE = 20
const now = () => Math.floor(Date.now() / 1000)

/** What `kin init` writes, in-process and without printing. */
async function initL0(dir: string): Promise<void> {
  await writeL0Home(new Home(dir), await createFleet(nodeCrypto, nodePki, { domain: DOMAIN, now: now() }), 'home pc')
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return Math.round((s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2) * 10) / 10
}

/** One whole enrollment: invite registered by L0, the child pairs, is certified, and submits its events (acknowledged by the broker). */
async function enrollOne(l0: L0Services, client: GossipClient, inviter: Inviter, url: string, keys?: Awaited<ReturnType<typeof createEnrollRequest>>) {
  const t0 = performance.now()
  const opened = await openInvite(nodeCrypto, client, inviter, { role: 'device', name: '', ttlSeconds: 600, guestValidSeconds: 86400 }, { now: now(), timeoutMs: STEP_MS })
  const t1 = performance.now()
  const parent = completeInvite(nodeCrypto, nodePki, client, inviter, opened, { keep: async () => undefined, now, stepTimeoutMs: STEP_MS })
  const device: EnrolledDevice = await enrollThroughBroker(nodeCrypto, nodePki, nodeTransport, {
    code: opened.code, url, kind: 'lock', name: 'bench lock', stepTimeoutMs: STEP_MS, now, ...(keys ? { keys } : {}),
  })
  const t2 = performance.now()
  await parent
  const session = await connectDevice(nodeTransport, { url, cn: device.cn, certPem: device.certPem, keyPem: device.secrets.tls.privateKeyPem, rootPem: device.rootPem, l0Cn: device.l0Cn }, { timeoutMs: STEP_MS })
  await submitEvents(session, device.fleet, device.cn, [device.authorize, device.certified])
  await session.close()
  const t3 = performance.now()
  void l0
  return { inviteMs: t1 - t0, keygenMs: device.keygenMs, pairingMs: t2 - t1 - device.keygenMs, submitMs: t3 - t2, totalMs: t3 - t0 }
}

export async function run(emit: (row: object) => void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kin-bench-enroll-'))
  let l0: L0Services | undefined
  let client: GossipClient | undefined
  try {
    const home = join(dir, 'l0')
    await initL0(home)
    l0 = await startL0({ home, host: '127.0.0.1', port: 0, log: () => undefined })
    const url = `mqtts://127.0.0.1:${l0.port}`
    const h = new Home(home)
    // In-process the inviting L0 reads the miner's live ledger (the CLI reads a snapshot of the same file).
    const inviter: Inviter = { cn: l0.cn, fleet: l0.fleet, l0Cn: l0.cn, ledgerSeed: h.readLedgerKey(), ledger: l0.ledger.ledger, rootPem: l0.rootPem }
    client = await connectDevice(nodeTransport, { url, cn: l0.cn, certPem: h.readText('cert'), keyPem: h.readText('tlsKey'), rootPem: l0.rootPem, l0Cn: l0.cn }, { timeoutMs: STEP_MS })
    const c = client

    // Latency, one enrollment at a time. Native RSA-2048 key generation is reported apart: it dominates and
    // varies with the machine's entropy and load; the rest is the protocol (logins, messages, CA, fsyncs).
    await enrollOne(l0, c, inviter, url)
    const runs = []
    for (let i = 0; i < SEQUENTIAL_RUNS; i++) runs.push(await enrollOne(l0, c, inviter, url))
    emit({
      bench: 'enroll.latency', runs: runs.length, keygenMs: median(runs.map(r => r.keygenMs)), pairingMs: median(runs.map(r => r.pairingMs)),
      inviteMs: median(runs.map(r => r.inviteMs)), submitMs: median(runs.map(r => r.submitMs)), totalMs: median(runs.map(r => r.totalMs)),
      note: 'medians; pairingMs = login to recorded certificate without key generation; totalMs includes invite registration and submission',
    })

    // Throughput: 20 devices enrolling at once through one L0, with keys made during enrollment and made beforehand.
    for (const keysBeforehand of [false, true]) {
      const keys = keysBeforehand ? await Promise.all(Array.from({ length: AT_ONCE }, () => createEnrollRequest(nodeCrypto, nodePki, { kind: 'lock', name: 'bench lock' }))) : undefined
      const before = l0.ledger.ledger.size
      const start = performance.now()
      const results = await Promise.all(Array.from({ length: AT_ONCE }, (_, i) => enrollOne(l0!, c, inviter, url, keys?.[i])))
      // A submission is acknowledged before the miner wrote it: the run ends when L0's ledger holds every event.
      const expected = before + 2 * AT_ONCE
      const deadline = performance.now() + STEP_MS
      while (l0.ledger.ledger.size < expected && performance.now() < deadline) await new Promise(r => setTimeout(r, 10))
      const seconds = (performance.now() - start) / 1000
      emit({
        bench: 'enroll.concurrent', devices: AT_ONCE, keygen: keysBeforehand ? 'beforehand' : 'during', seconds: Math.round(seconds * 100) / 100,
        enrollmentsPerSec: Math.round((AT_ONCE / seconds) * 10) / 10, medianTotalMs: median(results.map(r => r.totalMs)),
        maxTotalMs: Math.round(Math.max(...results.map(r => r.totalMs))), l0EventsAdded: l0.ledger.ledger.size - before,
      })
    }
  } finally {
    await client?.close()
    await l0?.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
