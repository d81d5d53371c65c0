// Warm path: a second decision for the same certificate does not run the chain verifier again.
import t from 'tap'
import { decide } from '../../agent/access/decide.ts'
import { ChainCache } from '../../agent/access/chain-cache.ts'
import { House, NOW } from '../helpers/access-house.ts'

t.test('a warm decision does not call the chain verifier again', async t => {
  const h = new House()
  const ctx = h.context('L3.3', { chainCache: new ChainCache() })
  const cert = h.cert('L3.4')
  t.equal(decide({ certificate: cert, action: 'unlock' }, ctx).code, 'ALLOW')
  t.equal(h.chainCalls, 1)
  t.equal(decide({ certificate: cert, action: 'unlock' }, ctx).code, 'ALLOW')
  t.equal(decide({ certificate: h.cert('L3.4'), action: 'view' }, ctx).code, 'ALLOW', 'same certificate, new object')
  t.equal(h.chainCalls, 1, 'two warm decisions, no further chain verification')
  t.equal(decide({ certificate: h.cert('L3.1'), action: 'view' }, ctx).code, 'ALLOW')
  t.equal(h.chainCalls, 2, 'another certificate is cold')
})

t.test('without a cache every decision verifies the chain', async t => {
  const h = new House()
  for (let i = 0; i < 3; i++) decide({ certificate: h.cert('L3.4'), action: 'unlock' }, h.context('L3.3'))
  t.equal(h.chainCalls, 3)
})

t.test('a warm decision still checks validity in time and the ledger', async t => {
  const h = new House()
  const ctx = h.context('L3.3', { chainCache: new ChainCache() })
  const cert = h.cert('L3.4', { notAfter: NOW + 10 })
  t.equal(decide({ certificate: cert, action: 'unlock' }, ctx).code, 'ALLOW')
  t.equal(decide({ certificate: cert, action: 'unlock' }, { ...ctx, now: NOW + 11 }).code, 'CERT_EXPIRED')
  h.fleet.revoke(h.cn['L2.2'], h.cn['L3.4'], { reason: 'lost', time: NOW - 100 })
  t.equal(decide({ certificate: cert, action: 'unlock' }, ctx).code, 'ACCESS_REVOKED')
  t.equal(h.chainCalls, 1)
})

t.test('refused chains are not cached; a pre-verified chain skips the verifier', async t => {
  const h = new House()
  const ctx = h.context('L3.3', { chainCache: new ChainCache() })
  const forged = h.cert('L3.4', { cn: 'forged.example' })
  t.equal(decide({ certificate: forged, action: 'view' }, ctx).code, 'CERT_CHAIN')
  t.equal(decide({ certificate: forged, action: 'view' }, ctx).code, 'CERT_CHAIN')
  t.equal(h.chainCalls, 2)
  const cert = h.cert('L2.2')
  t.equal(
    decide({ certificate: cert, action: 'view', chain: h.verifyChain(cert, NOW) }, h.context('L3.3')).code,
    'ALLOW',
  )
  t.equal(h.chainCalls, 3, 'only the call made above to produce the pre-verified result')
})

t.test('the cache is bounded and least-recently-used', async t => {
  const h = new House()
  const cache = new ChainCache(2)
  const ctx = h.context('L3.3', { chainCache: cache })
  const [a, b, c] = [h.cert('L3.4'), h.cert('L3.1'), h.cert('L2.2')]
  for (const cert of [a, b, a, c]) decide({ certificate: cert, action: 'view' }, ctx)
  t.equal(cache.size, 2)
  t.equal(h.chainCalls, 3)
  decide({ certificate: a, action: 'view' }, ctx)
  t.equal(h.chainCalls, 3, 'a was used recently and stayed')
  decide({ certificate: b, action: 'view' }, ctx)
  t.equal(h.chainCalls, 4, 'b was evicted')
  t.throws(() => new ChainCache(0), { code: 'BAD_ARGUMENT' })
})
