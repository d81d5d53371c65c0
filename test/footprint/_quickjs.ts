/** @module dist/kin-core.js inside QuickJS (quickjs-emscripten): a memory- and stack-limited runtime with only ECMAScript globals. */
import { readFileSync } from 'node:fs'
import { getQuickJS, shouldInterruptAfterDeadline, type QuickJSContext, type QuickJSHandle, type QuickJSRuntime } from 'quickjs-emscripten'
import { ensureBuilt } from './_build.ts'

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

/** A value passed into the engine: bytes, strings, numbers, booleans, null, and arrays and plain objects of them (undefined properties are left out). */
export type VmInput = unknown

/** What a script run returned: its JSON value, or the error it threw (name, message, KinError code, cause's code). */
export type VmResult<T> = { ok: true; value: T } | { ok: false; name: string; message: string; code: string | undefined; causeCode: string | undefined }

/** QuickJS's own accounting (JS_ComputeMemoryUsage). */
export interface VmMemory {
  malloc_limit: number
  memory_used_size: number
  malloc_size: number
  obj_count: number
  atom_count: number
}

// Globals QuickJS adds beyond ECMAScript; removed so kin-core cannot lean on them unnoticed.
const NON_STANDARD_GLOBALS = ['InternalError']

/** kin-core loaded in a fresh QuickJS runtime, exposed as the global `kinCore`. */
export class CoreVm {
  readonly runtime: QuickJSRuntime
  readonly context: QuickJSContext
  readonly limits: CoreVmLimits

  private constructor(runtime: QuickJSRuntime, context: QuickJSContext, limits: CoreVmLimits) {
    this.runtime = runtime
    this.context = context
    this.limits = limits
  }

  /** Builds dist/kin-core.js if needed, starts a runtime under `limits` and evaluates the bundle as an ES module. */
  static async load(limits: CoreVmLimits = SMALL_DEVICE): Promise<CoreVm> {
    const source = readFileSync(await ensureBuilt('kin-core.js'), 'utf8')
    const QuickJS = await getQuickJS()
    const runtime = QuickJS.newRuntime()
    runtime.setMemoryLimit(limits.memory)
    runtime.setMaxStackSize(limits.stack)
    const context = runtime.newContext()
    const vm = new CoreVm(runtime, context, limits)
    try {
      vm.deadline()
      context.unwrapResult(context.evalCode(NON_STANDARD_GLOBALS.map(g => `delete globalThis.${g};`).join('') + 'undefined')).dispose()
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
    const usage = (this.runtime.context ?? this.context).dump(handle) as VmMemory
    handle.dispose()
    return usage
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
