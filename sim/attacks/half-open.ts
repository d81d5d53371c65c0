/** @module A bounded flood of half-open connections: raw TCP sockets that send nothing, or the first bytes of a ClientHello, and then wait. */
import { connect, type Socket } from 'node:net'

/**
 * The start of a TLS 1.2 ClientHello (RFC 8446 §5.1 record header, §4.1.2 handshake header, legacy_version and half of
 * the random): the record announces 200 bytes, 43 arrive, so the server's TLS stack waits for the rest.
 */
export const PARTIAL_CLIENT_HELLO: Uint8Array = new Uint8Array([
  0x16,
  0x03,
  0x01,
  0x00,
  0xc8,
  0x01,
  0x00,
  0x00,
  0xc4,
  0x03,
  0x03,
  ...new Array<number>(32).fill(0x5a),
])

/** How a flood's sockets open: silent ones, partial ClientHellos, or every other one each. */
export type HalfOpenKind = 'silent' | 'partial-hello' | 'mixed'

/** A flood in flight. */
export interface HalfOpenFlood {
  /** Sockets opened so far (each counted once it connected). */
  readonly opened: number
  /** Of those, sockets the server has closed. */
  readonly closedByServer: number
  /** Resolves once every socket opened has been closed by the server, or after `ms` (false then). */
  allClosed(ms: number): Promise<boolean>
  /** Destroys every socket still open (the attacker leaves). */
  stop(): void
}

/** Options of openHalfOpen. */
export interface HalfOpenOptions {
  host: string
  port: number
  /** Sockets to open in all (bounded by design). */
  count: number
  kind?: HalfOpenKind
  /** Sockets opened at once before waiting for them to connect (default 16). */
  batch?: number
}

function openOne(host: string, port: number, hello: boolean): Promise<Socket | undefined> {
  return new Promise(resolve => {
    const socket = connect({ host, port })
    socket.on('error', () => undefined)
    socket.once('connect', () => {
      if (hello) socket.write(PARTIAL_CLIENT_HELLO)
      resolve(socket)
    })
    socket.once('close', () => resolve(undefined))
  })
}

/**
 * Opens `count` half-open connections to host:port, `batch` at a time, and keeps them open: the attacker never
 * completes a handshake nor closes a socket itself. Resolves once all were opened (a socket the server refused at
 * once is not counted).
 */
export async function openHalfOpen(options: HalfOpenOptions): Promise<HalfOpenFlood> {
  const kind = options.kind ?? 'mixed'
  const batch = options.batch ?? 16
  const sockets: Socket[] = []
  let closed = 0
  const waiters: Array<() => void> = []
  for (let i = 0; i < options.count; i += batch) {
    const n = Math.min(batch, options.count - i)
    const opened = await Promise.all(
      Array.from({ length: n }, (_, j) =>
        openOne(options.host, options.port, kind === 'partial-hello' || (kind === 'mixed' && (i + j) % 2 === 1)),
      ),
    )
    for (const s of opened) {
      if (s === undefined) continue
      sockets.push(s)
      if (s.destroyed) closed++
      else
        s.once('close', () => {
          closed++
          if (closed === sockets.length) for (const w of waiters.splice(0)) w()
        })
    }
  }
  return {
    get opened() {
      return sockets.length
    },
    get closedByServer() {
      return closed
    },
    allClosed: ms =>
      new Promise(resolve => {
        if (closed === sockets.length) return resolve(true)
        const timer = setTimeout(() => resolve(false), ms)
        waiters.push(() => {
          clearTimeout(timer)
          resolve(true)
        })
      }),
    stop: () => {
      for (const s of sockets) s.destroy()
    },
  }
}
