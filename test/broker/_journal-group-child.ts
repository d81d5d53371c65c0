/** @module Child of journal-group.test.ts: N changes at once under group commits, "answered" once all are, then waits to be killed. */
import { JournalFile, type JournalFormat } from '../../broker/journal-file.ts'
import { KinError } from '../../agent/errors.ts'

interface Counter {
  id: string
  n: number
}

const COUNTERS: JournalFormat<Counter> = {
  field: 'counters',
  key: r => r.id,
  read: (v, where) => {
    const r = v as Counter
    if (typeof r?.id !== 'string' || !Number.isSafeInteger(r.n)) throw new KinError('STORAGE_DAMAGED', `${where}`)
    return r
  },
  damaged: (path, why) => new KinError('STORAGE_DAMAGED', `${path}: ${why}`),
}

const [path, count] = [process.argv[2]!, Number(process.argv[3])]
const store = JournalFile.open(path, COUNTERS)
await Promise.all(Array.from({ length: count }, (_, i) => store.applyGrouped([{ set: { id: `c${i}`, n: i } }])))
process.stdout.write(`answered ${store.groupFlushes}\n`)
// Killed by the test (SIGKILL) once it read the line; never longer than a minute on its own.
setTimeout(() => process.exit(3), 60_000)
