// An answer a requester reads back as a Decision: every field the answer line and the inbox verdict carry comes
// back as the target decided it, and nothing the answer does not carry is invented.
import t from 'tap'
import { decisionOfAnswer, refusalDecision } from '../../agent/access/decision.ts'
import type { Decision } from '../../agent/access/types.ts'
import { verdictOf } from '../../agent/gossip/challenge-session.ts'
import { answerOf } from '../../runtime/node/tls-endpoint.ts'

const allowed: Decision = {
  allow: true,
  code: 'ALLOW',
  reason: 'member of the house',
  path: ['a.home.arpa', 'b.home.arpa'],
  commonAncestor: 'a.home.arpa',
  hops: 2,
  peer: 'b.home.arpa',
  action: 'unlock',
  time: 1_800_000_000,
  retry: false,
  missing: undefined,
}

t.test('an allow read from the answer line or the inbox verdict is the decision the target made', async t => {
  t.same(decisionOfAnswer(answerOf(allowed)), allowed, 'over TLS')
  t.same(decisionOfAnswer(verdictOf(allowed)), allowed, 'over the inbox')
})

t.test('a refusal without path, ancestor or peer comes back with those fields undefined, not null', async t => {
  const refused = refusalDecision('ACCESS_NO_CERTIFICATE', 'no certificate', 'unlock', 1_800_000_000)
  const back = decisionOfAnswer(answerOf(refused))
  t.same(back, { ...refused, retry: false, missing: undefined })
  t.equal(back.commonAncestor, undefined)
  t.equal(back.hops, undefined)
  t.equal(back.peer, undefined)
})

t.test('what the answer does not carry is not invented: no retry, no missing proof', async t => {
  const missing: Decision = { ...allowed, allow: false, retry: true, missing: 'c.home.arpa' }
  const back = decisionOfAnswer(answerOf(missing))
  t.equal(back.retry, false)
  t.equal(back.missing, undefined)
})
