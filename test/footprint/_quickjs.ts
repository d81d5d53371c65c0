/** @module dist/kin-core.js inside QuickJS (quickjs-emscripten): a memory- and stack-limited runtime with only ECMAScript globals. */
import { readFileSync } from 'node:fs'
import {
  newQuickJSWASMModuleFromVariant,
  newVariant,
  RELEASE_SYNC,
  shouldInterruptAfterDeadline,
  type QuickJSContext,
  type QuickJSHandle,
  type QuickJSRuntime,
} from 'quickjs-emscripten'
import { ensureBuilt } from './_build.ts'

// The WebAssembly API of Node, which this project's compiler settings (lib ES2022, @types/node) do not declare.
interface WasmMemory {
  readonly buffer: ArrayBuffer
}
const { WebAssembly } = globalThis as unknown as {
  WebAssembly: { Memory: new (descriptor: { initial: number; maximum: number }) => WasmMemory }
}

/** The limits a QuickJS runtime runs kin-core under. */
export interface CoreVmLimits {
  /** Bytes the engine may allocate (QuickJS's malloc limit). */
  memory: number
  /** Bytes of native stack the interpreter may use. */
  stack: number
  /** Milliseconds any one evaluation may run before it is interrupted. */
  deadlineMs?: number
}

/** The design's target: 1 MiB of heap and 256 KiB of stack. */
export const SMALL_DEVICE: CoreVmLimits = { memory: 1024 * 1024, stack: 256 * 1024 }

/**
 * The heap peak `heapPeak` may reach: the design's 1 MiB. The peak is kin-core's load (about 9.8 bytes per byte of
 * source): 1,110,016 bytes while kin-core carried the whole of tweetnacl, 950,272 with its own Ed25519 verifier
 * (agent/portable/ed25519-verify.ts) and the compact (version 2) bundle reader.
 */
export const HEAP_PEAK_BUDGET = SMALL_DEVICE.memory

/** A value passed into the engine: bytes, strings, numbers, booleans, null, and arrays and plain objects of them (undefined properties are left out). */
export type VmInput = unknown

/** What a script run returned: its JSON value, or the error it threw (name, message, KinError code, cause's code). */
export type VmResult<T> =
  | { ok: true; value: T }
  | { ok: false; name: string; message: string; code: string | undefined; causeCode: string | undefined }

/** QuickJS's own accounting (JS_ComputeMemoryUsage), and the allocator's high-water mark. */
export interface VmMemory {
  malloc_limit: number
  /** QuickJS's estimate of the live heap: atoms, strings, objects, shapes, bytecode, arrays, buffers. */
  memory_used_size: number
  malloc_count: number
  obj_count: number
  atom_count: number
  /**
   * Bytes the wasm heap grew to beyond what an empty runtime and context take: the peak of everything done in this
   * VM so far, kin-core's source copy and compilation included (see `heapTop`).
   */
  heapPeak: number
}

/**
 * The allocator's high-water mark in a wasm memory. Each VM gets a memory of its own, zero-filled; emscripten's
 * heap grows upward from the end of the C stack, its allocator never gives memory back to the system, and it writes
 * a chunk header at the top of what it has taken. So the last non-zero word is the highest address the heap ever
 * reached, freed memory included: a peak, not a current size.
 */
function heapTop(memory: WasmMemory): number {
  const words = new Uint32Array(memory.buffer)
  for (let i = words.length - 1; i >= 0; i--) if (words[i] !== 0) return (i + 1) * 4
  return 0
}

/*
 * Why the heap is measured from the outside. QuickJS's memory limit (JS_SetMemoryLimit) counts the bytes it
 * allocates with malloc_usable_size(), which the emscripten build does not have (dumpMemoryUsage says so): there it
 * counts 8 bytes of overhead per live allocation plus the size of the one being made. The limit is still set (a
 * runaway allocation fails), but what bounds kin-core's footprint in these tests is `heapPeak`.
 */

// Globals QuickJS adds beyond ECMAScript; removed so kin-core cannot lean on them unnoticed.
const NON_STANDARD_GLOBALS = ['InternalError']

/** kin-core loaded in a fresh QuickJS runtime, exposed as the global `kinCore`. */
export class CoreVm {
  readonly runtime: QuickJSRuntime
  readonly context: QuickJSContext
  readonly limits: CoreVmLimits
  private readonly wasmMemory: WasmMemory
  private readonly baseline: number

  private constructor(runtime: QuickJSRuntime, context: QuickJSContext, limits: CoreVmLimits, wasmMemory: WasmMemory) {
    this.runtime = runtime
    this.context = context
    this.limits = limits
    this.wasmMemory = wasmMemory
    this.baseline = heapTop(wasmMemory)
  }

  /** Builds dist/kin-core.js if needed, starts a runtime under `limits` and evaluates the bundle as an ES module. */
  static async load(limits: CoreVmLimits = SMALL_DEVICE): Promise<CoreVm> {
    const source = readFileSync(await ensureBuilt('kin-core.js'), 'utf8')
    // 256 pages (16 MiB) is the least the module accepts; the heap inside it is what `heapPeak` measures.
    const wasmMemory = new WebAssembly.Memory({ initial: 256, maximum: 32768 })
    const QuickJS = await newQuickJSWASMModuleFromVariant(newVariant(RELEASE_SYNC, { wasmMemory: wasmMemory as never }))
    const runtime = QuickJS.newRuntime()
    runtime.setMemoryLimit(limits.memory)
    runtime.setMaxStackSize(limits.stack)
    const context = runtime.newContext()
    const vm = new CoreVm(runtime, context, limits, wasmMemory)
    try {
      vm.deadline()
      context
        .unwrapResult(context.evalCode(NON_STANDARD_GLOBALS.map(g => `delete globalThis.${g};`).join('') + 'undefined'))
        .dispose()
      const exports = context.unwrapResult(context.evalCode(source, 'kin-core.js', { type: 'module' }))
      context.setProp(context.global, 'kinCore', exports)
      exports.dispose()
    } catch (e) {
      vm.dispose()
      throw e
    }
    return vm
  }

  private deadline(): void {
    this.runtime.setInterruptHandler(shouldInterruptAfterDeadline(Date.now() + (this.limits.deadlineMs ?? 60_000)))
  }

  private toHandle(value: VmInput): QuickJSHandle {
    const ctx = this.context
    if (value instanceof Uint8Array) {
      const buffer = ctx.newArrayBuffer(value.slice().buffer)
      const made = ctx.unwrapResult(ctx.evalCode('(b) => new Uint8Array(b)'))
      const array = ctx.unwrapResult(ctx.callFunction(made, ctx.undefined, buffer))
      made.dispose()
      buffer.dispose()
      return array
    }
    if (Array.isArray(value)) {
      if (value.length > 100_000) throw new RangeError('array too long to pass into the engine')
      const array = ctx.newArray()
      value.forEach((item, i) => {
        const h = this.toHandle(item)
        ctx.setProp(array, i, h)
        h.dispose()
      })
      return array
    }
    if (value !== null && typeof value === 'object') {
      const object = ctx.newObject()
      for (const [key, item] of Object.entries(value)) {
        if (item === undefined) continue
        const h = this.toHandle(item)
        ctx.setProp(object, key, h)
        h.dispose()
      }
      return object
    }
    if (typeof value === 'string') return ctx.newString(value)
    if (typeof value === 'number') return ctx.newNumber(value)
    if (typeof value === 'boolean') return value ? ctx.true : ctx.false
    if (value === null) return ctx.null
    throw new TypeError(`cannot pass a ${typeof value} into the engine`)
  }

  /**
   * Runs `body` (a function body that may `return` JSON-able values) with `input` bound to the global `input`, and
   * returns its value or the error it threw. Uint8Arrays cross as bytes; use `kinCore` for the API.
   */
  run<T>(body: string, input: Record<string, VmInput> = {}): VmResult<T> {
    const ctx = this.context
    const handle = this.toHandle(input)
    ctx.setProp(ctx.global, 'input', handle)
    handle.dispose()
    this.deadline()
    const script = `(() => { try { return { ok: true, value: (() => { ${body} })() } } catch (e) {
      return { ok: false, name: String(e && e.name), message: String(e && e.message), code: e && e.code, causeCode: e && e.cause && e.cause.code }
    } })()`
    const result = ctx.evalCode(script, 'run.js')
    if (result.error) {
      // Out of memory or interrupted: the engine could not even build the error object.
      const dumped = ctx.dump(result.error) as { name?: string; message?: string } | string
      result.error.dispose()
      const name = typeof dumped === 'object' && dumped !== null ? String(dumped.name) : 'Error'
      const message = typeof dumped === 'object' && dumped !== null ? String(dumped.message) : String(dumped)
      return { ok: false, name, message, code: undefined, causeCode: undefined }
    }
    const value = ctx.dump(result.value) as VmResult<T>
    result.value.dispose()
    return value
  }

  /** Like `run`, but throws when the script threw. */
  value<T>(body: string, input: Record<string, VmInput> = {}): T {
    const r = this.run<T>(body, input)
    if (!r.ok) throw new Error(`QuickJS: ${r.name}: ${r.message}${r.code ? ` [${r.code}]` : ''}`)
    return r.value
  }

  /** QuickJS's memory accounting right now. */
  memory(): VmMemory {
    const handle = this.runtime.computeMemoryUsage()
    const usage = (this.runtime.context ?? this.context).dump(handle) as Omit<VmMemory, 'heapPeak'>
    handle.dispose()
    return { ...usage, heapPeak: heapTop(this.wasmMemory) - this.baseline }
  }

  /** The global property names the engine offers (after removing QuickJS's own additions). */
  globals(): string[] {
    return this.value<string[]>('return Object.getOwnPropertyNames(globalThis)')
  }

  /** Frees the context and the runtime. */
  dispose(): void {
    this.context.dispose()
    this.runtime.dispose()
  }
}
