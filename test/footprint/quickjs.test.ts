// dist/kin-core.js in QuickJS under 1 MiB of heap and 256 KiB of stack: a real ledger verified, real decisions taken
// (the same answers the full agent gives on V8), forged input refused. Proof bundles: quickjs-bundle.test.ts.
import t from 'tap'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import type { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { answerChallenge } from '../../agent/access/challenge.ts'
import { nodeSigning } from '../../runtime/node/signing.ts'
import { CoreVm, HEAP_PEAK_BUDGET, SMALL_DEVICE } from './_quickjs.ts'
import { comparable, footprintHouse, ledgerFile, type Comparable } from './_house.ts'

const DAY = 86400
const house = await footprintHouse()
const { pf, now, laptop, phone, lock, camera, stolen, guest } = house

// Verifying a ledger takes QuickJS about half a second per event (tweetnacl's Ed25519), so the house's ledger is
// verified once and its state kept in the engine.
const VERIFY = `globalThis.ledgers = globalThis.ledgers || {}; ledgers[input.name] = kinCore.verifyLedger(input.ledger); return ledgers[input.name].log.length`
const DECIDE = `
  const d = kinCore.decide({ certificate: input.certificate, action: input.action }, ledgers[input.ledger], input.now, { self: input.self, root: input.root, lastHeadTime: input.headTime })
  return { allow: d.allow, code: d.code, path: d.path, hops: d.hops ?? null, commonAncestor: d.commonAncestor ?? null, peer: d.peer ?? null, retry: d.retry, reason: d.reason }
`

const vm = await CoreVm.load(SMALL_DEVICE)
t.teardown(() => vm.dispose())

function decideInVm(
  certificate: Uint8Array,
  self: string,
  action: string,
  options: { at?: number; root?: Uint8Array } = {},
): Comparable & { reason: string } {
  return vm.value<Comparable & { reason: string }>(DECIDE, {
    ledger: 'house',
    certificate,
    action,
    now: options.at ?? now,
    self,
    root: options.root ?? pf.fleet.root.der,
    headTime: now,
  })
}

t.test('the engine is QuickJS under 1 MiB of heap, with ECMAScript globals only', async t => {
  t.equal(vm.memory().malloc_limit, 1024 * 1024, "QuickJS's own limit is set too")
  const globals = vm.globals()
  for (const name of [
    'require',
    'process',
    'Buffer',
    'TextEncoder',
    'TextDecoder',
    'console',
    'setTimeout',
    'crypto',
    'atob',
    'InternalError',
  ]) {
    t.notOk(globals.includes(name), `no global ${name}`)
  }
  t.ok(globals.includes('BigInt') && globals.includes('Uint8Array'), 'standard globals are there')
  t.ok(vm.value<string[]>('return Object.keys(kinCore)').includes('decide'), 'kin-core exports decide')
})

t.test('a real ledger verifies inside QuickJS: every event, every signature', async t => {
  t.equal(vm.value(VERIFY, { name: 'house', ledger: house.ledgerBytes }), pf.l0Ledger.state.log.length)
  const summary = vm.value<{ genesis: string; domain: string; lockParent: string | null }>(
    `
    const state = ledgers.house
    const lock = state.currentBinding(input.lock)
    return { genesis: state.genesis.cn, domain: state.domain, lockParent: lock ? lock.parentCn : null }
  `,
    { lock: lock.cn },
  )
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
    ["Eve's own CA, copied names", house.eveOwnCa, lock.cn, 'unlock'],
    ["fleet CA mis-issued for Eve's key", house.misIssued, lock.cn, 'unlock'],
    ['the laptop asks the camera', laptop.certificate, camera.cn, 'configure'],
  ]
  const codes = new Set<string>()
  for (const [name, certificate, self, action] of cases) {
    const { reason, ...decision } = decideInVm(certificate.der, self, action)
    t.same(decision, comparable(house.v8Decision(certificate, self, action)), `${name}: ${decision.code} (${reason})`)
    codes.add(decision.code)
  }
  t.ok(
    ['ALLOW', 'CERT_CHAIN', 'CERT_UNBOUND', 'ACCESS_REVOKED', 'POLICY_ACTION'].every(c => codes.has(c)),
    `allow and four kinds of deny were exercised: ${[...codes].join(', ')}`,
  )
})

t.test('time inside QuickJS: the guest is refused once its authorization has run out', async t => {
  const later = now + 3 * DAY
  const { reason, ...decision } = decideInVm(guest.certificate.der, lock.cn, 'unlock', { at: later })
  t.equal(decision.allow, false, reason)
  t.same(decision, comparable(house.v8Decision(guest.certificate, lock.cn, 'unlock', later)))
})

// Proof of possession without TLS (agent/access/challenge.ts): the lock issues a challenge inside QuickJS, the guest's
// phone signs it with its TLS key on V8, the lock checks the answer and decides, inside QuickJS again.
t.test(
  'challenge and answer inside QuickJS: possession proven, then the decision; replays and wrong keys refused',
  async t => {
    const ISSUE = `
    globalThis.pool = input.entropy; globalThis.drawn = 0
    globalThis.verifier = kinCore.challengeVerifier({ self: input.self, clock: { now: () => input.now },
      randomBytes: n => { const out = pool.slice(drawn, drawn + n); drawn += n; return out } })
    return Array.from(verifier.issue(input.action), b => (b < 16 ? '0' : '') + b.toString(16)).join('')
  `
    const ANSWER = `
    const d = kinCore.decideOnAnswer(verifier, input.answer, ledgers.house, input.now, { self: input.self, root: input.root })
    return { allow: d.allow, code: d.code, peer: d.peer ?? null, reason: d.reason }
  `
    const challenge = Buffer.from(
      vm.value<string>(ISSUE, { entropy: nodeCrypto.randomBytes(64), self: lock.cn, now, action: 'unlock' }),
      'hex',
    )
    const answerAs = (certificate: DeviceCertificate, privateKeyPem: string) =>
      answerChallenge(
        new Uint8Array(challenge),
        {
          certificateDer: certificate.der,
          privateKeyPem,
          verifierCn: lock.cn,
          action: 'unlock',
        },
        nodeSigning,
      )
    const wrongKey = answerAs(guest.certificate, house.eveKeys.privateKeyPem)
    const refused = vm.value<{ allow: boolean; code: string; reason: string }>(ANSWER, {
      answer: wrongKey,
      self: lock.cn,
      now,
      root: pf.fleet.root.der,
    })
    t.same(
      [refused.allow, refused.code],
      [false, 'CHALLENGE_SIGNATURE'],
      `the guest's certificate with Eve's key: ${refused.reason}`,
    )
    const answer = answerAs(guest.certificate, guest.secrets.tls.privateKeyPem)
    const allowed = vm.value<{ allow: boolean; code: string; peer: string; reason: string }>(ANSWER, {
      answer,
      self: lock.cn,
      now,
      root: pf.fleet.root.der,
    })
    t.same([allowed.allow, allowed.code, allowed.peer], [true, 'ALLOW', guest.cn], allowed.reason)
    const replay = vm.value<{ allow: boolean; code: string }>(ANSWER, {
      answer,
      self: lock.cn,
      now,
      root: pf.fleet.root.der,
    })
    t.same([replay.allow, replay.code], [false, 'CHALLENGE_REPLAYED'])
  },
)

t.test('forged input is refused inside QuickJS', async t => {
  const log = pf.l0Ledger.state.log
  // One flipped bit in the signature of the laptop's authorize event, early in the file.
  const target = log.findIndex(e => e.event.type === 'authorize')
  const forged = log.map((e, i) => {
    if (i !== target) return e
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

  // Eve's root in place of the fleet's: genesis pins the root by hash.
  const wrongRoot = decideInVm(house.eveOwnCa.der, lock.cn, 'unlock', { root: house.eveRoot.der })
  t.equal(wrongRoot.allow, false)
  t.equal(wrongRoot.code, 'CERT_CHAIN', wrongRoot.reason)

  // Bytes that are no certificate at all.
  const garbage = decideInVm(nodeCrypto.randomBytes(700), lock.cn, 'unlock')
  t.equal(garbage.allow, false)
  t.equal(garbage.code, 'CERT_PARSE', garbage.reason)
})

// The heap's high-water mark, measured outside the engine (_quickjs.ts explains why QuickJS's own limit is no byte
// count in its wasm build): loading kin-core and everything above, within HEAP_PEAK_BUDGET (_quickjs.ts says why it is
// the design's 1 MiB).
t.test('the engine stayed inside its limits', async t => {
  const m = vm.memory()
  t.ok(
    m.heapPeak > 0 && m.heapPeak <= HEAP_PEAK_BUDGET,
    `heap peak ${m.heapPeak} bytes of ${HEAP_PEAK_BUDGET} (live now: ${m.memory_used_size})`,
  )
  t.equal(vm.value('return 1 + 1'), 2, 'the runtime is still healthy after all of the above')
})
