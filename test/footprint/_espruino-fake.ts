/**
 * @module A stand-in Espruino for the shims' tests: Storage/StorageFile, the crypto library, the net and tls socket
 * modules, the MQTT module (EspruinoDocs modules/MQTT.js) and the globals (btoa, atob, E.hwRand, setTime, RegExp),
 * each behaving as the real interpreter and module were seen to behave on Espruino's Linux build, faults included:
 * RegExp without {m,n} and "?", publish(topic, message, opts) with opts an object, a CONNACK refusal reported as
 * "connected", an unreachable broker reported as a module "error", a failed TLS handshake raised as an uncaught
 * exception after the socket closed, and E.hwRand() repeating the same sequence after every boot. It runs a shim file as an Espruino module
 * (`exports`, `require`); espruino-real.test.ts runs the same files on a real interpreter.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { runInNewContext } from 'node:vm'
import ts from 'typescript'
import { ROOT } from './_build.ts'

/** Espruino StorageFile names: 27 characters at most (2v05 and later; the 28th numbers the chunks). */
export const STORAGE_FILE_NAME_MAX = 27

/** A StorageFile over a shared string store; writes of "\xFF" are refused, as erased flash would end the file there. */
class FakeStorageFile {
  private cursor = 0
  constructor(
    private readonly store: FakeStorage,
    private readonly name: string,
  ) {}

  write(data: string): void {
    if (typeof data !== 'string') throw new TypeError('StorageFile.write takes a string')
    if (data.includes('\xff')) throw new Error('StorageFile cannot hold character 255')
    const tear = this.store.tearAfter
    if (tear !== undefined) {
      this.store.tearAfter = undefined
      this.store.files.set(this.name, (this.store.files.get(this.name) ?? '') + data.slice(0, tear))
      throw new Error('simulated power loss')
    }
    this.store.files.set(this.name, (this.store.files.get(this.name) ?? '') + data)
  }

  read(length: number): string | undefined {
    const text = this.store.files.get(this.name) ?? ''
    if (this.cursor >= text.length) return undefined
    const out = text.slice(this.cursor, this.cursor + length)
    this.cursor += out.length
    return out
  }

  readLine(): string | undefined {
    const text = this.store.files.get(this.name) ?? ''
    if (this.cursor >= text.length) return undefined
    const end = text.indexOf('\n', this.cursor)
    const out = end < 0 ? text.slice(this.cursor) : text.slice(this.cursor, end + 1)
    this.cursor += out.length
    return out
  }

  erase(): void {
    this.store.files.delete(this.name)
  }

  getLength(): number {
    return (this.store.files.get(this.name) ?? '').length
  }
}

/** require("Storage"): open(name, mode) for StorageFiles, read/write/erase for whole files (separate entries, as in flash). */
export class FakeStorage {
  readonly files = new Map<string, string>()
  /** Whole files written with Storage.write. */
  readonly plain = new Map<string, string>()
  /** Characters of the next write that reach flash before a simulated power loss. */
  tearAfter: number | undefined
  /** When set, Storage.write returns false (flash full), as Espruino does. */
  full = false

  open(name: string, mode: 'r' | 'w' | 'a'): FakeStorageFile {
    if (name.length > STORAGE_FILE_NAME_MAX)
      throw new Error(`StorageFile name "${name}" is longer than ${STORAGE_FILE_NAME_MAX}`)
    if (!['r', 'w', 'a'].includes(mode)) throw new Error(`bad mode ${mode}`)
    return new FakeStorageFile(this, name)
  }

  read(name: string): string | undefined {
    return this.plain.get(name)
  }

  write(name: string, data: string): boolean {
    if (name.length > 28) throw new Error(`Storage name "${name}" is longer than 28`)
    if (this.full) return false
    this.plain.set(name, String(data))
    return true
  }

  erase(name: string): void {
    this.plain.delete(name)
  }
}

/** require("crypto").SHA256: bytes or a binary string in, a 32-byte ArrayBuffer out. */
export function fakeSha256(data: Uint8Array | string): ArrayBuffer {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : Buffer.from(data)
  const digest = createHash('sha256').update(bytes).digest()
  return digest.buffer.slice(digest.byteOffset, digest.byteOffset + digest.length)
}

/**
 * Espruino's RegExp (src/jswrap_regexp.c): characters, ".", classes, escapes, "*", "+", "^", "$", groups and "|".
 * It has no "?" and no {m,n}: both are read as plain characters, so a pattern using them fails to match where a
 * full engine would; a backreference throws. Modelled by escaping those characters before a full engine runs.
 */
export function espruinoRegExp(pattern: string, flags?: string): RegExp {
  let out = ''
  let inClass = false
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!
    if (c === '\\') {
      const next = pattern[i + 1] ?? ''
      if (/[1-9]/.test(next)) throw new Error('Backreferences not supported')
      out += c + next
      i++
    } else if (inClass) {
      if (c === ']') inClass = false
      out += c
    } else if (c === '[') {
      inClass = true
      out += c
    } else {
      out += c === '?' || c === '{' || c === '}' ? `\\${c}` : c
    }
  }
  return new RegExp(out, flags)
}

/** `source` with every regular expression literal turned into a call of Espruino's RegExp (`__espruinoRegExp`). */
function withEspruinoRegExps(fileName: string, source: string): string {
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS)
  const found: { start: number; end: number; text: string }[] = []
  const visit = (node: ts.Node): void => {
    if (ts.isRegularExpressionLiteral(node)) {
      const text = node.text
      const close = text.lastIndexOf('/')
      found.push({
        start: node.getStart(file),
        end: node.end,
        text: `__espruinoRegExp(${JSON.stringify(text.slice(1, close))}, ${JSON.stringify(text.slice(close + 1))})`,
      })
    }
    ts.forEachChild(node, visit)
  }
  visit(file)
  let out = source
  for (const f of found.reverse()) out = out.slice(0, f.start) + f.text + out.slice(f.end)
  return out
}

/**
 * E.hwRand() on the Linux build: glibc's unseeded rand(), the same sequence after every boot. Modelled by a fixed
 * linear congruential sequence restarted at each boot.
 */
export function bootRandom(): () => number {
  let state = 12345
  return () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0
    return state & 0x7fffffff
  }
}

type Listener = (...args: unknown[]) => void

/** Espruino objects carry on/emit; sockets and the MQTT module rely on them. */
class Emitter {
  private readonly listeners = new Map<string, Listener[]>()
  on(event: string, listener: Listener): void {
    this.listeners.set(event, [...(this.listeners.get(event) ?? []), listener])
  }
  emit(event: string, ...args: unknown[]): void {
    for (const l of this.listeners.get(event) ?? []) l(...args)
  }
}

/** mbedTLS's error when the broker aborts the handshake (MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE, -0x7780). */
export const TLS_HANDSHAKE_FAILED = '-0x7780'

/**
 * A socket from require("net") or require("tls"). The broker reads the module's CONNECT from it and answers a
 * CONNACK as bytes ("\x20\x02\x00" + return code), closing the socket after a refusal as MQTT 3.1.1 requires.
 * A TLS handshake the broker aborts (it wants a client certificate the device did not present) goes as on the
 * Linux build: the connect callback runs, what was written fails with "unsent data", the socket closes, and then
 * the interpreter's idle loop raises "mbedtls_ssl_handshake returned -0x7780" as an uncaught exception.
 */
export class FakeSocket extends Emitter {
  open = true
  private wrote = false
  constructor(
    readonly env: FakeEspruino,
    readonly tls: boolean,
  ) {
    super()
  }
  /** Called once the TCP connection is up. */
  connected(): void {
    if (!this.tls || !this.env.broker.tlsFails) return
    this.env.later(() => {
      this.close(this.wrote ? { code: -8, message: 'unsent data' } : undefined)
      this.env.later(() =>
        this.env.raise(new Error(`InternalError: mbedtls_ssl_handshake returned ${TLS_HANDSHAKE_FAILED}`)),
      )
    })
  }
  write(data: string): void {
    if (!this.open) throw new Error('Socket is closed')
    this.wrote = true
    if (this.tls && this.env.broker.tlsFails) return
    if (data.charCodeAt(0) >> 4 !== 1) return
    const code = this.env.broker.refuse ?? 0
    this.env.later(() => {
      if (!this.open) return
      this.emit('data', `\x20\x02\x00${String.fromCharCode(code)}`)
      if (code !== 0) this.env.later(() => this.close(undefined))
    })
  }
  end(): void {
    if (this.open) this.env.later(() => this.close(undefined))
  }
  /** The connection ends: an error first if there was one, then "end" and "close", as Espruino's sockets do. */
  close(error: { code: number; message: string } | undefined): void {
    if (!this.open) return
    this.open = false
    if (error !== undefined) this.emit('error', error)
    this.emit('end')
    this.emit('close')
  }
}

/** require("net") and require("tls"): connect throws synchronously when no socket can be made (Linux: err 111). */
function socketModule(
  env: FakeEspruino,
  tls: boolean,
): { connect(options: { host: string; port: number }, onConnect: () => void): FakeSocket } {
  return {
    connect: (_options, onConnect) => {
      if (!env.broker.up) throw new Error('Unable to create socket')
      const socket = new FakeSocket(env, tls)
      env.later(() => {
        if (!socket.open) return
        onConnect()
        socket.connected()
      })
      return socket
    },
  }
}

/**
 * One client of the MQTT module, as EspruinoDocs modules/MQTT.js behaves: it reads the CONNACK return code at
 * pData.charCodeAt(3), past the end of the 2-byte CONNACK, so every CONNACK counts as accepted; publish takes
 * { qos, retain, dup } and anything else sends QoS 0; a socket it cannot open is an "error" then "disconnected".
 */
export class FakeMqttClient extends Emitter {
  connected = false
  client: FakeSocket | false = false
  readonly subscriptions = new Set<string>()
  private connectTimer: { cancelled: boolean } | undefined
  constructor(
    readonly env: FakeEspruino,
    readonly server: string,
    readonly options: Record<string, unknown>,
  ) {
    super()
  }
  connect(client?: FakeSocket): void {
    const onConnect = (socket: FakeSocket): void => {
      this.client = socket
      socket.write('\x10CONNECT')
      this.connectTimer = this.env.timeout(() => {
        this.connectTimer = undefined
        this.emit('disconnected')
        this.disconnect()
      }, 10_000)
      socket.on('data', (data: unknown) => this.packet(String(data)))
      socket.on('end', () => this.socketClosed())
    }
    if (client !== undefined) {
      onConnect(client)
      return
    }
    try {
      const socket: FakeSocket = socketModule(this.env, false).connect(
        { host: this.server, port: Number(this.options.port ?? 1883) },
        () => onConnect(socket),
      )
    } catch (e) {
      this.client = false
      this.emit('error', (e as Error).message)
      this.emit('disconnected')
    }
  }
  private packet(data: string): void {
    if (data.charCodeAt(0) >> 4 !== 2) return
    if (this.connectTimer !== undefined) this.connectTimer.cancelled = true
    this.connectTimer = undefined
    const pData = data.slice(2, 4)
    const returnCode = pData.charCodeAt(3) | 0
    if (returnCode === 0) {
      this.connected = true
      this.env.broker.clients.add(this)
      this.emit('connected')
      this.emit('connect')
    } else {
      this.emit('error', `Connection refused, ${returnCode}`)
    }
  }
  private socketClosed(): void {
    this.env.broker.clients.delete(this)
    if (this.connected) {
      this.connected = false
      this.client = false
      this.emit('disconnected')
      this.emit('close')
    }
  }
  subscribe(topic: string, _opts?: { qos?: number }): void {
    if (!this.client) return
    this.subscriptions.add(topic)
  }
  publish(topic: string, message: string, opts?: unknown): void {
    if (!this.client) return
    if (typeof message !== 'string') throw new TypeError('the MQTT module sends strings')
    const o = (opts ?? {}) as { qos?: number }
    this.env.broker.published.push({ topic, message, qos: o.qos || 0 })
    this.env.later(() => this.env.broker.route(topic, message))
  }
  disconnect(): void {
    if (!this.client) return
    this.client.end()
    this.client = false
  }
  /** The broker drops this client (network loss). */
  drop(): void {
    if (this.client) this.client.close(undefined)
  }
}

/** An exact-topic broker behind the fake sockets, plus hooks for Node-side subscribers. */
export class FakeBroker {
  up = true
  /** A CONNACK return code (1 to 5) the broker answers logins with; undefined accepts. */
  refuse: number | undefined
  /** TLS handshakes fail (the broker's certificate does not chain to the device's `ca`). */
  tlsFails = false
  readonly clients = new Set<FakeMqttClient>()
  readonly published: { topic: string; message: string; qos: number }[] = []
  readonly nodeSubscribers = new Map<string, (message: string) => void>()

  route(topic: string, message: string): void {
    for (const c of this.clients)
      if (c.subscriptions.has(topic)) c.emit('publish', { topic, message, dup: 0, qos: 1, retain: 0 })
    this.nodeSubscribers.get(topic)?.(message)
  }

  /** A Node-side party (the verifier) publishing into the broker. */
  publishFromNode(topic: string, message: string): void {
    this.route(topic, message)
  }
}

/** What a loaded shim sees as Espruino. */
export interface FakeEspruino {
  storage: FakeStorage
  broker: FakeBroker
  /** Milliseconds the fake clock shows; tests move it. */
  clockMs: number
  /** Seconds passed to setTime(). */
  setTimes: number[]
  /** E.hwRand() of this boot. */
  hwRand: () => number
  /** Delays asked of setTimeout, in order; each timer fires after at most `timerCapMs` real milliseconds. */
  timerDelays: number[]
  timerCapMs: number
  /** Exceptions that escaped to the idle loop with no uncaughtException listener (Espruino prints "Uncaught ..."). */
  uncaught: string[]
  /** What print() wrote. */
  printed: string[]
  /** process.on('uncaughtException') listeners. */
  uncaughtListeners: ((e: unknown) => void)[]
  /** An exception reaching the idle loop: to the listeners if any, else reported as uncaught. */
  raise(e: unknown): void
  /** Runs `fn` soon, as the interpreter's idle loop would, catching what it throws into `uncaught`. */
  later(fn: () => void): void
  /** setTimeout as the interpreter runs it (delays recorded, capped by timerCapMs). */
  timeout(fn: () => void, ms: number): { cancelled: boolean }
}

/** A fresh stand-in Espruino (first boot). */
export function fakeEspruino(): FakeEspruino {
  return bootEspruino(new FakeStorage(), new FakeBroker())
}

/** The same board after a reboot: flash (Storage) and the network stay, the clock and E.hwRand() start over. */
export function rebootEspruino(env: FakeEspruino): FakeEspruino {
  return bootEspruino(env.storage, env.broker)
}

function bootEspruino(storage: FakeStorage, broker: FakeBroker): FakeEspruino {
  const env: FakeEspruino = {
    storage,
    broker,
    clockMs: 0,
    setTimes: [],
    hwRand: bootRandom(),
    timerDelays: [],
    timerCapMs: 60_000,
    uncaught: [],
    uncaughtListeners: [],
    printed: [],
    raise: e => {
      if (env.uncaughtListeners.length === 0) {
        env.uncaught.push(String(e))
        return
      }
      for (const l of [...env.uncaughtListeners]) l(e)
    },
    later: fn => {
      setImmediate(() => {
        try {
          fn()
        } catch (e) {
          env.raise(e)
        }
      })
    },
    timeout: (fn, ms) => {
      const handle = { cancelled: false }
      env.timerDelays.push(ms)
      setTimeout(
        () => {
          if (!handle.cancelled) env.later(fn)
        },
        Math.min(ms, env.timerCapMs),
      ).unref()
      return handle
    },
  }
  return env
}

/** Runs firmware-shims/espruino/<file> as an Espruino module in `env` and returns its exports. */
export function loadShim<T>(file: string, env: FakeEspruino): T {
  const source = withEspruinoRegExps(file, readFileSync(join(ROOT, 'firmware-shims/espruino', file), 'utf8'))
  const modules: Record<string, unknown> = {
    Storage: env.storage,
    crypto: { SHA256: fakeSha256 },
    MQTT: { create: (server: string, options: Record<string, unknown>) => new FakeMqttClient(env, server, options) },
    net: socketModule(env, false),
    tls: socketModule(env, true),
  }
  const sandbox = {
    exports: {} as Record<string, unknown>,
    require: (name: string) => {
      if (!(name in modules)) throw new Error(`Module ${name} not found`)
      return modules[name]
    },
    btoa: (s: string) => Buffer.from(s, 'latin1').toString('base64'),
    atob: (s: string) => Buffer.from(s, 'base64').toString('latin1'),
    E: {
      hwRand: () => env.hwRand(),
      toFlatString: (s: string) => s,
      toString: (data: Uint8Array | ArrayBuffer) =>
        Buffer.from(data instanceof ArrayBuffer ? new Uint8Array(data) : data).toString('latin1'),
    },
    process: {
      on: (event: string, l: (e: unknown) => void) => {
        if (event === 'uncaughtException') env.uncaughtListeners.push(l)
      },
      removeListener: (event: string, l: (e: unknown) => void) => {
        const at = env.uncaughtListeners.indexOf(l)
        if (event === 'uncaughtException' && at >= 0) env.uncaughtListeners.splice(at, 1)
      },
    },
    print: (text: string) => {
      env.printed.push(String(text))
    },
    setTime: (seconds: number) => {
      env.setTimes.push(seconds)
      env.clockMs = seconds * 1000
    },
    Date: { now: () => env.clockMs },
    setTimeout: (fn: () => void, ms: number) => env.timeout(fn, ms),
    clearTimeout: (handle: { cancelled: boolean } | undefined) => {
      if (handle !== undefined) handle.cancelled = true
    },
    __espruinoRegExp: espruinoRegExp,
    RegExp: espruinoRegExp,
    Promise,
    Uint8Array,
    DataView,
    Error,
    String,
    Math,
    parseInt,
    Object,
  }
  runInNewContext(source, sandbox, { filename: file })
  return sandbox.exports as T
}
