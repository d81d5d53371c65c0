// PendingConnections: the oldest waiting connection goes first past the cap; authenticated ones are never touched.
import t from 'tap'
import { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'
import { PendingConnections, type PendingCloseReason } from '../../runtime/node/pending-connections.ts'

/** Enough of a net.Socket: an address, a close event, destroy. */
function fakeSocket(port: number): Socket & { destroyedBy: number } {
  const s = new EventEmitter() as unknown as Socket & { destroyedBy: number }
  Object.assign(s, { remoteAddress: '192.0.2.7', remotePort: port, destroyedBy: 0 })
  s.destroy = () => {
    s.destroyedBy++
    s.emit('close')
    return s
  }
  return s
}

t.test('past the cap the oldest pending connection is closed, never one that authenticated', async t => {
  const closed: Array<[PendingCloseReason, number]> = []
  const pending = new PendingConnections({
    max: 3,
    deadlineMs: 60_000,
    onClosed: (reason, _remote, open) => closed.push([reason, open]),
  })
  const sockets = [1, 2, 3, 4, 5, 6].map(fakeSocket)
  pending.accepted(sockets[0]!)
  pending.accepted(sockets[1]!)
  pending.authenticated(sockets[1]!)
  for (const s of sockets.slice(2)) pending.accepted(s)
  t.same(
    sockets.map(s => s.destroyedBy),
    [1, 0, 1, 0, 0, 0],
    'the first and third went, oldest first; the second had logged in',
  )
  t.same(closed, [
    ['evicted', 3],
    ['evicted', 3],
  ])
  t.equal(pending.size, 3)
  t.same(pending.closed, { deadline: 0, evicted: 2, handshake: 0 })
  pending.handshakeFailed(sockets[3]!)
  t.same(pending.closed, { deadline: 0, evicted: 2, handshake: 1 })
  sockets[4]!.emit('close')
  t.equal(pending.size, 1, 'a socket that closed by itself is no longer counted')
  pending.closeAll()
  t.equal(pending.size, 0)
  t.equal(sockets[5]!.destroyedBy, 1)
})

t.test('a connection that does not authenticate by its deadline is closed', async t => {
  const pending = new PendingConnections({ max: 10, deadlineMs: 20 })
  const slow = fakeSocket(10),
    quick = fakeSocket(11)
  pending.accepted(slow)
  pending.accepted(quick)
  pending.authenticated(quick)
  const end = Date.now() + 30_000
  while (slow.destroyedBy === 0 && Date.now() < end) await new Promise(r => setTimeout(r, 5))
  t.equal(slow.destroyedBy, 1, 'closed at its deadline')
  t.equal(quick.destroyedBy, 0)
  t.same(pending.closed, { deadline: 1, evicted: 0, handshake: 0 })
})

t.test('settings are checked', async t => {
  t.throws(() => new PendingConnections({ max: 0 }), { code: 'BAD_ARGUMENT' })
  t.throws(() => new PendingConnections({ deadlineMs: 1.5 }), { code: 'BAD_ARGUMENT' })
})
