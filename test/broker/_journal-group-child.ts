/** @module Child of journal-group.test.ts: N changes at once under group commits, "answered" once all are, then waits to be killed. */
import { JournalFile } from '../../broker/journal-file.ts'
import { COUNTERS } from '../helpers/journal-counters.ts'

const [path, count] = [process.argv[2]!, Number(process.argv[3])]
const store = JournalFile.open(path, COUNTERS)
await Promise.all(Array.from({ length: count }, (_, i) => store.applyGrouped([{ set: { id: `c${i}`, n: i } }])))
process.stdout.write(`answered ${store.groupFlushes}\n`)
// Killed by the test (SIGKILL) once it read the line; never longer than a minute on its own.
setTimeout(() => process.exit(3), 60_000)
