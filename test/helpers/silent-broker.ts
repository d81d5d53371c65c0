/** @module A broker that logs devices in and then never answers a SUBSCRIBE (a NATS cluster after a node loss did that). */
import { readFileSync } from 'node:fs'
import { createServer, type TLSSocket } from 'node:tls'
import type { AddressInfo } from 'node:net'
import type { Test } from 'tap'
import { serverCertificatePaths } from '../../broker/server-certificates.ts'
import { LoopbackL0 } from '../../sim/live/l0.ts'

/** The silent broker's address and what it saw. */
export interface SilentBroker {
  url: string
  /** When each SUBSCRIBE arrived (ms since the epoch). */
  subscribes: number[]
}

/**
 * A TLS server on 127.0.0.1 presenting L0's own server certificate (so devices' and L0's services' checks pass): it
 * answers CONNECT with CONNACK 0 and PINGREQ with PINGRESP, and nothing else. L0 is started once on `l0Home` to write
 * its server certificates there. Closed after the test.
 */
export async function silentBroker(t: Test, l0Home: string): Promise<SilentBroker> {
  const l0 = await LoopbackL0.start({ home: l0Home })
  await l0.stop()
  const paths = serverCertificatePaths(l0Home, 'p256')
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
  return { url: `mqtts://127.0.0.1:${(server.address() as AddressInfo).port}`, subscribes }
}
