import t from 'tap'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodeStorage } from '../../runtime/node/storage.ts'
import { concatBytes, toHex } from '../../agent/codec/bytes.ts'
import { PersistentLedger } from '../../agent/ledger/persistent.ts'
import { memoryStorage, rejection, wideFleet } from './helpers.ts'

t.test(
  'PersistentLedger.rewrite: all or nothing, in exactly the given order, and appends continue on the new file',
  async t => {
    const dir = await mkdtemp(join(tmpdir(), 'kin-rewrite-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    const { f } = wideFleet(3)
    const ev = f.events
    const storage = nodeStorage(dir)
    const ledger = await PersistentLedger.open(nodeCrypto, await storage.openAppendFile('ledger.cbor'))
    await ledger.appendMany(ev.slice(0, 7))
    const same = ledger.ledger
    const before = await readFile(join(dir, 'ledger.cbor'))

    // A certified event before its authorize: refused, nothing changes.
    const badOrder = [...ev.slice(0, 3), ev[4]!, ev[3]!]
    t.equal(await rejection(ledger.rewrite(badOrder)), 'MISSING_LINK')
    t.ok((await readFile(join(dir, 'ledger.cbor'))).equals(before), 'file untouched')
    t.equal(ledger.ledger.size, 7)
    t.equal(
      await rejection(
        ledger.rewrite(() => {
          throw new TypeError('builder failed')
        }),
      ),
      'NOT_A_KIN_ERROR: TypeError: builder failed',
    )
    t.equal(ledger.ledger.size, 7)

    // Another valid order (phone 1 before phone 0), built from the log at the time the rewrite runs.
    const pending = ledger.appendMany(ev.slice(7, 11))
    await ledger.rewrite(log => {
      t.equal(log.length, 11, 'the builder sees the append queued before it')
      return [...log.slice(0, 3), ...log.slice(7, 11), ...log.slice(3, 7)]
    })
    await pending
    const order = [...ev.slice(0, 3), ...ev.slice(7, 11), ...ev.slice(3, 7)]
    t.equal(ledger.ledger, same, 'the same Ledger object')
    t.same(
      ledger.ledger.state.log.map(e => e.idHex),
      order.map(e => e.idHex),
    )
    await ledger.appendMany(ev.slice(11))
    const expected = concatBytes(...order.map(e => e.bytes), ...ev.slice(11).map(e => e.bytes))
    t.equal(
      toHex(await readFile(join(dir, 'ledger.cbor'))),
      toHex(expected),
      'appends after the rewrite land on the new file',
    )
    await ledger.close()
    const reopened = await PersistentLedger.open(nodeCrypto, await nodeStorage(dir).openAppendFile('ledger.cbor'))
    t.same(
      reopened.ledger.state.log.map(e => e.idHex),
      [...order, ...ev.slice(11)].map(e => e.idHex),
    )
    await reopened.close()
  },
)

t.test('PersistentLedger.rewrite on memory storage: a failed replace leaves memory and file as they were', async t => {
  const { f } = wideFleet(1)
  const storage = memoryStorage()
  const ledger = await PersistentLedger.open(nodeCrypto, await storage.openAppendFile('ledger.cbor'))
  await ledger.appendMany(f.events)
  const file = storage.files.get('ledger.cbor')!.slice()
  await ledger.rewrite(f.events)
  t.equal(toHex(storage.files.get('ledger.cbor')!), toHex(file), 'rewriting the same order gives the same bytes')
  await ledger.close()
  t.equal(await rejection(ledger.rewrite(f.events)), 'STORAGE_IO', 'a closed file refuses')
  t.equal(ledger.ledger.size, f.events.length)
})
