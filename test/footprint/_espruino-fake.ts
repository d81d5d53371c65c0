/**
 * @module A stand-in Espruino for the shims' tests: Storage/StorageFile, the crypto library, the MQTT module and the
 * globals (btoa, atob, E.hwRand, setTime) with the behaviour Espruino's reference documents, and a loader that runs
 * a shim file as an Espruino module (`exports`, `require`). It shows the shims' logic is right; it is not Espruino.
 */
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { runInNewContext } from 'node:vm'
import { ROOT } from './_build.ts'

/** Espruino StorageFile names: 27 characters at most (2v05 and later; the 28th numbers the chunks). */
export const STORAGE_FILE_NAME_MAX = 27

/** A StorageFile over a shared string store; writes of "\xFF" are refused, as erased flash would end the file there. */
class FakeStorageFile {
  private cursor = 0
  constructor(private readonly store: FakeStorage, private readonly name: string) {}

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

/** require("Storage"): open(name, mode) only, which is all StorageFile use needs. */
export class FakeStorage {
  readonly files = new Map<string, string>()
  /** Characters of the next write that reach flash before a simulated power loss. */
  tearAfter: number | undefined

  open(name: string, mode: 'r' | 'w' | 'a'): FakeStorageFile {
    if (name.length > STORAGE_FILE_NAME_MAX) throw new Error(`StorageFile name "${name}" is longer than ${STORAGE_FILE_NAME_MAX}`)
    if (!['r', 'w', 'a'].includes(mode)) throw new Error(`bad mode ${mode}`)
    return new FakeStorageFile(this, name)
  }
}

/** require("crypto").SHA256: bytes or a binary string in, a 32-byte ArrayBuffer out. */
export function fakeSha256(data: Uint8Array | string): ArrayBuffer {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : Buffer.from(data)
  const digest = createHash('sha256').update(bytes).digest()
  return digest.buffer.slice(digest.byteOffset, digest.byteOffset + digest.length)
}

type Listener = (...args: unknown[]) => void

/** Espruino objects carry on/emit; the MQTT module relies on them. */
class Emitter {
  private readonly listeners = new Map<string, Listener[]>()
  on(event: string, listener: Listener): void {
    this.listeners.set(event, [...(this.listeners.get(event) ?? []), listener])
  }
  emit(event: string, ...args: unknown[]): void {
    for (const l of this.listeners.get(event) ?? []) l(...args)
  }
}

/** One client of the fake MQTT module. */
export class FakeMqttClient extends Emitter {
  connected = false
  readonly subscriptions = new Set<string>()
  constructor(readonly broker: FakeBroker, readonly server: string, readonly options: Record<string, unknown>) {
    super()
  }
  connect(): void {
    setImmediate(() => {
      if (!this.broker.up) { this.emit('disconnected'); return }
      if (this.broker.refuse !== undefined) { this.emit('error', `Connection refused, ${this.broker.refuse}`); return }
      this.connected = true
      this.broker.clients.add(this)
      this.emit('connected')
      this.emit('connect')
    })
  }
  subscribe(topic: string): void {
    this.subscriptions.add(topic)
  }
  publish(topic: string, message: string, qos: number): void {
    if (typeof message !== 'string') throw new TypeError('the MQTT module sends strings')
    this.broker.published.push({ topic, message, qos })
    setImmediate(() => this.broker.route(topic, message))
  }
  disconnect(): void {
    this.connected = false
    this.broker.clients.delete(this)
  }
  /** The broker drops this client (network loss). */
  drop(): void {
    this.connected = false
    this.broker.clients.delete(this)
    this.emit('disconnected')
    this.emit('close')
  }
}

/** An exact-topic broker behind require("MQTT"), plus hooks for Node-side subscribers. */
export class FakeBroker {
  up = true
  refuse: string | undefined
  readonly clients = new Set<FakeMqttClient>()
  readonly published: { topic: string; message: string; qos: number }[] = []
  readonly nodeSubscribers = new Map<string, (message: string) => void>()

  /** The module object `require("MQTT")` returns. */
  module(): { create(server: string, options: Record<string, unknown>): FakeMqttClient } {
    return { create: (server, options) => new FakeMqttClient(this, server, options) }
  }

  route(topic: string, message: string): void {
    for (const c of this.clients) if (c.subscriptions.has(topic)) c.emit('publish', { topic, message, dup: 0, qos: 1, retain: 0 })
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
}

/** A fresh stand-in Espruino. */
export function fakeEspruino(): FakeEspruino {
  return { storage: new FakeStorage(), broker: new FakeBroker(), clockMs: 0, setTimes: [] }
}

/** Runs firmware-shims/espruino/<file> as an Espruino module in `env` and returns its exports. */
export function loadShim<T>(file: string, env: FakeEspruino): T {
  const source = readFileSync(join(ROOT, 'firmware-shims/espruino', file), 'utf8')
  const modules: Record<string, unknown> = {
    Storage: env.storage,
    crypto: { SHA256: fakeSha256 },
    MQTT: env.broker.module(),
  }
  const sandbox = {
    exports: {} as Record<string, unknown>,
    require: (name: string) => {
      if (!(name in modules)) throw new Error(`Module ${name} not found`)
      return modules[name]
    },
    btoa: (s: string) => Buffer.from(s, 'latin1').toString('base64'),
    atob: (s: string) => Buffer.from(s, 'base64').toString('latin1'),
    E: { hwRand: () => randomBytes(4).readInt32LE(0) },
    setTime: (seconds: number) => { env.setTimes.push(seconds); env.clockMs = seconds * 1000 },
    Date: { now: () => env.clockMs },
    Promise, setTimeout, clearTimeout, Uint8Array, Error, String, Math, parseInt, RegExp, Object,
  }
  runInNewContext(source, sandbox, { filename: file })
  return sandbox.exports as T
}
