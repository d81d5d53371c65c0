// dist/kin-core.js in QuickJS under 1 MiB of heap and 256 KiB of stack: a real ledger verified, real decisions taken
// (the same answers the full agent gives on V8), forged input refused.
import t from 'tap'
import { nodeCrypto } from '../../firmware-shims/node/crypto.ts'
import { nodePki } from '../../firmware-shims/node/pki.ts'
import { concatBytes } from '../../agent/codec/bytes.ts'
import { decide } from '../../agent/access/decide.ts'
import { fleetChainVerifier } from '../../agent/access/fleet-chain.ts'
import type { Decision } from '../../agent/access/types.ts'
import { createCsr } from '../../agent/pki/csr.ts'
import { issueDeviceCertificate } from '../../agent/pki/issue.ts'
import type { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { createFleetRoot } from '../../agent/pki/root.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import { PureFleet } from '../helpers/pure-fleet.ts'
import { CoreVm, SMALL_DEVICE } from './_quickjs.ts'

const DAY = 86400
const pf = await PureFleet.create()
const now = pf.now
const laptop = await pf.enroll(pf.l0, { role: 'admin', notAfter: now + 365 * DAY }, { kind: 'laptop', name: 'laptop' })
const phone = await pf.enroll(laptop.cn, { role: 'member', notAfter: now + 365 * DAY }, { kind: 'phone', name: 'owner phone' })
const tablet = await pf.enroll(laptop.cn, { role: 'member', notAfter: now + 365 * DAY }, { kind: 'tablet', name: 'tablet' })
const lock = await pf.enroll(phone.cn, { role: 'device', notAfter: now + 365 * DAY }, { kind: 'lock', name: 'front door' })
const camera = await pf.enroll(phone.cn, { role: 'device', notAfter: now + 365 * DAY }, { kind: 'camera', name: 'camera' })
const stolen = await pf.enroll(phone.cn, { role: 'device', notAfter: now + 365 * DAY }, { kind: 'camera', name: 'stolen camera' })
const guest = await pf.enroll(tablet.cn, { role: 'guest', notAfter: now + 2 * DAY }, { kind: 'phone', name: "guest's phone" })
pf.revoke(phone.cn, stolen.cn, { reason: 'lost', effective: now, subtree: false })
pf.syncAll()

// Eve: a root of her own that copies the fleet's name, and a fleet-CA certificate mis-issued for the guest's CN with her key.
const eveKeys = await nodePki.generateTlsKeyPair()
const eveRootKeys = await nodePki.generateTlsKeyPair()
const eveRoot = createFleetRoot({ domain: pf.fleet.domain, keyPair: eveRootKeys, now: now - 600, randomBytes: nodeCrypto.randomBytes })
const auth = { cn: guest.cn, parentCn: tablet.cn, spkiHash: nodeCrypto.sha256(eveKeys.spkiDer), notAfter: now + DAY }
const csrPem = createCsr({ cn: guest.cn, parentCn: tablet.cn, keyPair: eveKeys })
const ca = { now, randomBytes: nodeCrypto.randomBytes, csrPem, auth }
const eveOwnCa = issueDeviceCertificate({ ...ca, rootCertPem: eveRoot.pem, rootKeyPem: eveRootKeys.privateKeyPem })
const misIssued = issueDeviceCertificate({ ...ca, rootCertPem: pf.fleet.root.pem, rootKeyPem: pf.fleet.rootKey.privateKeyPem })

function ledgerFile(events: readonly EncodedEvent[]): Uint8Array {
  return concatBytes(...events.map(e => e.bytes))
}
const ledgerBytes = ledgerFile(pf.l0Ledger.state.log)

/** The full agent on V8: agent/access decide with agent/pki's chain check on node:crypto. */
function v8Decision(certificate: DeviceCertificate, selfCn: string, action: string, at = now): Decision {
  return decide({ certificate, action }, {
    self: selfCn, ledger: pf.device(selfCn).ledger.state, now: at, lastHeadTime: now, verifyChain: fleetChainVerifier(pf.fleet.root, nodePki),
  })
}

/** The parts of a decision both engines must agree on; absent values as null, as they cross the engine boundary. */
interface Comparable {
  allow: boolean
  code: string
  path: string[]
  hops: number | null
  commonAncestor: string | null
  peer: string | null
  retry: boolean
}
function comparable(d: Decision): Comparable {
  return { allow: d.allow, code: d.code, path: d.path, hops: d.hops ?? null, commonAncestor: d.commonAncestor ?? null, peer: d.peer ?? null, retry: d.retry }
}

// Verifying a ledger takes QuickJS about half a second per event, so each ledger is verified once and kept.
const VERIFY = `globalThis.ledgers = globalThis.ledgers || {}; ledgers[input.name] = kinCore.verifyLedger(input.ledger); return ledgers[input.name].log.length`
const DECIDE = `
  const d = kinCore.decide({ certificate: input.certificate, action: input.action }, ledgers[input.ledger], input.now, { self: input.self, root: input.root, lastHeadTime: input.headTime })
  return { allow: d.allow, code: d.code, path: d.path, hops: d.hops ?? null, commonAncestor: d.commonAncestor ?? null, peer: d.peer ?? null, retry: d.retry, reason: d.reason }
`

const vm = await CoreVm.load(SMALL_DEVICE)
t.teardown(() => vm.dispose())

t.test('the engine is QuickJS under 1 MiB of heap, with ECMAScript globals only', async t => {
  t.equal(vm.memory().malloc_limit, 1024 * 1024)
  const globals = vm.globals()
  for (const name of ['require', 'process', 'Buffer', 'TextEncoder', 'TextDecoder', 'console', 'setTimeout', 'crypto', 'atob', 'InternalError']) {
    t.notOk(globals.includes(name), `no global ${name}`)
  }
  t.ok(globals.includes('BigInt') && globals.includes('Uint8Array'), 'standard globals are there')
  t.same(vm.value('return Object.keys(kinCore).sort()').includes('decide'), true, 'kin-core exports decide')
})

t.test('a real ledger verifies inside QuickJS: every event, every signature', async t => {
  t.equal(vm.value(VERIFY, { name: 'house', ledger: ledgerBytes }), pf.l0Ledger.state.log.length)
  const summary = vm.value<{ events: number; genesis: string; domain: string; lockParent: string | null }>(`
    const state = ledgers.house
    const lock = state.currentBinding(input.lock)
    return { events: state.log.length, genesis: state.genesis.cn, domain: state.domain, lockParent: lock ? lock.parentCn : null }
  `, { lock: lock.cn })
  t.equal(summary.events, pf.l0Ledger.state.log.length)
  t.equal(summary.genesis, pf.l0)
  t.equal(summary.domain, pf.fleet.domain)
  t.equal(summary.lockParent, phone.cn)
})

t.test('decisions inside QuickJS match the full agent on V8, allow and deny alike', async t => {
  const cases: [string, DeviceCertificate, string, string][] = [
    ["guest's phone unlocks the lock", guest.certificate, lock.cn, 'unlock'],
    ["owner's phone configures the lock", phone.certificate, lock.cn, 'configure'],
    ['camera may not configure the lock', camera.certificate, lock.cn, 'configure'],
    ['camera may view the lock', camera.certificate, lock.cn, 'view'],
    ['guest may not configure the lock', guest.certificate, lock.cn, 'configure'],
    ['the lost camera is revoked', stolen.certificate, lock.cn, 'view'],
    ["Eve's own CA, copied names", eveOwnCa, lock.cn, 'unlock'],
    ['fleet CA mis-issued for Eve\'s key', misIssued, lock.cn, 'unlock'],
    ['the laptop asks the camera', laptop.certificate, camera.cn, 'configure'],
  ]
  const codes = new Set<string>()
  for (const [name, certificate, self, action] of cases) {
    const expected = comparable(v8Decision(certificate, self, action))
    const got = vm.value<Comparable & { reason: string }>(DECIDE, {
      ledger: 'house', certificate: certificate.der, action, now, self, root: pf.fleet.root.der, headTime: now,
    })
    const { reason, ...decision } = got
    t.same(decision, expected, `${name}: ${got.code} (${reason})`)
    codes.add(got.code)
  }
  t.ok(codes.has('ALLOW') && codes.has('CERT_CHAIN') && codes.has('CERT_UNBOUND') && codes.has('ACCESS_REVOKED') && codes.has('POLICY_ACTION'),
    `allow and four kinds of deny were exercised: ${[...codes].join(', ')}`)
})

t.test('time inside QuickJS: the guest is refused once its authorization has run out', async t => {
  const later = now + 3 * DAY
  const expected = comparable(v8Decision(guest.certificate, lock.cn, 'unlock', later))
  const got = vm.value<Comparable & { reason: string }>(DECIDE, {
    ledger: 'house', certificate: guest.certificate.der, action: 'unlock', now: later, self: lock.cn, root: pf.fleet.root.der, headTime: now,
  })
  const { reason, ...decision } = got
  t.equal(decision.allow, false, reason)
  t.same(decision, expected)
})

t.test('forged input is refused inside QuickJS', async t => {
  const log = pf.l0Ledger.state.log
  // One flipped bit in the signature of the guest's authorize event.
  const guestAuthorize = log.findIndex(e => e.event.type === 'authorize' && pf.l0Ledger.state.cnOfLabel(e.event.subject) === guest.cn)
  const forged = log.map((e, i) => {
    if (i !== guestAuthorize) return e
    const bytes = e.bytes.slice()
    bytes[bytes.length - 5]! ^= 0x04
    return { ...e, bytes }
  })
  const refused = vm.run(`return kinCore.verifyLedger(input.ledger).log.length`, { ledger: ledgerFile(forged) })
  t.equal(refused.ok, false, 'the forged ledger does not verify')
  if (!refused.ok) {
    t.equal(refused.code, 'STORAGE_DAMAGED')
    t.equal(refused.causeCode, 'BAD_SIGNATURE', refused.message)
  }

  // A ledger that simply lacks the guest: the decision is a retryable missing proof, never an allow.
  const withoutGuest = log.filter(e => pf.l0Ledger.state.cnOfLabel(e.event.subject) !== guest.cn)
  t.equal(vm.value(VERIFY, { name: 'withoutGuest', ledger: ledgerFile(withoutGuest) }), withoutGuest.length)
  const missing = vm.value<Comparable & { reason: string }>(DECIDE, {
    ledger: 'withoutGuest', certificate: guest.certificate.der, action: 'unlock', now, self: lock.cn, root: pf.fleet.root.der, headTime: now,
  })
  t.equal(missing.allow, false)
  t.equal(missing.code, 'ACCESS_MISSING_PROOF')
  t.equal(missing.retry, true)

  // Eve's root in place of the fleet's: genesis pins the root by hash.
  const wrongRoot = vm.value<Comparable & { reason: string }>(DECIDE, {
    ledger: 'house', certificate: eveOwnCa.der, action: 'unlock', now, self: lock.cn, root: eveRoot.der, headTime: now,
  })
  t.equal(wrongRoot.allow, false)
  t.equal(wrongRoot.code, 'CERT_CHAIN', wrongRoot.reason)

  // Bytes that are no certificate at all.
  const garbage = vm.value<Comparable & { reason: string }>(DECIDE, {
    ledger: 'house', certificate: nodeCrypto.randomBytes(700), action: 'unlock', now, self: lock.cn, root: pf.fleet.root.der, headTime: now,
  })
  t.equal(garbage.allow, false)
  t.equal(garbage.code, 'CERT_PARSE')
})

t.test('the engine stayed inside its limits', async t => {
  const m = vm.memory()
  t.ok(m.memory_used_size <= SMALL_DEVICE.memory, `${m.memory_used_size} bytes in use of ${SMALL_DEVICE.memory}`)
  t.equal(vm.value('return 1 + 1'), 2, 'the runtime is still healthy after all of the above')
})
