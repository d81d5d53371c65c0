import t from 'tap'
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { nodeStorage } from '../../runtime/node/storage.ts'
import { memoryStorage } from '../../agent/portable/memory-storage.ts'
import type { Storage } from '../../agent/ports/platform.ts'
import { LedgerStore } from '../../agent/ledger/store.ts'
import { bytesEqual, concatBytes, utf8 } from '../../agent/codec/bytes.ts'
import { LedgerFleet } from '../helpers/ledger-fleet.ts'

/** Real signed events: what the ledger file holds. */
function fleetEvents(): Uint8Array[] {
  const f = LedgerFleet.create({ tag: 'storage-shim' })
  const a = f.enroll(f.l0, { role: 'admin', kind: 'phone', name: 'alice' })
  for (let i = 0; i < 4; i++) f.enroll(a, { role: 'device', kind: 'lock', name: `door ${i}` })
  return f.events.map(e => e.bytes)
}
const EVENTS = fleetEvents()

/** A storage under test plus raw access to its durable bytes, as a crash would leave them. */
interface Rig {
  storage: Storage
  /** A storage over the same durable bytes, as a new process after a crash would see them. */
  restart(): Storage
  raw(name: string): Uint8Array
  /** Appends bytes straight to the durable file, bypassing the storage: the start of a torn append. */
  rawAppend(name: string, bytes: Uint8Array): void
  cleanup(): void
}

const dirs: string[] = []
t.teardown(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'kin-storage-'))
  dirs.push(d)
  return d
}

const rigs: Array<{ name: string; make(): Rig }> = [
  {
    name: 'node',
    make() {
      const dir = join(tempDir(), 'home')
      return {
        storage: nodeStorage(dir),
        restart: () => nodeStorage(dir),
        raw: name => new Uint8Array(readFileSync(join(dir, name))),
        rawAppend: (name, bytes) => appendFileSync(join(dir, name), bytes),
        cleanup: () => rmSync(dir, { recursive: true, force: true }),
      }
    },
  },
  {
    name: 'memory',
    make() {
      const storage = memoryStorage()
      return {
        storage,
        restart: () => storage,
        raw: name => storage.files.get(name)!.slice(),
        rawAppend: (name, bytes) => storage.files.set(name, concatBytes(storage.files.get(name)!, bytes)),
        cleanup: () => undefined,
      }
    },
  },
]

// (e) one contract, both implementations
for (const rig of rigs) {
  t.test(`${rig.name}: open, append, read, size`, async t => {
    const r = rig.make()
    const f = await r.storage.openAppendFile('ledger.cbor')
    t.equal(await f.size(), 0, 'a new file is empty')
    t.equal((await f.read()).length, 0)
    await f.append(utf8('alpha '))
    await f.append(utf8('beta'))
    t.equal(await f.size(), 10)
    t.same(new TextDecoder().decode(await f.read()), 'alpha beta')
    t.ok(bytesEqual(r.raw('ledger.cbor'), utf8('alpha beta')), 'durable bytes after the promises resolved')
    await f.close()
    r.cleanup()
  })

  t.test(`${rig.name}: concurrent appends land whole and in call order`, async t => {
    const r = rig.make()
    const f = await r.storage.openAppendFile('ledger.cbor')
    const parts: Uint8Array[] = []
    const pending: Array<Promise<void>> = []
    for (let i = 0; i < 200; i++) {
      const part = utf8(`[${i}:${'x'.repeat(i % 17)}]`)
      parts.push(part)
      pending.push(f.append(part))
      if (i % 50 === 49) await pending[pending.length - 1] // mix batches issued in one turn with awaited ones
    }
    await Promise.all(pending)
    t.ok(bytesEqual(await f.read(), concatBytes(...parts)), 'content is the parts in call order')
    t.ok(bytesEqual(r.raw('ledger.cbor'), concatBytes(...parts)))
    // read and size queue behind earlier appends
    const more = utf8('tail')
    const p = f.append(more)
    t.equal(await f.size(), concatBytes(...parts).length + 4)
    await p
    await f.close()
    r.cleanup()
  })

  t.test(`${rig.name}: append keeps the bytes it was given, even if the caller reuses its buffer`, async t => {
    const r = rig.make()
    const f = await r.storage.openAppendFile('ledger.cbor')
    const buf = utf8('original')
    const p = f.append(buf)
    buf.fill(0x21)
    await p
    t.same(new TextDecoder().decode(await f.read()), 'original')
    await f.close()
    r.cleanup()
  })

  t.test(`${rig.name}: replace swaps the whole content; appends go on after it`, async t => {
    const r = rig.make()
    const f = await r.storage.openAppendFile('ledger.cbor')
    await f.append(utf8('old old old'))
    await f.replace(utf8('new'))
    t.same(new TextDecoder().decode(await f.read()), 'new')
    await f.append(utf8('+more'))
    t.same(new TextDecoder().decode(r.raw('ledger.cbor')), 'new+more')
    t.equal(await f.size(), 8)
    await f.close()
    r.cleanup()
  })

  t.test(`${rig.name}: close, busy names, reopen`, async t => {
    const r = rig.make()
    const f = await r.storage.openAppendFile('ledger.cbor')
    await t.rejects(r.storage.openAppendFile('ledger.cbor'), { code: 'STORAGE_BUSY' })
    const last = f.append(utf8('kept'))
    await f.close()
    await last
    await f.close() // closing twice is harmless
    await t.rejects(f.append(utf8('x')), { code: 'STORAGE_IO' })
    await t.rejects(f.read(), { code: 'STORAGE_IO' })
    const again = await r.storage.openAppendFile('ledger.cbor')
    t.same(new TextDecoder().decode(await again.read()), 'kept', 'the append issued before close was written')
    const other = await r.storage.openAppendFile('other.cbor')
    t.equal(await other.size(), 0, 'names are separate files')
    await again.close()
    await other.close()
    r.cleanup()
  })

  t.test(`${rig.name}: a ledger store on top survives a crash in the middle of an append`, async t => {
    const r = rig.make()
    const { store } = await LedgerStore.open(await r.storage.openAppendFile('ledger.cbor'))
    for (const e of EVENTS.slice(0, 6)) await store.append(e)
    await store.close()
    const durable = concatBytes(...EVENTS.slice(0, 6))
    t.ok(bytesEqual(r.raw('ledger.cbor'), durable))
    // The process dies while appending the next event: only part of it is on disk.
    r.rawAppend('ledger.cbor', EVENTS[6]!.subarray(0, 57))
    const torn: number[][] = []
    const reopened = await LedgerStore.open(await r.restart().openAppendFile('ledger.cbor'), {
      onTornTail: (o, d) => torn.push([o, d]),
    })
    t.equal(reopened.records.length, 6)
    t.same(torn, [[durable.length, 57]], 'torn tail reported')
    t.ok(bytesEqual(r.raw('ledger.cbor'), durable), 'the file is the recovered prefix')
    t.equal(await reopened.store.append(EVENTS[6]!), durable.length, 'appends resume where the prefix ends')
    await reopened.store.close()
    t.ok(bytesEqual(r.raw('ledger.cbor'), concatBytes(...EVENTS.slice(0, 7))))
    r.cleanup()
  })
}

// (d) node specifics: fsync before acknowledgement, group commit, atomic replace, modes
interface Probe {
  written: number
  synced: number
  datasyncs: number
  syncs: number
  failSync: boolean
}

/** Instruments FileHandle.prototype (write, datasync, sync) for the duration of `fn`. */
async function withProbe<T>(fn: (probe: Probe) => Promise<T>): Promise<T> {
  const dir = tempDir()
  const fh = await open(join(dir, 'probe'), 'w')
  const proto = Object.getPrototypeOf(fh) as Record<string, (...args: unknown[]) => Promise<unknown>>
  await fh.close()
  const orig = { write: proto.write!, datasync: proto.datasync!, sync: proto.sync! }
  const probe: Probe = { written: 0, synced: 0, datasyncs: 0, syncs: 0, failSync: false }
  proto.write = async function (this: unknown, ...args: unknown[]) {
    const res = (await orig.write.apply(this, args)) as { bytesWritten: number }
    probe.written += res.bytesWritten
    return res
  }
  proto.datasync = async function (this: unknown, ...args: unknown[]) {
    if (probe.failSync) throw Object.assign(new Error('EIO: simulated'), { code: 'EIO' })
    const covered = probe.written
    const res = await orig.datasync.apply(this, args)
    probe.datasyncs++
    probe.synced = Math.max(probe.synced, covered)
    return res
  }
  proto.sync = async function (this: unknown, ...args: unknown[]) {
    const res = await orig.sync.apply(this, args)
    probe.syncs++
    return res
  }
  try {
    return await fn(probe)
  } finally {
    Object.assign(proto, orig)
  }
}

t.test('node: every append resolves only after an fsync that covers its bytes; a fresh fd sees them', async t => {
  const dir = tempDir()
  await withProbe(async probe => {
    const f = await nodeStorage(dir).openAppendFile('ledger.cbor')
    let expected: Uint8Array = new Uint8Array(0)
    for (const e of EVENTS) {
      const before = probe.written
      await f.append(e)
      expected = concatBytes(expected, e)
      t.ok(
        probe.written >= before + e.length && probe.synced >= probe.written,
        `after append: written ${probe.written}, synced ${probe.synced}`,
      )
      t.ok(
        bytesEqual(new Uint8Array(readFileSync(join(dir, 'ledger.cbor'))), expected),
        'fresh fd reads the appended bytes',
      )
    }
    t.equal(probe.datasyncs, EVENTS.length, 'one fsync per sequential append')
    await f.close()
  })
})

t.test('node: appends issued together share an fsync (group commit), each still acknowledged after it', async t => {
  const dir = tempDir()
  await withProbe(async probe => {
    const f = await nodeStorage(dir).openAppendFile('ledger.cbor')
    const acks: boolean[] = []
    const parts: Uint8Array[] = []
    const pending: Array<Promise<void>> = []
    for (let i = 0; i < 64; i++) {
      const part = concatBytes(utf8(`#${i}#`), EVENTS[i % EVENTS.length]!)
      parts.push(part)
      const end = concatBytes(...parts).length
      pending.push(
        f.append(part).then(() => {
          acks.push(probe.synced >= end)
        }),
      )
    }
    await Promise.all(pending)
    t.equal(acks.length, 64)
    t.ok(acks.every(Boolean), 'every acknowledgement came after an fsync covering its bytes')
    t.ok(probe.datasyncs >= 1 && probe.datasyncs < 64, `64 appends, ${probe.datasyncs} fsyncs`)
    t.ok(bytesEqual(new Uint8Array(readFileSync(join(dir, 'ledger.cbor'))), concatBytes(...parts)), 'call order kept')
    await f.close()
  })
})

t.test(
  'node: replace is atomic: temp file fsynced and renamed, directory fsynced, no .tmp left, mode 0600 whatever the umask',
  async t => {
    const dir = tempDir()
    const umask = process.umask(0)
    try {
      await withProbe(async probe => {
        const f = await nodeStorage(dir).openAppendFile('ledger.cbor')
        t.equal(statSync(join(dir, 'ledger.cbor')).mode & 0o777, 0o600, 'created 0600 despite umask 000')
        await f.append(utf8('before replace'))
        const syncs = probe.syncs
        await f.replace(utf8('after'))
        t.ok(probe.syncs - syncs >= 2, 'fsync of the temp file and of the directory')
        t.notOk(existsSync(join(dir, 'ledger.cbor.tmp')), 'no .tmp left')
        t.same(readFileSync(join(dir, 'ledger.cbor'), 'utf8'), 'after')
        t.equal(statSync(join(dir, 'ledger.cbor')).mode & 0o777, 0o600, 'replacement is 0600 too')
        await f.append(utf8('!'))
        t.same(readFileSync(join(dir, 'ledger.cbor'), 'utf8'), 'after!', 'appends go to the new file')
        await f.close()
      })
    } finally {
      process.umask(umask)
    }
  },
)

t.test('node: a .tmp left by a replace that crashed before its rename is removed; the file is intact', async t => {
  const dir = tempDir()
  writeFileSync(join(dir, 'ledger.cbor'), 'intact')
  writeFileSync(join(dir, 'ledger.cbor.tmp'), 'half a replace')
  const f = await nodeStorage(dir).openAppendFile('ledger.cbor')
  t.notOk(existsSync(join(dir, 'ledger.cbor.tmp')))
  t.same(new TextDecoder().decode(await f.read()), 'intact')
  await f.close()
})

t.test('node: a failed fsync fails that append and every later one; a reopen recovers', async t => {
  const dir = tempDir()
  await withProbe(async probe => {
    const storage = nodeStorage(dir)
    const f = await storage.openAppendFile('ledger.cbor')
    await f.append(EVENTS[0]!)
    probe.failSync = true
    const failed = f.append(EVENTS[1]!)
    const later = f.append(EVENTS[2]!)
    await t.rejects(failed, { code: 'STORAGE_IO' })
    await t.rejects(later, { code: 'STORAGE_IO' })
    await t.rejects(f.append(EVENTS[3]!), { code: 'STORAGE_IO' })
    probe.failSync = false
    const { records } = await LedgerStore.open(await storage.openAppendFile('ledger.cbor'))
    t.ok(records.length >= 1 && bytesEqual(records[0]!.bytes, EVENTS[0]!), 'what was acknowledged is there')
  })
})

t.test('node: names are plain file names', async t => {
  const storage = nodeStorage(tempDir())
  for (const bad of ['', '../x', 'a/b', '.hidden', 'x.tmp', 'a\0b']) {
    await t.rejects(storage.openAppendFile(bad), { code: 'BAD_ARGUMENT' }, JSON.stringify(bad))
  }
  t.throws(() => nodeStorage(''), { code: 'BAD_ARGUMENT' })
})

t.test('memory: a torn append keeps a prefix, fails, and kills the handle', async t => {
  const storage = memoryStorage()
  const f = await storage.openAppendFile('ledger')
  await f.append(EVENTS[0]!)
  storage.tearNextAppend('ledger', 10)
  await t.rejects(f.append(EVENTS[1]!), { code: 'STORAGE_IO' })
  await t.rejects(f.read(), { code: 'STORAGE_IO' }, 'the handle died with the process')
  t.ok(bytesEqual(storage.files.get('ledger')!, concatBytes(EVENTS[0]!, EVENTS[1]!.subarray(0, 10))))
  const again = await storage.openAppendFile('ledger')
  t.equal(await again.size(), EVENTS[0]!.length + 10, 'reopen sees the torn bytes')
  t.throws(() => storage.tearNextAppend('ledger', -1), { code: 'BAD_ARGUMENT' })
})

t.test('memory: damage planted through files is what the next reader sees, and appends continue from it', async t => {
  const storage = memoryStorage()
  const f = await storage.openAppendFile('ledger')
  await f.append(utf8('abc'))
  storage.files.set('ledger', utf8('xyz'))
  t.same(new TextDecoder().decode(await f.read()), 'xyz')
  await f.append(utf8('!'))
  t.same(new TextDecoder().decode(storage.files.get('ledger')!), 'xyz!')
  // many appends stay cheap: the buffer grows geometrically
  for (let i = 0; i < 5000; i++) await f.append(EVENTS[i % EVENTS.length]!)
  t.equal(await f.size(), 4 + EVENTS.reduce((n, e, i) => n + e.length * Math.ceil((5000 - i) / EVENTS.length), 0))
})
