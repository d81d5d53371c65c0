/** @module What kin serve tells of foreign inbox messages (INBOX_FOREIGN), on an injected clock: each sender's first at once, then one line per interval with the count; L0's replies never. */
import t from 'tap'
import { FOREIGN_LOG_SENDERS, foreignInboxLog, type ForeignLine } from '../../cli/foreign-inbox-log.ts'

const L0 = 'l0l0l0l0l0l0l0l0.smith.home.arpa'
const A = 'aaaaaaaaaaaaaaaa.smith.home.arpa'
const B = 'bbbbbbbbbbbbbbbb.smith.home.arpa'

t.test('first at once, then one line per interval per sender with what went untold', async t => {
  let now = 0
  const lines: ForeignLine[] = []
  const tell = foreignInboxLog({ l0Cn: L0, write: l => lines.push(l), nowMs: () => now, intervalMs: 60_000 })
  tell(A, 'one')
  tell(A, 'two')
  tell(B, 'from b')
  now = 59_999
  tell(A, 'three')
  t.same(
    lines.map(l => [l.sender, l.detail, l.untold]),
    [
      [A, 'one', 0],
      [B, 'from b', 0],
    ],
    'one line per sender within the interval',
  )
  now = 60_000
  tell(A, 'four')
  t.same(lines.at(-1), { sender: A, detail: 'four', untold: 2 }, 'the next line counts the two untold')
  tell(L0, 'an invite reply')
  tell(undefined, 'no sender')
  t.equal(lines.length, 3, "L0's replies (for commands the agent carries out) and sender-less messages are not told")
})

t.test('senders remembered are bounded: the oldest is forgotten, and told again', async t => {
  let now = 0
  const lines: ForeignLine[] = []
  const tell = foreignInboxLog({ l0Cn: L0, write: l => lines.push(l), nowMs: () => now })
  const cn = (i: number) => `${i.toString(36).padStart(16, 'x')}.smith.home.arpa`
  for (let i = 0; i <= FOREIGN_LOG_SENDERS; i++) tell(cn(i), 'x')
  t.equal(lines.length, FOREIGN_LOG_SENDERS + 1, 'every new sender is told')
  now = 1
  tell(cn(FOREIGN_LOG_SENDERS), 'again')
  t.equal(lines.length, FOREIGN_LOG_SENDERS + 1, 'a remembered sender is not told again within the interval')
  tell(cn(0), 'again')
  t.equal(lines.length, FOREIGN_LOG_SENDERS + 2, 'the forgotten first sender is told again')
})
