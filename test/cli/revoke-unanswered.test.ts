// kin revoke on a device whose broker logs it in and then never answers its SUBSCRIBE (a NATS cluster that lost a
// node did that): the revocation is recorded here and reported pending (exit 4, EVENT_PENDING), within --timeout and
// the session's end grace, never a silent exit 0. Before, the follower's close waited for ever on that SUBSCRIBE and
// the process ran out of work with status 0 and no output.
// The broker is a TLS server written here with L0's own server certificate (so the device's checks pass): it answers
// CONNECT with CONNACK and PINGREQ with PINGRESP, and nothing else.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { createServer, type TLSSocket } from 'node:tls'
import type { AddressInfo } from 'node:net'
import { serverCertificatePaths } from '../../broker/server-certificates.ts'
import { LoopbackL0 } from '../../sim/live/l0.ts'
import { expectExit, kin, lastJson } from '../enroll/_harness.ts'
import { gossipHomes, homeLedger } from '../gossip/_fleet.ts'

t.test('kin revoke whose broker never answers its SUBSCRIBE: exit 4, EVENT_PENDING, the event kept here', async t => {
  const homes = await gossipHomes(t, ['admin', 'device'], { start: 'all' })
  // L0 started once writes its server certificates into its home; the broker below presents them.
  const l0 = await LoopbackL0.start({ home: homes.l0.dir })
  await l0.stop()
  const paths = serverCertificatePaths(homes.l0.dir, 'p256')
  const sockets: TLSSocket[] = []
  const subscribes: number[] = []
  const server = createServer({ cert: readFileSync(paths.cert), key: readFileSync(paths.key) }, socket => {
    sockets.push(socket)
    socket.on('error', () => undefined)
    socket.on('data', (chunk: Buffer) => {
      // Packet types in the first byte's high nibble (MQTT 3.1.1 §2.2.1): 1 CONNECT, 8 SUBSCRIBE, 12 PINGREQ.
      const type = chunk[0]! >> 4
      if (type === 1) socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00]))
      if (type === 8) subscribes.push(Date.now())
      if (type === 12) socket.write(Buffer.from([0xd0, 0x00]))
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    server.close()
  })
  const { port } = server.address() as AddressInfo
  const [admin, camera] = homes.writeHomes(`mqtts://127.0.0.1:${port}`)

  const started = Date.now()
  const run = await kin(
    ['revoke', '--home', admin!.home, camera!.cn, '--reason', 'lost', '--timeout', '3s', '--json'],
    {
      timeoutMs: 120_000,
    },
  )
  const took = Date.now() - started
  t.ok(subscribes.length > 0, 'the device logged in and subscribed')
  expectExit(t, run, 4, 'exit 4: recorded here, not sealed')
  t.match(lastJson(run.stdout), { ok: false, code: 'EVENT_PENDING', detail: { recorded: true, delivered: false } })
  t.ok(
    homeLedger(admin!.home).state.log.some(e => e.event.type === 'revoke'),
    "the revocation is in the admin's own ledger",
  )
  t.comment(`kin revoke took ${took} ms with --timeout 3s`)
})
