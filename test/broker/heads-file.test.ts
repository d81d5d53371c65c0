import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { KinError } from '../../agent/errors.ts'
import { HEADS_FILE } from '../../broker/miner-service.ts'
import { LOCK_FILE } from '../../broker/home.ts'
import { startL0 } from '../../broker/l0.ts'
import { enrollDirect, makeL0Home, startTestL0, withHomeLedger } from './_fleet.ts'

const kin = fileURLToPath(new URL('../../bin/kin.mjs', import.meta.url))

const l0 = await makeL0Home()
await withHomeLedger(l0, async ledger => {
  const phone = await enrollDirect(l0, ledger, l0.self, { role: 'member' })
  await enrollDirect(l0, ledger, phone, { role: 'device', kind: 'lock' })
})
// One run seals the ledger and leaves its head in the heads file.
const first = await startTestL0(l0)
const head = first.services.miner.miner.latestHead()!
await first.services.close()
const headsPath = join(l0.dir, HEADS_FILE)
const ledgerPath = join(l0.dir, 'ledger.cbor')
const goodHeads = readFileSync(headsPath)
const goodLedger = readFileSync(ledgerPath)
t.teardown(() => {
  writeFileSync(headsPath, goodHeads)
  writeFileSync(ledgerPath, goodLedger)
})

function restore(): void {
  writeFileSync(headsPath, goodHeads)
  writeFileSync(ledgerPath, goodLedger)
}

async function refusal(): Promise<KinError> {
  try {
    const s = await startL0({ home: l0.dir, port: 0, log: () => undefined })
    await s.close()
  } catch (err) {
    if (err instanceof KinError) return err
    throw err
  }
  throw new Error('startL0 started on a heads file that contradicts the ledger')
}

t.test('a heads file whose root was changed: startL0 refuses with HEAD_INCONSISTENT and says what to do', async t => {
  const tampered = Buffer.from(goodHeads)
  const at = tampered.indexOf(Buffer.from(head.root))
  t.ok(at > 0, "the head's root is in the file")
  tampered[at + 7]! ^= 0x01
  writeFileSync(headsPath, tampered)
  const err = await refusal()
  t.equal(err.code, 'HEAD_INCONSISTENT')
  t.match(err.message, /heads file/)
  t.match(err.message, /refuses to start/)
  t.equal(err.detail?.headsFile, headsPath)
  t.notOk(existsSync(join(l0.dir, LOCK_FILE)), 'the lock is released')
  restore()
})

t.test('a ledger that lost events a head covers: HEAD_INCONSISTENT', async t => {
  // The last record of the ledger file cut away: the head covers one event more than the file holds.
  await withHomeLedger(l0, async ledger => {
    t.equal(ledger.ledger.size, head.treeSize)
  })
  const lastBytes = await withHomeLedger(l0, async ledger => ledger.ledger.state.log[ledger.ledger.size - 1]!.bytes)
  writeFileSync(ledgerPath, goodLedger.subarray(0, goodLedger.length - lastBytes.length))
  const err = await refusal()
  t.equal(err.code, 'HEAD_INCONSISTENT')
  t.match(err.message, /lost events/)
  restore()
})

t.test('kin broker on such a home exits 2 with the code, and starts again once the files agree', async t => {
  const tampered = Buffer.from(goodHeads)
  tampered[tampered.indexOf(Buffer.from(head.root))]! ^= 0x80
  writeFileSync(headsPath, tampered)
  const r = spawnSync(process.execPath, [kin, 'broker', '--home', l0.dir, '--port', '0', '--json'], {
    encoding: 'utf8',
    timeout: 30_000,
  })
  t.equal(r.status, 2)
  const out = JSON.parse(r.stdout) as { ok: boolean; code: string; message: string }
  t.equal(out.ok, false)
  t.equal(out.code, 'HEAD_INCONSISTENT')
  restore()
  const again = await startTestL0(l0)
  t.same(
    again.services.miner.miner.latestHeadBytes(),
    first.services.miner.miner.latestHeadBytes(),
    'the same head as before the tampering',
  )
  await again.services.close()
})
