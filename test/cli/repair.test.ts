// DESIGN.md "The device runtime": a damaged ledger is repaired from L0 by one command. A member's ledger is damaged in
// each way a person met (a duplicated event, a foreign event, bytes broken in the middle, a cut file); `kin repair`
// rebuilds it from L0's miner, keeps the damaged file aside, says what it dropped, and verify, sync and access work again.
import t, { type Test } from 'tap'
import { appendFileSync, existsSync, readFileSync, readdirSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { expectExit, kin, lastJson, tempDir } from '../enroll/_harness.ts'
import { gossipFleet, startKinLines } from '../gossip/_fleet.ts'
import { scanRecords } from '../../agent/ledger/store.ts'

const fleet = await gossipFleet(t, ['admin', 'member'], { start: 'all' })
const [admin, member] = fleet.devices as [(typeof fleet.devices)[0], (typeof fleet.devices)[0]]
const ledgerFile = join(member.home, 'ledger.cbor')

t.test('kin repair rebuilds a damaged ledger from L0', async t => {
  expectExit(t, await kin(['sync', '--home', member.home, '--json']), 0, 'the member holds a verified head (sync.cbor)')
  const serve = startKinLines(t, ['serve', '--home', admin.home, '--port', '0', '--json'])
  const listening = await serve.waitJson(d => d['listening'] === true, 60_000)
  const target = `127.0.0.1:${String(listening['port'])}`
  const access = () => kin(['access', '--home', member.home, '--target', target, '--action', 'unlock', '--json'])
  expectExit(t, await access(), 0, 'the member is let in before any damage')
  const good = readFileSync(ledgerFile)
  const records = scanRecords(good).records
  const other = tempDir(t, 'other')
  expectExit(t, await kin(['init', '--home', join(other, 'l0'), '--fleet', 'other.home.arpa']), 0, 'another fleet')
  const foreignGenesis = scanRecords(readFileSync(join(other, 'l0', 'ledger.cbor'))).records[0]!.bytes

  /** Damages the member's ledger, checks the symptom, repairs, and checks that everything works again. */
  const damageAndRepair = async (
    t: Test,
    name: string,
    damage: () => void,
    symptom: string[],
    expectCode: RegExp,
  ): Promise<Record<string, unknown>> => {
    writeFileSync(ledgerFile, good)
    damage()
    const before = await kin(symptom)
    t.not(before.status, 0, `${name}: kin ${symptom[0]} fails before the repair`)
    t.match(before.stdout + before.stderr, expectCode, `${name}: with the damage's code`)
    const kept = readdirSync(member.home).filter(f => f.startsWith('ledger.damaged-')).length
    const repaired = await kin(['repair', '--home', member.home, '--json'])
    expectExit(t, repaired, 0, `${name}: kin repair`)
    const out = lastJson(repaired.stdout)
    t.match(out, { ok: true, repaired: true, damage: { code: expectCode } })
    t.ok(existsSync(String(out['kept'])), `${name}: the damaged file is kept as ${String(out['kept'])}`)
    t.equal(
      readdirSync(member.home).filter(f => f.startsWith('ledger.damaged-')).length,
      kept + 1,
      'one more damaged file kept aside',
    )
    t.notOk(
      readdirSync(member.home).some(f => f.startsWith('.repair-')),
      'no staging directory left',
    )
    expectExit(
      t,
      await kin(['ledger', 'verify', '--home', member.home, '--json']),
      0,
      `${name}: the rebuilt ledger verifies`,
    )
    expectExit(t, await kin(['sync', '--home', member.home, '--json']), 0, `${name}: kin sync works again`)
    expectExit(t, await access(), 0, `${name}: and access works again`)
    return out
  }

  await t.test('a duplicated event (DUPLICATE_EVENT)', async t => {
    const out = await damageAndRepair(
      t,
      'duplicate',
      () => appendFileSync(ledgerFile, records.at(-1)!.bytes),
      ['ledger', 'verify', '--home', member.home, '--json'],
      /DUPLICATE_EVENT|STORAGE_DAMAGED/,
    )
    t.equal(out['duplicates'], 1, 'the duplicate is left out')
    t.same(out['dropped'], [], 'and nothing else is dropped')
  })

  await t.test('an event L0 does not have: it is named as dropped', async t => {
    const out = await damageAndRepair(
      t,
      'foreign',
      () => appendFileSync(ledgerFile, foreignGenesis),
      ['access', '--home', member.home, '--target', target, '--action', 'unlock', '--json'],
      /STORAGE_DAMAGED/,
    )
    t.match(out['dropped'], [{ type: 'genesis' }], "the other fleet's genesis is dropped, and said so")
    const text = await kin(['repair', '--home', member.home])
    expectExit(t, text, 0, 'repair on a repaired home')
    t.match(text.stdout, /nothing to repair/)
  })

  await t.test('bytes broken in the middle (STORAGE_DAMAGED)', async t => {
    const out = await damageAndRepair(
      t,
      'middle',
      () => {
        const bytes = Buffer.from(good)
        bytes[records[2]!.offset] = 0xff
        writeFileSync(ledgerFile, bytes)
      },
      ['ledger', 'verify', '--home', member.home, '--json'],
      /STORAGE_DAMAGED/,
    )
    t.ok((out['unreadableBytes'] as number) > 0, 'it says how many bytes could not be read')
  })

  await t.test('a cut file (its head covers events it lost)', async t => {
    await damageAndRepair(
      t,
      'cut',
      () => truncateSync(ledgerFile, records.at(-1)!.offset + 3),
      ['sync', '--home', member.home, '--json'],
      /HEAD_ROOT_MISMATCH/,
    )
  })

  await t.test("refusals: an agent holds the home; L0's home", async t => {
    const agent = startKinLines(t, ['sync', '--home', member.home, '--follow', '--json'])
    await agent.waitJson(d => d['following'] === true, 60_000)
    const busy = await kin(['repair', '--home', member.home, '--json'])
    expectExit(t, busy, 2, 'repair while kin sync --follow owns the home')
    t.match(lastJson(busy.stdout), { code: 'STORAGE_BUSY' })
    agent.signal('SIGTERM')
    await agent.done
    // A file whose genesis is gone has nothing to anchor a rebuild on; the home is left as it was.
    const broken = Buffer.from(good)
    broken[0] = 0xff
    writeFileSync(ledgerFile, broken)
    const noGenesis = await kin(['repair', '--home', member.home, '--json'])
    expectExit(t, noGenesis, 2, 'no genesis to start from')
    t.match(lastJson(noGenesis.stdout), { code: 'REPAIR_NO_GENESIS' })
    t.same(readFileSync(ledgerFile), broken, 'the damaged file is left in place, unchanged')
    writeFileSync(ledgerFile, good)
    const l0 = await kin(['repair', '--home', fleet.l0.dir, '--json'])
    expectExit(t, l0, 2, "L0's ledger is not rebuilt from itself")
    t.match(lastJson(l0.stdout), { code: 'BAD_ARGUMENT' })
  })

  serve.signal('SIGTERM')
  await serve.done
})
