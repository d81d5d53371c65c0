/** @module A journal format for tests of L0's journal files: counters keyed by id, refused as damaged when malformed. */
import type { JournalFormat } from '../../broker/journal-file.ts'
import { KinError } from '../../agent/errors.ts'

/** One record: a counter and its value. */
export interface Counter {
  id: string
  n: number
}

/** Counters under the snapshot field "counters"; a record that is not one is STORAGE_DAMAGED, as L0's own formats say. */
export const COUNTERS: JournalFormat<Counter> = {
  field: 'counters',
  key: r => r.id,
  read: (v, where) => {
    const r = v as Counter
    if (typeof r?.id !== 'string' || !Number.isSafeInteger(r.n)) throw new KinError('STORAGE_DAMAGED', `${where}`)
    return r
  },
  damaged: (path, why) => new KinError('STORAGE_DAMAGED', `${path}: ${why}`),
}
