/** @module No signature checked twice in one enrollment: every party's verifications counted through injected counting verifiers. */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { toHex } from '../../agent/codec/bytes.ts'
import { enrollThroughBroker, handOverFirstEvents } from '../../agent/gossip/enroll-session.ts'
import { completeInvite, openInvite, type Inviter } from '../../agent/gossip/invite-session.ts'
import { connectDevice } from '../../agent/gossip/login.ts'
import { replayRecords } from '../../agent/ledger/persistent.ts'
import { scanRecords } from '../../agent/ledger/store.ts'
import type { CryptoProvider } from '../../agent/ports/platform.ts'
import type { PkiProvider } from '../../agent/ports/pki.ts'
import { Home } from '../../runtime/home.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { nodeVerifier } from '../../runtime/node/verifier.ts'
import { eventually, startFleet } from './_harness.ts'

const now = () => Math.floor(Date.now() / 1000)
const STEP_MS = 30_000

/** Every signature one party verified, by kind and signature bytes, with how often. */
class Tally {
  readonly counts = new Map<string, number>()
  on = false

  note(kind: string, signature: Uint8Array): void {
    if (!this.on) return
    const key = `${kind}:${toHex(signature)}`
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1)
  }

  /** How often `signature` (Ed25519, on either thread) was verified. */
  ed25519(signature: Uint8Array): number {
    return this.counts.get(`ed25519:${toHex(signature)}`) ?? 0
  }

  /** The signatures verified more than once. */
  repeated(): string[] {
    return [...this.counts].filter(([, n]) => n > 1).map(([k, n]) => `${k.slice(0, 40)}… ×${n}`)
  }
}

// The node providers' own functions, taken before L0's are wrapped: the parent's and the device's counters call
// these, so a check counts for the party that made it and for no other.
const ed25519Verify = nodeCrypto.ed25519Verify.bind(nodeCrypto)
const ed25519VerifyAsync = nodeCrypto.ed25519VerifyAsync!.bind(nodeCrypto)
const verifySignature = nodeVerifier.verifySignature.bind(nodeVerifier)
const pkiVerifySignature = nodePki.verifySignature.bind(nodePki)

/** A node crypto and PKI provider of one party (a device process), counting into `tally`. */
function countingProviders(tally: Tally): { crypto: CryptoProvider; pki: PkiProvider } {
  const crypto: CryptoProvider = {
    ...nodeCrypto,
    ed25519Verify: (s, m, k) => (tally.note('ed25519', s), ed25519Verify(s, m, k)),
    ed25519VerifyAsync: (s, m, k) => (tally.note('ed25519', s), ed25519VerifyAsync(s, m, k)),
  }
  const pki: PkiProvider = {
    ...nodePki,
    verifySignature: (a, k, m, s) => (tally.note('x509', s), pkiVerifySignature(a, k, m, s)),
  }
  return { crypto, pki }
}

// DESIGN.md, issue 15 "No signature checked twice": within one party, a signature verified once is a fact; verifying
// it again costs an enrollment time and says nothing new. L0 runs in this process on the node providers, so its
// checks are counted by wrapping those (and restored after); the parent and the device get their own providers.
t.test(
  'one enrollment through the real L0: no party verifies a signature twice, and each verifies what it must',
  async t => {
    const fleet = await startFleet(t, 'verified-once')
    const l0 = new Tally(),
      parent = new Tally(),
      device = new Tally()
    const l0Crypto = nodeCrypto as { -readonly [K in keyof CryptoProvider]: CryptoProvider[K] }
    const l0Verifier = nodeVerifier as { verifySignature: typeof nodeVerifier.verifySignature }
    const l0Pki = nodePki as { verifySignature: typeof nodePki.verifySignature }
    l0Crypto.ed25519Verify = (s, m, k) => (l0.note('ed25519', s), ed25519Verify(s, m, k))
    l0Crypto.ed25519VerifyAsync = (s, m, k) => (l0.note('ed25519', s), ed25519VerifyAsync(s, m, k))
    l0Verifier.verifySignature = (a, k, m, s) => (l0.note('x509', s), verifySignature(a, k, m, s))
    l0Pki.verifySignature = (a, k, m, s) => (l0.note('x509', s), pkiVerifySignature(a, k, m, s))
    t.teardown(() => {
      l0Crypto.ed25519Verify = ed25519Verify
      l0Crypto.ed25519VerifyAsync = ed25519VerifyAsync
      l0Verifier.verifySignature = verifySignature
      l0Pki.verifySignature = pkiVerifySignature
    })

    // The parent is L0's identity in a process of its own (as `kin invite --home ./l0` runs): its own ledger copy.
    const parentSide = countingProviders(parent)
    const home = new Home(fleet.home)
    const config = home.readConfig()
    const ledger = replayRecords(
      parentSide.crypto,
      scanRecords(new Uint8Array(readFileSync(home.path('ledger')))).records,
    )
    const inviter: Inviter = {
      cn: config.cn,
      fleet: config.fleet,
      l0Cn: ledger.state.genesis!.cn,
      ledgerSeed: home.readLedgerKey(),
      ledger,
      rootPem: home.readText('root'),
    }
    const client = await connectDevice(
      nodeTransport,
      {
        url: fleet.url,
        cn: config.cn,
        certPem: home.readText('cert'),
        keyPem: home.readText('tlsKey'),
        rootPem: inviter.rootPem,
        l0Cn: inviter.l0Cn,
      },
      { timeoutMs: STEP_MS },
    )
    t.teardown(() => client.close())
    const deviceSide = countingProviders(device)

    const before = fleet.services.ledger.ledger.size
    for (const tally of [l0, parent, device]) tally.on = true
    const opened = await openInvite(
      parentSide.crypto,
      client,
      inviter,
      { role: 'device', name: '', ttlSeconds: 600, guestValidSeconds: 86400 },
      { now: now(), timeoutMs: STEP_MS },
    )
    const parentDone = completeInvite(parentSide.crypto, parentSide.pki, client, inviter, opened, {
      keep: async () => undefined,
      now,
      stepTimeoutMs: STEP_MS,
    })
    const enrolled = await enrollThroughBroker(deviceSide.crypto, deviceSide.pki, nodeTransport, {
      code: opened.code,
      url: fleet.url,
      kind: 'lock',
      name: 'front door',
      stepTimeoutMs: STEP_MS,
      now,
    })
    await parentDone
    await handOverFirstEvents(nodeTransport, enrolled, fleet.url, STEP_MS)
    t.ok(
      await eventually(() => fleet.services.ledger.ledger.size >= before + 2, STEP_MS),
      "L0's ledger holds the authorize and certified events",
    )
    for (const tally of [l0, parent, device]) tally.on = false

    const state = fleet.services.ledger.ledger.state
    const binding = state.currentBinding(enrolled.cn)!
    t.ok(binding !== undefined, 'the device is bound in L0 ledger')
    const authorize = state.event(binding.id)!
    const certified = state.log.find(
      e => e.event.type === 'certified' && e.event.links[0] !== undefined && toHex(e.event.links[0]) === binding.id,
    )
    t.ok(certified !== undefined, 'the certified event is in L0 ledger')

    t.same(l0.repeated(), [], 'L0 verified no signature twice')
    t.same(parent.repeated(), [], 'the parent verified no signature twice')
    t.same(device.repeated(), [], 'the device verified no signature twice')
    // Each check the protocol needs was made (a counter that saw nothing would pass the lines above).
    t.equal(l0.ed25519(authorize.event.signature), 1, "L0 verified the parent's authorize signature once")
    t.equal(device.ed25519(authorize.event.signature), 1, "the device verified the parent's authorize signature once")
    t.equal(l0.ed25519(certified!.event.signature), 1, "L0 verified the device's certified signature once")
    const x509AtL0 = [...l0.counts.keys()].filter(k => k.startsWith('x509:')).length
    t.ok(x509AtL0 >= 2, `L0 verified the CSR and the device certificate at its login (${x509AtL0} X.509 signatures)`)
    const x509AtDevice = [...device.counts.keys()].filter(k => k.startsWith('x509:')).length
    t.ok(x509AtDevice >= 3, `the device verified the root, the broker's and its own certificate (${x509AtDevice})`)
  },
)
