/** @module Challenge-response over the device inbox on loopback: one ask (ask, challenge, answer, signed verdict) through L0's broker. */
import { readFileSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { nodeSigning } from '../runtime/node/signing.ts'
import { nodeTransport } from '../runtime/node/transport.ts'
import { openAccessHome } from '../runtime/access-home.ts'
import { askOverInbox, serveInboxChallenges } from '../agent/gossip/challenge-session.ts'
import { connectDevice } from '../agent/gossip/login.ts'
import { DeviceCertificate } from '../agent/pki/certificate.ts'
import { LoopbackL0 } from '../sim/live/l0.ts'
import { enrollDirect, makeL0Home, withHomeLedger, type TestDevice } from '../test/broker/_fleet.ts'
import { writeDeviceHome } from '../test/gossip/_fleet.ts'

/** Asks timed after the warm-up. */
const ROUNDS = 200
const WARMUP = 10

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

/** Emits the round trip of `askOverInbox` (member → lock, 'unlock', allowed), p50/p99 over ROUNDS sequential asks. */
export async function run(emit: (row: object) => void): Promise<void> {
  const l0 = await makeL0Home({ domain: 'bench-inbox.home.arpa' })
  const devices: TestDevice[] = []
  await withHomeLedger(l0, async ledger => {
    const admin = await enrollDirect(l0, ledger, l0.self, { role: 'admin', name: 'admin' })
    devices.push(
      await enrollDirect(l0, ledger, admin, { role: 'member', name: 'phone' }),
      await enrollDirect(l0, ledger, admin, { role: 'device', kind: 'lock', name: 'lock' }),
    )
  })
  const { services, url } = await LoopbackL0.start({ home: l0.dir, log: () => undefined })
  const clients = []
  try {
    const ledgerBytes = readFileSync(join(l0.dir, 'ledger.cbor'))
    const [member, lock] = devices.map((d, i) => {
      const dir = join(dirname(l0.dir), `home-${i}`)
      writeDeviceHome(l0, d, dir, new Uint8Array(ledgerBytes), url)
      return { ...d, home: dir }
    }) as [TestDevice & { home: string }, TestDevice & { home: string }]
    const [memberHome, lockHome] = await Promise.all([
      openAccessHome(member.home, { audit: false, needKey: true }),
      openAccessHome(lock.home, { audit: false, needKey: true }),
    ])
    const login = (d: TestDevice) =>
      connectDevice(
        nodeTransport,
        { url, cn: d.cn, certPem: d.certPem, keyPem: d.keyPem, rootPem: l0.rootPem, l0Cn: l0.cn },
        { timeoutMs: 10_000 },
      )
    const [memberClient, lockClient] = await Promise.all([login(member), login(lock)])
    clients.push(memberClient, lockClient)
    const service = serveInboxChallenges({
      fleet: l0.domain,
      self: lock.cn,
      certificateDer: DeviceCertificate.from(lock.certPem).der,
      privateKeyPem: lock.keyPem,
      signing: nodeSigning,
      randomBytes: nodeCrypto.randomBytes,
      clock: { now: () => Math.floor(Date.now() / 1000) },
      decider: lockHome.session,
    })
    await service.attach(lockClient.session)
    const requester = {
      fleet: l0.domain,
      cn: member.cn,
      certificateDer: DeviceCertificate.from(member.certPem).der,
      privateKeyPem: member.keyPem,
      signing: nodeSigning,
      randomBytes: nodeCrypto.randomBytes,
      check: memberHome.session,
    }
    const times: number[] = []
    for (let i = 0; i < WARMUP + ROUNDS; i++) {
      const started = performance.now()
      const outcome = await askOverInbox(memberClient, requester, { verifierCn: lock.cn, action: 'unlock' })
      if (!outcome.verdict.allow) throw new Error(`the lock denied: ${outcome.verdict.code}`)
      if (i >= WARMUP) times.push(performance.now() - started)
    }
    service.close()
    times.sort((a, b) => a - b)
    emit({
      bench: 'inbox.challenge',
      path: 'loopback',
      what: 'askOverInbox: ask → challenge → RSA-signed answer → decision → RSA-signed verdict, checked (4 MQTT QoS 1 messages through L0)',
      rounds: ROUNDS,
      p50Ms: Number(quantile(times, 0.5).toFixed(2)),
      p99Ms: Number(quantile(times, 0.99).toFixed(2)),
    })
  } finally {
    for (const c of clients) await c.close().catch(() => undefined)
    await services.close()
    rmSync(dirname(l0.dir), { recursive: true, force: true })
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href)
  await run(row => process.stdout.write(JSON.stringify(row) + '\n'))
