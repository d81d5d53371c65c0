/** @module A TCP port free on 127.0.0.1, for a broker that must be told its port (Mosquitto, nats-server). */
import { createServer } from 'node:net'

/** A port the OS chose for a listener on 127.0.0.1, free again once returned. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}
