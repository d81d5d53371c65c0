// The delegated tier on the stand-in Espruino (_espruino-fake.ts): ledger.js takes L0's MACed heads with inclusion
// proofs (built by broker/delegated.ts), refuses each bad message with its own code, keeps what it proved across a
// reboot, and verdict.js refuses an ALLOW that a revocation it holds contradicts. espruino-real.test.ts runs the
// same cases on a real interpreter.
import t from 'tap'
import { createHmac } from 'node:crypto'
import { toHex } from '../../agent/codec/bytes.ts'
import { labelOfCn } from '../../agent/ledger/names.ts'
import { decodeDelegatedHead, MAX_DELEGATED_BYTES } from '../../broker/delegated-wire.ts'
import { fakeEspruino, loadShim, rebootEspruino, type FakeEspruino } from './_espruino-fake.ts'
import { delegatedCases } from './_delegated.ts'

interface ShimCrypto {
  hmacSha256(key: Uint8Array, message: Uint8Array | string): Uint8Array
}
interface LedgerView {
  head: { size: number; root: string; time: number } | undefined
  parents: Record<string, string>
  revoked: Record<string, number>
  receive(payload: Uint8Array): Promise<{ treeSize: number; added: number }>
  revocationOf(cn: string): string | undefined
  request(): string
}
interface LedgerShim {
  openDelegatedLedger(o: object): Promise<LedgerView>
  delegatedKeys(c: ShimCrypto, secret: Uint8Array): { verdictKey: Uint8Array; ledgerKey: Uint8Array }
  delegatedTopics(fleet: string, cn: string): { head: string; req: string }
}
interface Verdicts {
  request(action: string, hint?: string): { nonce: string }
  accept(line: string): { allow: boolean; peer: string }
}

const c = delegatedCases()
const fleet = 'smith.home.arpa'

function cryptoOf(env: FakeEspruino): ShimCrypto & object {
  return loadShim<{ espruinoCrypto(): ShimCrypto }>('crypto.js', env).espruinoCrypto()
}
function open(env: FakeEspruino): Promise<LedgerView> {
  const storage = loadShim<{ espruinoStorage(): unknown }>('storage.js', env).espruinoStorage()
  const crypto = cryptoOf(env)
  const shim = loadShim<LedgerShim>('ledger.js', env)
  return shim.openDelegatedLedger({
    self: c.lock,
    key: shim.delegatedKeys(crypto, c.secret).ledgerKey,
    crypto,
    storage,
  })
}
async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p)
    return 'ok'
  } catch (e) {
    return (e as { code?: string }).code ?? `UNCODED: ${String(e)}`
  }
}
const keyOf = (cn: string): string => Buffer.from(labelOfCn(cn, fleet)).toString('base64')

t.test(
  'keys: the device derives from its flashing secret the verdict and ledger keys L0 and the verifier hold',
  async t => {
    const env = fakeEspruino()
    const keys = loadShim<LedgerShim>('ledger.js', env).delegatedKeys(cryptoOf(env), c.secret)
    t.equal(toHex(keys.verdictKey), toHex(c.verdictKey))
    t.equal(toHex(keys.ledgerKey), toHex(c.ledgerKey))
    t.not(
      toHex(c.verdictKey),
      toHex(c.ledgerKey),
      'two distinct keys: the verifier cannot MAC heads, L0 cannot MAC verdicts',
    )
    t.same(
      loadShim<LedgerShim>('ledger.js', env).delegatedTopics(fleet, c.lock),
      {
        head: `kin/smith_home_arpa/ledger/delegated/${c.lock.slice(0, 16)}/head`,
        req: `kin/smith_home_arpa/ledger/delegated/${c.lock.slice(0, 16)}/req`,
      },
      'its topics are the ones L0 uses (agent/gossip/topics.ts)',
    )
  },
)

t.test('a good head with proofs is accepted and stored, and survives a reboot', async t => {
  const env = fakeEspruino()
  const ledger = await open(env)
  t.equal(ledger.request(), 'kin-ledger-req-1 0', 'at first boot the device holds no head')
  t.ok(
    c.first.length >= 1 && c.first.every(m => m.length <= MAX_DELEGATED_BYTES),
    `L0 sends ${c.first.length} messages of ${c.first.map(m => m.length).join(', ')} bytes`,
  )
  let added = 0
  for (const m of c.first) {
    t.equal(
      decodeDelegatedHead(c.ledgerKey, m).treeSize,
      c.sizes.first,
      'the Node decoder reads what the encoder wrote',
    )
    const r = await ledger.receive(m)
    t.equal(r.treeSize, c.sizes.first)
    added += r.added
  }
  t.equal(added, 4, 'three authorize events (lock, phone, laptop) and the policy on the phone')
  t.equal(ledger.head?.size, c.sizes.first)
  t.same(
    ledger.parents,
    { [keyOf(c.lock)]: keyOf(c.phone), [keyOf(c.phone)]: keyOf(c.laptop), [keyOf(c.laptop)]: keyOf(c.f.l0) },
    'its lineage up to L0',
  )
  t.same((await ledger.receive(c.first[0]!)).added, 0, 'the same message again: accepted, nothing new')
  t.equal(ledger.revocationOf(c.phone), undefined)

  const again = await open(rebootEspruino(env))
  t.same(
    { head: again.head, parents: again.parents },
    { head: ledger.head, parents: ledger.parents },
    'reopened from Storage: the same head and lineage',
  )
  t.equal(again.request(), `kin-ledger-req-1 ${c.sizes.first}`)

  const storage = loadShim<{
    espruinoStorage(): { openAppendFile(n: string): Promise<{ append(b: Uint8Array): Promise<void> }> }
  }>('storage.js', env).espruinoStorage()
  await (await storage.openAppendFile('kin-ledger')).append(new TextEncoder().encode('x not a record\n'))
  t.equal(
    await codeOf(open(rebootEspruino(env))),
    'STORAGE_DAMAGED',
    'a record that is not one is damage, never skipped',
  )
})

t.test(
  'messages that arrive together are checked one after the other: the second may need the lineage the first brings',
  async t => {
    const ledger = await open(fakeEspruino())
    t.ok(c.deep.length >= 2, `${c.deep.length} messages for a 10,000-event ledger`)
    const results = await Promise.all(
      c.deep.map(m =>
        ledger.receive(m).then(
          r => r.added,
          (e: { code?: string }) => e.code,
        ),
      ),
    )
    t.same(
      results.every(r => typeof r === 'number'),
      true,
      `all taken: ${JSON.stringify(results)}`,
    )
    t.equal(Object.keys(ledger.parents).length, 3, 'the lineage up to L0')
  },
)

t.test('each bad message is refused with its own code, and nothing of it is kept', async t => {
  const env = fakeEspruino()
  const ledger = await open(env)
  for (const m of c.first) await ledger.receive(m)
  const held = JSON.stringify({ head: ledger.head, parents: ledger.parents, revoked: ledger.revoked })
  const files = JSON.stringify([...env.storage.files])
  const codes = new Set<string>()
  for (const r of c.refusals) {
    t.equal(await codeOf(ledger.receive(r.message)), r.code, r.name)
    codes.add(r.code)
  }
  t.equal(codes.size, c.refusals.length, 'every case has a code of its own')
  t.equal(
    JSON.stringify({ head: ledger.head, parents: ledger.parents, revoked: ledger.revoked }),
    held,
    'what the device holds is unchanged',
  )
  t.equal(JSON.stringify([...env.storage.files]), files, 'and so is its Storage')
})

t.test(
  'a revocation that reaches the device refuses an ALLOW for the peer or a descendant of the revoked, before and after a reboot',
  async t => {
    const env = fakeEspruino()
    env.clockMs = 1_800_000_000_000
    const ledger = await open(env)
    for (const m of c.first) await ledger.receive(m)
    const crypto = cryptoOf(env)
    const clock = loadShim<{ espruinoClock(): unknown }>('clock.js', env).espruinoClock()
    const { DelegatedVerdicts } = loadShim<{ DelegatedVerdicts: new (o: object) => Verdicts }>('verdict.js', env)
    const verdictsOn = (view: LedgerView, verifier?: string): Verdicts =>
      new DelegatedVerdicts({ self: c.lock, key: c.verdictKey, crypto, clock, ledger: view, verifier })
    const allow = (v: Verdicts, peer: string): Promise<string> =>
      codeOf(() => {
        const body = [
          'kin-verdict-1',
          c.lock,
          v.request('unlock', 'x').nonce,
          peer,
          'unlock',
          '1',
          'ALLOW',
          '1800000000',
        ].join('|')
        return v.accept(`${body}|${createHmac('sha256', c.verdictKey).update(body, 'latin1').digest('hex')}`)
      })
    const deny = (v: Verdicts, peer: string): Promise<string> =>
      codeOf(() => {
        const body = [
          'kin-verdict-1',
          c.lock,
          v.request('unlock', 'x').nonce,
          peer,
          'unlock',
          '0',
          'POLICY_ROLE',
          '1800000000',
        ].join('|')
        return v.accept(`${body}|${createHmac('sha256', c.verdictKey).update(body, 'latin1').digest('hex')}`)
      })

    const v = verdictsOn(ledger, c.phone)
    t.equal(await allow(v, c.phone), 'ok', 'before any revocation the phone is let in')
    for (const m of c.phoneRevoked) await ledger.receive(m)
    t.equal(ledger.head?.size, c.sizes.phoneRevoked, 'the newer head is taken')
    t.equal(await allow(v, c.phone), 'VERDICT_REVOKED', 'an ALLOW for the revoked phone is refused')
    t.equal(
      await allow(verdictsOn(ledger), c.guest),
      'ok',
      'a stranger the device knows nothing against is let in (no verifier named)',
    )
    t.equal(await allow(v, c.guest), 'VERDICT_REVOKED', 'but not on a verdict from the revoked phone as verifier')
    t.equal(await deny(v, c.phone), 'ok', 'a DENY never contradicts a revocation')
    t.match(ledger.revocationOf(c.phone), /is revoked/)
    t.equal(ledger.revocationOf(c.lock), undefined, 'the phone was revoked without its subtree: the lock still stands')

    t.equal(
      await codeOf(ledger.receive(c.laptopRevoked[0]!)),
      'DELEGATED_HEAD_FORK',
      'a head of the other house, as large as this one, is a fork',
    )

    const other = fakeEspruino()
    const inOther = await open(other)
    for (const m of [...c.first, ...c.laptopRevoked]) await inOther.receive(m)
    t.equal(
      inOther.revocationOf(c.phone)?.includes('ancestor'),
      true,
      'in the other house the phone itself is not revoked, its ancestor is, with the subtree',
    )
    t.equal(
      await allow(new DelegatedVerdicts({ self: c.lock, key: c.verdictKey, crypto, clock, ledger: inOther }), c.phone),
      'VERDICT_REVOKED',
      'so an ALLOW for the phone is refused',
    )
    t.equal(
      await allow(new DelegatedVerdicts({ self: c.lock, key: c.verdictKey, crypto, clock, ledger: inOther }), c.laptop),
      'VERDICT_REVOKED',
      'and one for the laptop',
    )
    t.match(
      inOther.revocationOf(c.lock),
      /ancestor .* revoked with its subtree/,
      'the subtree revocation covers the lock itself',
    )

    const rebooted = rebootEspruino(env)
    rebooted.clockMs = env.clockMs
    const after = await open(rebooted)
    t.same(after.revoked, ledger.revoked, 'after a reboot the revocations are still held')
    const { DelegatedVerdicts: Again } = loadShim<{ DelegatedVerdicts: new (o: object) => Verdicts }>(
      'verdict.js',
      rebooted,
    )
    const v2 = new Again({
      self: c.lock,
      key: c.verdictKey,
      crypto: cryptoOf(rebooted),
      clock: loadShim<{ espruinoClock(): unknown }>('clock.js', rebooted).espruinoClock(),
      ledger: after,
    })
    const body = [
      'kin-verdict-1',
      c.lock,
      v2.request('unlock', 'x').nonce,
      c.phone,
      'unlock',
      '1',
      'ALLOW',
      '1800000000',
    ].join('|')
    t.equal(
      await codeOf(() =>
        v2.accept(`${body}|${createHmac('sha256', c.verdictKey).update(body, 'latin1').digest('hex')}`),
      ),
      'VERDICT_REVOKED',
      'and an ALLOW for the phone is still refused',
    )
    t.equal(
      await codeOf(after.receive(c.first[0]!)),
      'DELEGATED_HEAD_OLD',
      'the head before the revocations cannot come back',
    )
  },
)

t.test('Storage stays small: records are compacted once they pass 1 KiB', async t => {
  const env = fakeEspruino()
  const ledger = await open(env)
  for (const m of [...c.first, ...c.phoneRevoked]) await ledger.receive(m)
  let most = 0
  for (const messages of c.later) {
    for (const m of messages)
      t.equal((await ledger.receive(m)).added, 0, 'a later head brings nothing new about the lock')
    most = Math.max(
      most,
      [...env.storage.files.values()].reduce((n, v) => n + v.length, 0),
    )
  }
  t.equal(ledger.head?.size, c.sizes.phoneRevoked + 2 * c.later.length, 'the latest head is held')
  t.ok(most < 2048, `at most ${most} characters of flash over fourteen heads`)
  t.ok(
    [...env.storage.files.values()].some(v => /#gen [1-9]/.test(v)),
    'the file was rewritten (compacted) on the way',
  )
  const after = await open(rebootEspruino(env))
  t.same(
    { head: after.head, parents: after.parents, revoked: after.revoked },
    { head: ledger.head, parents: ledger.parents, revoked: ledger.revoked },
    'and a reboot reads the compacted file back',
  )
})
