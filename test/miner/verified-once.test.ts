import t from 'tap'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import type { CryptoProvider } from '../../agent/ports/platform.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import { KinError } from '../../agent/errors.ts'
import { ledgerFromLineage } from '../../agent/gossip/enroll-session.ts'
import { openReplicaFiles } from '../../agent/gossip/replica-files.ts'
import type { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { readEvent } from '../../agent/ledger/event.ts'
import { encodeHead, headId, signHead } from '../../agent/ledger/head.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import { MerkleTree } from '../../agent/ledger/merkle.ts'
import { PersistentLedger } from '../../agent/ledger/persistent.ts'
import { VerifiedSignatureSet, verifiedIn } from '../../agent/ledger/precheck.ts'
import { SharedEvents } from '../../agent/ledger/shared-events.ts'
import { scanRecords } from '../../agent/ledger/store.ts'
import { buildSyncResponse, encodeSyncResponse, type SyncResponse } from '../../agent/ledger/sync.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import { T0, memoryStorage, minerKeyOf, minerSecret, openMiner, openReplica, wideFleet } from './helpers.ts'

const NOW = T0 + 5000

/** A node provider that counts the signatures it verifies on the caller's thread (the thread pool's are not counted). */
function counting(): { crypto: CryptoProvider; syncChecks: () => number } {
  let n = 0
  const crypto: CryptoProvider = {
    ...nodeCrypto,
    ed25519Verify: (s, m, k) => {
      n++
      return nodeCrypto.ed25519Verify(s, m, k)
    },
  }
  return { crypto, syncChecks: () => n }
}

/** The event with one signature byte flipped (bytes re-read, so its id changes too). */
function forged(e: EncodedEvent): EncodedEvent {
  const bytes = e.bytes.slice()
  bytes[bytes.length - 10]! ^= 0x01
  return readEvent(nodeCrypto, bytes)
}

/** The thrown KinError (with its detail) of a promise that must reject. */
async function thrown(p: Promise<unknown>): Promise<KinError> {
  try {
    await p
  } catch (err) {
    if (err instanceof KinError) return err
    throw err
  }
  throw new Error('resolved')
}

t.test('verifiedIn holds an event of a verified ledger only under the key validation used for it', async t => {
  const { f } = wideFleet(2)
  const ledger = new Ledger(nodeCrypto)
  for (const e of f.events) ledger.ingest(e)
  const held = verifiedIn(ledger.state)
  const genesis = f.events[0]!,
    last = f.events[f.events.length - 1]!
  const issuerKey = ledger.state.bindingById(toHex(last.event.links[0]!))!.ledgerKey
  t.ok(held.holds(genesis.idHex, ledger.state.genesis!.body.ledgerKey), 'genesis under its own key')
  t.ok(held.holds(last.idHex, issuerKey), "an event under its issuer binding's key")
  t.notOk(held.holds(last.idHex, nodeCrypto.ed25519KeyPair().publicKey), 'not under another key')
  t.notOk(held.holds(forged(last).idHex, issuerKey), 'not another event (a swapped record has another id)')
})

t.test(
  'a ledger file reopened right after this process wrote it from verified events: nothing verified twice, a swapped record still refused',
  async t => {
    const { f } = wideFleet(3)
    const source = new Ledger(nodeCrypto)
    for (const e of f.events) source.ingest(e)
    const storage = memoryStorage()
    const { crypto, syncChecks } = counting()
    const writer = await PersistentLedger.open(crypto, await storage.openAppendFile('ledger.cbor'))
    await writer.appendMany(source.state.log, { verified: verifiedIn(source.state) })
    await writer.close()
    t.equal(syncChecks(), 0, 'written from the verified ledger: no signature checked again')

    const replica = await openReplicaFiles(crypto, storage, { verified: verifiedIn(source.state) })
    t.equal(replica.ledger.ledger.size, f.events.length)
    t.equal(syncChecks(), 0, 'reopened with the ledger it was written from: no signature checked again')
    await replica.close()

    const startup = await openReplicaFiles(crypto, storage)
    t.equal(syncChecks(), f.events.length, 'a file re-read at startup is verified again, every record')
    await startup.close()

    // The file swapped behind the process: one record's signature flipped. The set names the original id, not this one.
    const file = storage.files.get('ledger.cbor')!
    const records = scanRecords(file).records
    const victim = records[records.length - 1]!
    const swapped = file.slice()
    swapped[victim.offset + victim.bytes.length - 10]! ^= 0x01
    storage.files.set('ledger.cbor', swapped)
    const err = await thrown(openReplicaFiles(crypto, storage, { verified: verifiedIn(source.state) }))
    t.equal(err.code, 'STORAGE_DAMAGED', 'a swapped record is damage')
    t.equal((err.detail as { recordCode?: string }).recordCode, 'BAD_SIGNATURE', 'found by its signature')
    t.equal((err.detail as { offset?: number }).offset, victim.offset)
  },
)

t.test(
  "the replica's rewrite path: miner events checked on the thread pool once, and a bad signature under a miner-signed head still refused",
  async t => {
    const { f } = wideFleet(6)
    const key = minerKeyOf(f)
    const total = f.events.length
    const phone0 = f.events.slice(3, 7),
      phone1 = f.events.slice(7, 11)
    /** A device holding the first 3 events under a head, then phone 1's enrollment before phone 0's: its order differs from the miner's. */
    const device = async (crypto: CryptoProvider) => {
      const storage = memoryStorage()
      const replica = await openReplica(storage, crypto)
      const first = await openMiner(f, memoryStorage())
      await first.submit(
        f.events.slice(0, 3).map(e => e.bytes),
        NOW,
      )
      await first.seal(NOW)
      await replica.applySyncResponse(
        encodeSyncResponse(buildSyncResponse(first, { fromTreeSize: 0, fromHeadId: undefined })),
        key,
        NOW,
      )
      await replica.appendLocal([...phone1, ...phone0])
      return { storage, replica, first }
    }

    const honest = counting()
    const a = await device(honest.crypto)
    const miner = a.first
    await miner.submit(
      f.events.slice(3).map(e => e.bytes),
      NOW,
    )
    await miner.seal(NOW + 1)
    const checksBefore = honest.syncChecks()
    const out = await a.replica.applySyncResponse(
      encodeSyncResponse(buildSyncResponse(miner, a.replica.syncRequest(), 1000)),
      key,
      NOW,
    )
    t.equal(out.rewritten, true, "rewritten into the miner's order")
    t.equal(a.replica.coveredSize, total)
    t.equal(
      honest.syncChecks() - checksBefore,
      1,
      `only the new head's signature: the ${total - 11} events the device lacked were verified once, ahead, not again while rewriting`,
    )

    // The same catch-up with the last event's signature flipped, under a head the miner key really signed.
    const b = await device(nodeCrypto)
    const before = {
      ledger: toHex(b.storage.files.get('ledger.cbor')!),
      sync: toHex(b.storage.files.get('sync.cbor')!),
    }
    const events = [...f.events.slice(0, -1), forged(f.events[total - 1]!)]
    const tree = MerkleTree.fromIds(
      nodeCrypto,
      events.map(e => e.id),
    )
    const held = b.first.latestHead()!
    const head = signHead(
      nodeCrypto,
      {
        height: held.height + 1,
        prevHeadId: headId(nodeCrypto, held),
        time: NOW + 1,
        treeSize: total,
        root: tree.root(),
      },
      minerSecret(f),
    )
    const response: SyncResponse = {
      headBytes: encodeHead(head),
      head,
      proofFrom: 3,
      consistencyProof: tree.consistencyProof(3, total),
      from: 3,
      events: events.slice(3).map(e => e.bytes),
      more: false,
    }
    const err = await thrown(b.replica.applySyncResponse(encodeSyncResponse(response), key, NOW))
    t.equal(err.code, 'SYNC_MISMATCH', "the miner's log holds an event this ledger refuses")
    t.equal((err.detail as { code?: string }).code, 'BAD_SIGNATURE', 'refused for its signature')
    t.equal(b.replica.coveredSize, 3, 'the old head kept')
    t.same(
      { ledger: toHex(b.storage.files.get('ledger.cbor')!), sync: toHex(b.storage.files.get('sync.cbor')!) },
      before,
      'nothing written',
    )
  },
)

t.test(
  'replicas of one process sharing decoded events: one copy per event, each pair verified once, a bad event still refused by every replica',
  async t => {
    const { f } = wideFleet(4)
    const key = minerKeyOf(f)
    const total = f.events.length
    let asyncChecks = 0
    const crypto: CryptoProvider = {
      ...nodeCrypto,
      ed25519VerifyAsync: (s, m, k) => {
        asyncChecks++
        return nodeCrypto.ed25519VerifyAsync!(s, m, k)
      },
    }
    const shared = new SharedEvents()
    const miner = await openMiner(f, memoryStorage())
    await miner.submit(
      f.events.map(e => e.bytes),
      NOW,
    )
    await miner.seal(NOW)
    const open = async () => {
      const storage = memoryStorage()
      await (await storage.openAppendFile('ledger.cbor')).close()
      storage.files.set('ledger.cbor', f.events[0]!.bytes.slice())
      return { storage, replica: await openReplicaFiles(crypto, storage, { events: shared }) }
    }
    const a = await open()
    await a.replica.replica.applySyncResponse(
      encodeSyncResponse(buildSyncResponse(miner, a.replica.replica.syncRequest(), 1000)),
      key,
      NOW,
    )
    const first = asyncChecks
    t.equal(first, total - 1, 'the first replica verifies every event but genesis on the thread pool')
    const b = await open()
    await b.replica.replica.applySyncResponse(
      encodeSyncResponse(buildSyncResponse(miner, b.replica.replica.syncRequest(), 1000)),
      key,
      NOW,
    )
    t.equal(asyncChecks, first, 'the second takes the pairs the first verified')
    t.equal(b.replica.replica.coveredSize, total)
    t.ok(
      a.replica.ledger.ledger.state.log.every((e, i) => e === b.replica.ledger.ledger.state.log[i]),
      'one decoded copy of each event',
    )
    t.equal(shared.size, total)

    // A head over a forged copy of the last event, really signed by the miner key: every replica refuses it itself.
    const events = [...f.events.slice(0, -1), forged(f.events[total - 1]!)]
    const tree = MerkleTree.fromIds(
      nodeCrypto,
      events.map(e => e.id),
    )
    const head = signHead(
      nodeCrypto,
      { height: 0, prevHeadId: new Uint8Array(32), time: NOW, treeSize: total, root: tree.root() },
      minerSecret(f),
    )
    const response: SyncResponse = {
      headBytes: encodeHead(head),
      head,
      proofFrom: 0,
      consistencyProof: [],
      from: 0,
      events: events.map(e => e.bytes),
      more: false,
    }
    for (let i = 0; i < 2; i++) {
      const c = await open()
      const err = await thrown(c.replica.replica.applySyncResponse(encodeSyncResponse(response), key, NOW))
      t.equal(err.code, 'SYNC_MISMATCH', `replica ${i + 1} refuses the miner's log`)
      t.equal((err.detail as { code?: string }).code, 'BAD_SIGNATURE', 'for the forged signature')
      t.equal(c.replica.replica.coveredSize, 0, 'and adopts no head')
    }
    for (const r of [a, b]) await r.replica.close()
  },
)

t.test(
  'a lineage checked against pairs this process verified: a forged event in it is still refused at enrollment',
  async t => {
    const { f } = wideFleet(2)
    const known = new VerifiedSignatureSet()
    const state = new Ledger(nodeCrypto)
    for (const e of f.events) state.ingest(e)
    for (const e of f.events.slice(1)) known.add(e.idHex, state.state.bindingById(toHex(e.event.links[0]!))!.ledgerKey)
    const lineage = [...f.events.slice(0, -1), forged(f.events[f.events.length - 1]!)].map(e => e.bytes)
    // The signature checks come before the root is read, so no root certificate is needed to reach them.
    const noRoot = undefined as unknown as DeviceCertificate
    let code: string | undefined
    try {
      ledgerFromLineage(nodeCrypto, lineage, noRoot, f.ledger.state.domain!, NOW, known)
    } catch (err) {
      code = err instanceof KinError ? err.code : String(err)
    }
    t.equal(code, 'BAD_SIGNATURE', 'the forged event has another id: the known pairs do not cover it')
  },
)
