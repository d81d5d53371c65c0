/** @module Concurrent `kin delegate` runs on one L0 home: each registration survives the others (delegated.json is changed under the home's lock). */
import t from 'tap'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DELEGATED_FILE } from '../../broker/delegated.ts'
import { enrollDirect, makeL0Home, withHomeLedger } from '../broker/_fleet.ts'
import { expectExit, kin, lastJson } from '../enroll/_harness.ts'

/** A process that registers one board at a given instant. */
const CHILD = join(dirname(fileURLToPath(import.meta.url)), '_delegated-register-child.ts')

/** Boards flashed at once, each by its own `kin delegate` process. */
const BOARDS = 6

const l0 = await makeL0Home()
const gates = await withHomeLedger(l0, async ledger => {
  const phone = await enrollDirect(l0, ledger, l0.self, { role: 'member', kind: 'phone', name: "owner's phone" })
  const gates = []
  for (let i = 0; i < BOARDS; i++)
    gates.push(await enrollDirect(l0, ledger, phone, { role: 'device', kind: 'gate', name: `gate ${i}` }))
  return gates
})

t.test(`${BOARDS} kin delegate processes at once for distinct boards: all ${BOARDS} stay registered`, async t => {
  const runs = await Promise.all(
    gates.map((g, i) =>
      kin(['delegate', g.cn, '--home', l0.dir, '--out', join(l0.dir, '..', `gate${i}.secret`), '--json'], {
        timeoutMs: 120_000,
      }),
    ),
  )
  runs.forEach((run, i) => {
    expectExit(t, run, 0, `board ${i} is registered`)
    t.equal(lastJson(run.stdout)['registered'], gates[i]!.cn)
  })
  const registered = JSON.parse(readFileSync(join(l0.dir, DELEGATED_FILE), 'utf8')) as {
    devices: Record<string, string>
  }
  t.same(Object.keys(registered.devices).sort(), gates.map(g => g.cn).sort(), 'every board is in delegated.json')
  for (const [i, g] of gates.entries()) {
    const file = JSON.parse(readFileSync(join(l0.dir, '..', `gate${i}.secret`), 'utf8')) as { cn: string }
    t.equal(file.cn, g.cn, `board ${i}'s secret file names it`)
  }
})

t.test(`${BOARDS} registrations begun at the same millisecond by ${BOARDS} processes: none is lost`, async t => {
  const home = (await makeL0Home()).dir
  const startAt = Date.now() + 3_000
  const codes = await Promise.all(
    gates.map(
      (g, i) =>
        new Promise<number | null>(resolve => {
          const child = spawn(
            process.execPath,
            ['--import', 'tsx', CHILD, home, g.cn, String(startAt), String(i + 1)],
            {
              stdio: ['ignore', 'inherit', 'inherit'],
            },
          )
          child.on('close', resolve)
        }),
    ),
  )
  t.same(
    codes,
    gates.map(() => 0),
    'every process registered its board',
  )
  const registered = JSON.parse(readFileSync(join(home, DELEGATED_FILE), 'utf8')) as {
    devices: Record<string, string>
  }
  t.same(Object.keys(registered.devices).sort(), gates.map(g => g.cn).sort(), 'every board is in delegated.json')
})
