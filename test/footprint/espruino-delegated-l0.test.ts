// L0's side of the delegated tier, without a broker: the registry file, which events a device is sent and in what
// order, how they are packed within the size limit, which heads trigger a send, and the boot request's limits
// (a clock injected, no waiting).
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { toHex } from '../../agent/codec/bytes.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { MerkleTree } from '../../agent/ledger/merkle.ts'
import type { RoleName } from '../../agent/ledger/types.ts'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { isKinError } from '../../agent/errors.ts'
import { decodeDelegatedHead, MAX_DELEGATED_BYTES } from '../../broker/delegated-wire.ts'
import {
  DELEGATED_FILE,
  DELEGATED_REQUEST_INTERVAL_MS,
  DelegatedRegistry,
  DelegatedService,
  delegatedEntries,
  delegatedMessages,
  type DelegatedSource,
} from '../../broker/delegated.ts'
import { houseFleet, T0 } from '../helpers/ledger-fleet.ts'
import { sourceOf } from './_delegated.ts'

const home = mkdtempSync(join(tmpdir(), 'kin-delegated-'))
t.teardown(() => rmSync(home, { recursive: true, force: true }))
const key = new Uint8Array(32).fill(9)

t.test('the registry: written durably, read back, refused when damaged', async t => {
  const dir = mkdtempSync(join(home, 'reg-'))
  const registry = new DelegatedRegistry(dir)
  t.equal(registry.devices().size, 0, 'no file: no delegated device')
  registry.register('aaaaaaaaaaaaaaaa.smith.home.arpa', key)
  t.same(
    [...new DelegatedRegistry(dir).devices().keys()],
    ['aaaaaaaaaaaaaaaa.smith.home.arpa'],
    'another reader sees it',
  )
  t.throws(() => registry.register('x', new Uint8Array(31)), RangeError)
  writeFileSync(join(dir, DELEGATED_FILE), '{"version":1,"devices":{"a":"00"}}')
  let code: string | undefined
  try {
    new DelegatedRegistry(dir).devices()
  } catch (e) {
    code = isKinError(e) ? e.code : String(e)
  }
  t.equal(code, 'STORAGE_DAMAGED', 'a key that is not 32 bytes of hex')
})

t.test(
  'what a device is sent: its authorize events climbing its lineage, then revokes and policies in log order',
  async t => {
    const { f, laptop, phone, lock } = houseFleet('delegated-l0')
    const camera = f.enroll(phone, { role: 'device', kind: 'camera', name: 'camera', time: T0 + 400 })
    f.policy(laptop, phone, {}, T0 + 500)
    f.revoke(phone, camera, { time: T0 + 600 })
    f.revoke(laptop, phone, { time: T0 + 700 })
    const source = sourceOf(f)
    const entries = delegatedEntries(source, lock)
    const described = entries.map(e => {
      const event = source.state.log[e.leafIndex]!.event
      return `${event.type} ${source.state.cnOfLabel(event.subject) === lock ? 'lock' : source.state.cnOfLabel(event.subject) === phone ? 'phone' : 'laptop'}`
    })
    t.same(
      described,
      ['authorize lock', 'authorize phone', 'authorize laptop', 'policy phone', 'revoke phone'],
      'no certified events, nothing about the camera',
    )
    const indexed: DelegatedSource = {
      ...source,
      eventsAbout: label => source.state.log.filter(e => toHex(e.event.subject) === toHex(label)),
    }
    t.same(delegatedEntries(indexed, lock), entries, "the same through the miner's index of events by subject")
    const { messages, skipped } = delegatedMessages(source, lock, key)
    t.same(skipped, [])
    const decoded = messages.map(m => decodeDelegatedHead(key, m))
    t.same(
      decoded.flatMap(d => d.entries.map(e => e.leafIndex)),
      entries.map(e => e.leafIndex),
      'the messages carry them in that order',
    )
    t.ok(messages.every(m => m.length <= MAX_DELEGATED_BYTES))

    // A policy too long for any message is left out and named; the rest still go.
    // (32 rules of 32-byte actions, proven in a ledger 10,000 events larger: 14-hash paths.)
    const rules = Array.from({ length: 32 }, (_, i) => ({
      action: `action-${i}-`.padEnd(32, 'x'),
      roles: ['admin', 'member', 'device', 'guest'] as RoleName[],
      from: 72_000,
      to: 86_400,
    }))
    const long = f.policy(laptop, phone, { rules }, T0 + 800)
    const ids = [
      ...f.ledger.state.log.map(e => e.id),
      ...Array.from({ length: 10_000 }, (_, i) => nodeCrypto.sha256(Uint8Array.of(i >> 8, i & 255, 7))),
    ]
    const tree = MerkleTree.fromIds(nodeCrypto, ids)
    const after: DelegatedSource = {
      ...sourceOf(f),
      tree,
      head: { treeSize: tree.size, root: tree.root(), time: T0 + 900 } as DelegatedSource['head'],
    }
    const packed = delegatedMessages(after, lock, key)
    t.same(
      packed.skipped,
      [after.state.log.findIndex(e => e.idHex === long.idHex)],
      `the ${long.bytes.length}-byte policy does not fit`,
    )
    t.equal(packed.messages.flatMap(m => decodeDelegatedHead(key, m).entries).length, entries.length, 'the others do')
  },
)

t.test('the service: a head sends only to devices it concerns; boot requests are bounded in size and rate', async t => {
  const { f, laptop, phone, lock } = houseFleet('delegated-l0-service')
  const topics = fleetTopics('smith.home.arpa')
  const dir = mkdtempSync(join(home, 'svc-'))
  const registry = new DelegatedRegistry(dir)
  registry.register(lock, key)
  let source: DelegatedSource = sourceOf(f)
  const sent: string[] = []
  const logs: Record<string, unknown>[] = []
  let nowMs = 0
  const service = new DelegatedService(
    {
      registry,
      topics,
      source: () => source,
      publish: async topic => {
        sent.push(topic)
      },
      clockMs: () => nowMs,
      log: (_level, event, fields) => {
        logs.push({ event, ...fields })
      },
    },
    source.head.treeSize,
  )

  f.enroll(laptop, { role: 'device', kind: 'sensor', name: 'sensor', time: T0 + 400 })
  source = sourceOf(f)
  await service.headSealed()
  t.same(sent, [], 'a head whose new events are about another branch sends nothing')
  f.revoke(laptop, phone, { time: T0 + 500 })
  source = sourceOf(f)
  await service.headSealed()
  t.same(sent, [topics.delegatedHead(lock)], "the head covering the phone's revocation goes to the lock")
  await service.headSealed()
  t.equal(sent.length, 1, 'the same head again sends nothing more')

  await service.request(lock, new Uint8Array(65))
  t.match(logs.at(-1), { event: 'delegated.refused', code: 'DECODE_OVERSIZE' }, 'a request over 64 bytes')
  await service.request(lock, new TextEncoder().encode('kin-ledger-req-1 0'))
  t.equal(sent.length, 2, 'a boot request is answered')
  nowMs += DELEGATED_REQUEST_INTERVAL_MS - 1
  await service.request(lock, new TextEncoder().encode('kin-ledger-req-1 0'))
  t.match(logs.at(-1), { event: 'delegated.refused', code: 'QUOTA_RATE' }, 'another within the interval is not')
  nowMs += 1
  await service.request(lock, new TextEncoder().encode('kin-ledger-req-1 0'))
  t.equal(sent.length, 3, 'once the interval has passed it is')
  await service.request(phone, new TextEncoder().encode('kin-ledger-req-1 0'))
  t.match(logs.at(-1), { event: 'delegated.refused', code: 'DELEGATED_NOT_REGISTERED', cn: phone })
  t.ok(
    logs.some(l => l.event === 'delegated.sent' && l.cn === lock && l.why === 'head'),
    'each send is logged',
  )
  t.equal(
    toHex(decodeDelegatedHead(key, delegatedMessages(source, lock, key).messages[0]!).root),
    toHex(source.head.root),
  )
})
