/** @module A byte-level guard in front of the MQTT parser: a packet announcing more than the hard limit closes the connection. */
import { Duplex } from 'node:stream'
import type { Socket } from 'node:net'

/**
 * Tracks MQTT fixed headers across chunks (MQTT 3.1.1 §2.2: one type byte, then the Remaining Length as 1–4
 * bytes of 7-bit groups, low group first) and reports the first packet whose Remaining Length exceeds `limit`.
 * The parser would otherwise buffer up to 256 MB per packet before anyone could look at it.
 */
export class FrameGuard {
  private readonly limit: number
  private phase: 'type' | 'length' | 'body' = 'type'
  private length = 0
  private multiplier = 1
  private remaining = 0

  constructor(limit: number) {
    this.limit = limit
  }

  /** Feeds bytes; returns the announced length of an over-limit (or malformed) packet, else undefined. */
  feed(chunk: Uint8Array): number | undefined {
    let i = 0
    while (i < chunk.length) {
      if (this.phase === 'body') {
        const n = Math.min(this.remaining, chunk.length - i)
        this.remaining -= n
        i += n
        if (this.remaining === 0) this.phase = 'type'
        continue
      }
      const byte = chunk[i++]!
      if (this.phase === 'type') {
        this.phase = 'length'
        this.length = 0
        this.multiplier = 1
        continue
      }
      this.length += (byte & 0x7f) * this.multiplier
      if (this.length > this.limit) return this.length
      if ((byte & 0x80) !== 0) {
        this.multiplier *= 128
        // §2.2.3: at most four length bytes.
        if (this.multiplier > 128 ** 3) return this.length
        continue
      }
      this.remaining = this.length
      this.phase = this.remaining === 0 ? 'type' : 'body'
    }
    return undefined
  }
}

/**
 * Wraps a socket in a Duplex that passes bytes through a FrameGuard; on a violation `onViolation` is told and the
 * connection is destroyed before the bytes reach the MQTT parser.
 */
export function guardedConnection(socket: Socket, limit: number, onViolation: (announced: number) => void): Duplex {
  const guard = new FrameGuard(limit)
  const conn = new Duplex({
    read() {
      socket.resume()
    },
    write(chunk: Buffer, _encoding, callback) {
      socket.write(chunk, err => callback(err ?? null))
    },
    final(callback) {
      socket.end(() => callback())
    },
    destroy(err, callback) {
      socket.destroy()
      callback(err)
    },
  })
  socket.on('data', (chunk: Buffer) => {
    const over = guard.feed(chunk)
    if (over !== undefined) {
      onViolation(over)
      conn.destroy()
      return
    }
    if (!conn.push(chunk)) socket.pause()
  })
  socket.on('end', () => conn.push(null))
  socket.on('error', err => conn.destroy(err))
  socket.on('close', () => conn.destroy())
  return conn
}
