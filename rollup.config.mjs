/**
 * @module Rollup builds for devices: `dist/kin-device.mjs` (the `kin` CLI in one file for Node on a Pi-class
 * board) and `dist/kin-core.js` (the engine-neutral verifier for small engines such as QuickJS). Each build
 * prints its minified and gzipped size and the modules that take the room, and writes them to
 * `dist/<file>.sizes.json`; test/footprint/budgets.test.ts holds them to BUDGETS. See docs/DEVICES.md.
 */
import { builtinModules } from 'node:module'
import { gzipSync } from 'node:zlib'
import ts from 'typescript'
import { nodeResolve } from '@rollup/plugin-node-resolve'
import commonjs from '@rollup/plugin-commonjs'
import json from '@rollup/plugin-json'
import terser from '@rollup/plugin-terser'

/** Size budgets in bytes (minified, and gzipped at level 9); docs/DEVICES.md states and explains them. */
export const BUDGETS = {
  'kin-core.js': { minified: 150 * 1024, gzipped: 48 * 1024 },
  'kin-device.mjs': { minified: 1024 * 1024, gzipped: 300 * 1024 },
}

const BUILTINS = new Set(builtinModules.flatMap(m => [m, `node:${m}`]))
const isBuiltin = id => id.startsWith('node:') || BUILTINS.has(id)


// TypeScript without a second toolchain: each .ts file is transpiled on its own (the project compiles with
// isolatedModules and verbatimModuleSyntax, so no file needs another's types to be emitted); `npm run build`
// type-checks the whole project with tsc first.
function typescript(target) {
  return {
    name: 'kin-typescript',
    transform(code, id) {
      if (!id.endsWith('.ts') || id.includes('/node_modules/')) return null
      const out = ts.transpileModule(code, {
        fileName: id,
        compilerOptions: {
          target, module: ts.ModuleKind.ESNext, verbatimModuleSyntax: true, useDefineForClassFields: true,
          sourceMap: true, inlineSources: true,
        },
      })
      const map = JSON.parse(out.sourceMapText)
      return { code: out.outputText.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n'), map }
    },
  }
}

// A build that must never contain some modules fails loudly instead of shipping them: `test` rules look at each
// import as it is resolved, `rendered` rules at the modules that survive tree-shaking into the output.
function forbid(label, rules) {
  return {
    name: `kin-forbid-${label}`,
    resolveId(source, importer) {
      for (const rule of rules) {
        if (rule.test?.(source, importer)) this.error(`${label}: ${rule.why} ("${source}" imported by ${importer ?? 'the entry'})`)
      }
      return null
    },
    generateBundle(_options, bundle) {
      for (const chunk of Object.values(bundle)) {
        if (chunk.type !== 'chunk') continue
        const imports = chunk.imports.concat(chunk.dynamicImports)
        const self = rules.find(r => r.selfContained)
        if (self && imports.length > 0) this.error(`${label}: ${self.why} (it imports ${imports.join(', ')})`)
        for (const [id, m] of Object.entries(chunk.modules)) {
          const rule = m.renderedLength > 0 && rules.find(r => r.rendered?.test(id))
          if (rule) this.error(`${label}: ${rule.why} (${id} is in the output)`)
        }
      }
    },
  }
}

// The device bundle's entry: what bin/kin.mjs does, without tsx.
const DEVICE_ENTRY = '\0kin-device-entry'
function deviceEntry() {
  return {
    name: 'kin-device-entry',
    resolveId(source) { return source === DEVICE_ENTRY ? DEVICE_ENTRY : null },
    load(id) {
      if (id !== DEVICE_ENTRY) return null
      return [
        "import { main } from './agent/cli/device-main.ts'",
        'process.exitCode = await main(process.argv.slice(2))',
      ].join('\n')
    },
  }
}

/*
 * Stand-ins kin-core carries instead of what agent/ carries on Node. Each is a plain function whose source becomes a
 * virtual module (so Node loads and parses it with this file, and tests call it directly); test/footprint/
 * cbor-lite.test.ts and the QuickJS tests hold them to what they replace.
 */

/**
 * A UTF-8 encoder with the results of the WHATWG TextEncoder (lone surrogates become U+FFFD). The agent's utf8()
 * calls TextEncoder, a Web API that QuickJS and other small engines lack.
 */
export function utf8Encoder() {
  class TextEncoder {
    get encoding() { return 'utf-8' }
    encode(input = '') {
      const s = String(input), out = []
      for (let i = 0; i < s.length; i++) {
        let c = s.charCodeAt(i)
        if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
          const d = s.charCodeAt(i + 1)
          if (d >= 0xdc00 && d <= 0xdfff) { c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); i++ }
        }
        if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd
        if (c < 0x80) out.push(c)
        else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63))
        else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63))
        else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63))
      }
      return new Uint8Array(out)
    }
  }
  return { TextEncoder }
}

/**
 * The part of cbor-x that agent/codec/cbor.ts uses (`new Encoder(o).encode(v)`, `new Decoder(o).decode(bytes)`), in
 * 3 KB instead of 30 KB: parsing and compiling cbor-x costs QuickJS about 300 KiB of heap at load. The encoder
 * writes what cbor.ts hands it (unsigned integers, byte and text strings, arrays, booleans, null) in the shortest
 * form, as cbor-x does. The decoder reads every well-formed item (RFC 8949 §3) the way cbor-x does where cbor.ts
 * could tell the difference: maps come back as Map, floats as numbers, indefinite-length arrays and maps read, so
 * that cbor.ts refuses them by its own checks (DECODE_FIELD, DECODE_SHAPE, DECODE_NONCANONICAL); indefinite-length
 * strings, simple values (cbor-x's "packed values") and bytes that are no CBOR item throw (DECODE_CBOR); trailing
 * bytes throw cbor-x's own message, which cbor.ts maps to DECODE_TRAILING. Tags other than 55799 come back as
 * { tag, value } (DECODE_FIELD), where cbor-x gives some tags meanings of its own, and cbor-x reads some invalid
 * UTF-8 with errors of its own: for such input the two may refuse with different codes. Both refuse it.
 */
export function cborLite(TextEncoder) {
  const MAX_DEPTH = 64
  // A break (0xff) where no indefinite-length item is open: a value of no kind kinship knows, as in cbor-x.
  const BREAK = Object.freeze({ break: true })
  const utf8 = new TextEncoder()

  // UTF-8 as the WHATWG decoder reads it (RFC 3629 §4): an invalid sequence becomes U+FFFD, so the text never
  // re-encodes to the same bytes and cbor.ts refuses it as not canonical.
  function utf8Decode(bytes) {
    let out = '', i = 0
    while (i < bytes.length) {
      const b = bytes[i]
      const need = b < 0x80 ? 0 : b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : -1
      let cp = need === 0 ? b : need === 1 ? b & 0x1f : need === 2 ? b & 0x0f : b & 0x07, j = 1
      for (; need > 0 && j <= need && i + j < bytes.length && (bytes[i + j] & 0xc0) === 0x80; j++) cp = (cp << 6) | (bytes[i + j] & 0x3f)
      const min = [0, 0x80, 0x800, 0x10000][need]
      if (need < 0 || j <= need || cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) { out += '\ufffd'; i += Math.max(1, j - 1); continue }
      out += String.fromCodePoint(cp)
      i += need + 1
    }
    return out
  }

  function half(bits) {
    const exp = (bits >> 10) & 0x1f, mant = bits & 0x3ff
    const v = exp === 0 ? mant * 2 ** -24 : exp === 31 ? (mant === 0 ? Infinity : NaN) : (mant + 1024) * 2 ** (exp - 25)
    return bits & 0x8000 ? -v : v
  }

  // The reader is an object with methods, not closures made per call: recursive closures would form reference
  // cycles that only QuickJS's cycle collector frees, and memory would pile up between its runs.
  class Reader {
    constructor(bytes) {
      this.bytes = bytes
      this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      this.pos = 0
    }
    need(n) { if (this.pos + n > this.bytes.length) throw new Error('Unexpected end of CBOR data') }
    argument(info) {
      if (info < 24) return info
      let v
      if (info === 24) { this.need(1); v = this.bytes[this.pos]; this.pos += 1 }
      else if (info === 25) { this.need(2); v = this.view.getUint16(this.pos); this.pos += 2 }
      else if (info === 26) { this.need(4); v = this.view.getUint32(this.pos); this.pos += 4 }
      else if (info === 27) { this.need(8); v = this.view.getUint32(this.pos) * 2 ** 32 + this.view.getUint32(this.pos + 4); this.pos += 8 }
      else throw new Error(`Invalid additional information ${info}`)
      return v
    }
    simple(info) {
      if (info === 20) return false
      if (info === 21) return true
      if (info === 22) return null
      if (info === 23) return undefined
      let v
      if (info === 25) { this.need(2); v = half(this.view.getUint16(this.pos)); this.pos += 2 }
      else if (info === 26) { this.need(4); v = this.view.getFloat32(this.pos); this.pos += 4 }
      else if (info === 27) { this.need(8); v = this.view.getFloat64(this.pos); this.pos += 8 }
      else if (info < 25) { if (info === 24) this.need(1); throw new Error('No packed values available') }
      else throw new Error(`Invalid additional information ${info}`)
      return v
    }
    indefinite(major, depth) {
      if (major === 2 || major === 3) throw new Error('Indefinite length not supported for byte or text strings')
      if (major === 7) return BREAK
      if (major !== 4 && major !== 5) throw new Error(`Invalid indefinite length for major type ${major}`)
      const items = []
      for (;;) {
        this.need(1)
        if (this.bytes[this.pos] === 0xff) { this.pos++; break }
        items.push(this.item(depth + 1))
      }
      if (major === 4) return items
      if (items.length % 2 !== 0) throw new Error('Odd number of items in an indefinite-length map')
      const map = new Map()
      for (let i = 0; i < items.length; i += 2) map.set(items[i], items[i + 1])
      return map
    }
    item(depth) {
      if (depth > MAX_DEPTH) throw new Error('CBOR nested too deeply')
      this.need(1)
      const first = this.bytes[this.pos++], major = first >> 5, info = first & 0x1f
      if (info === 31) return this.indefinite(major, depth)
      if (major === 7) return this.simple(info)
      const n = this.argument(info)
      if (major === 0) return n
      if (major === 1) return -1 - n
      if (major === 2 || major === 3) {
        this.need(n)
        const start = this.pos
        this.pos += n
        return major === 2 ? this.bytes.slice(start, this.pos) : utf8Decode(this.bytes.subarray(start, this.pos))
      }
      if (major === 4) {
        const items = []
        for (let i = 0; i < n; i++) items.push(this.item(depth + 1))
        return items
      }
      if (major === 5) {
        const map = new Map()
        for (let i = 0; i < n; i++) { const k = this.item(depth + 1); map.set(k, this.item(depth + 1)) }
        return map
      }
      const value = this.item(depth + 1)
      // RFC 8949 §3.4.6: the self-described CBOR tag marks, it does not change, what it wraps.
      return n === 55799 ? value : { tag: n, value }
    }
  }

  class Writer {
    constructor() { this.out = [] }
    head(major, n) {
      const m = major << 5, out = this.out
      if (n < 24) out.push(m | n)
      else if (n < 0x100) out.push(m | 24, n)
      else if (n < 0x10000) out.push(m | 25, n >> 8, n & 255)
      else out.push(m | 26, (n >>> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255)
    }
    bytes(major, b) {
      this.head(major, b.length)
      for (let i = 0; i < b.length; i++) this.out.push(b[i])
    }
    write(v) {
      if (typeof v === 'number') this.head(0, v)
      else if (typeof v === 'string') this.bytes(3, utf8.encode(v))
      else if (v instanceof Uint8Array) this.bytes(2, v)
      else if (Array.isArray(v)) { this.head(4, v.length); for (let i = 0; i < v.length; i++) this.write(v[i]) }
      else if (v === false) this.out.push(0xf4)
      else if (v === true) this.out.push(0xf5)
      else if (v === null) this.out.push(0xf6)
      else throw new TypeError(`kin-core's CBOR encoder writes no ${typeof v}`)
    }
  }

  class Decoder {
    decode(bytes) {
      const reader = new Reader(bytes)
      const value = reader.item(0)
      if (reader.pos !== bytes.length) throw new Error('Data read, but end of buffer not reached')
      return value
    }
  }

  class Encoder {
    encode(value) {
      const writer = new Writer()
      writer.write(value)
      return new Uint8Array(writer.out)
    }
  }

  return { Encoder, Decoder }
}

// A virtual module exporting what `factory(...args)` returns; `imports` are import lines the call's arguments need.
function virtualModule(factory, names, imports = [], args = []) {
  return `${imports.join('\n')}\nconst { ${names.join(', ')} } = (${factory.toString()})(${args.join(', ')});\nexport { ${names.join(', ')} };\n`
}

const TEXT_ENCODER = '\0kin-core-text-encoder'
const CBOR_LITE = '\0kin-core-cbor'
function standIns() {
  return {
    name: 'kin-core-stand-ins',
    resolveId(source) {
      if (source === TEXT_ENCODER) return TEXT_ENCODER
      if (source === 'cbor-x' || source === CBOR_LITE) return CBOR_LITE
      return null
    },
    load(id) {
      if (id === TEXT_ENCODER) return virtualModule(utf8Encoder, ['TextEncoder'])
      if (id === CBOR_LITE) return virtualModule(cborLite, ['Encoder', 'Decoder'], [`import { TextEncoder } from '${TEXT_ENCODER}'`], ['TextEncoder'])
      return null
    },
    transform(code, id) {
      if (id.includes('/node_modules/') || id.startsWith('\0') || !/\bnew TextEncoder\(/.test(code)) return null
      return { code: `import { TextEncoder } from '${TEXT_ENCODER}';\n${code}`, map: null }
    },
  }
}

// node-forge enters kin-core's module graph only through agent/pki files whose forge-using exports kin-core never
// calls (DeviceCertificate, the forge RSA path); tree-shaking drops them. Parsing forge's 900 KiB of CommonJS only to
// drop it costs most of the build's time, so it is replaced by an empty stand-in, which the `rendered` rule above
// still catches should anything that kin-core runs ever use it.
const FORGE_STUB = '\0node-forge (not in kin-core)'
function forgeStub() {
  return {
    name: 'kin-core-forge-stub',
    resolveId(source) { return source === 'node-forge' || source.startsWith('node-forge/') ? { id: FORGE_STUB, moduleSideEffects: false } : null },
    load(id) { return id === FORGE_STUB ? 'export default undefined' : null },
  }
}

function groupOf(id) {
  // Plugins mark helper modules with \0 and ?query suffixes; what counts is the file behind them.
  const file = id.replace(/^\0/, '').replace(/\?.*$/, '')
  if (!file.includes('/')) return `(virtual) ${file}`
  const rel = file.replace(/^.*?\/node_modules\//, 'node_modules/').replace(process.cwd() + '/', '')
  const pkg = /^node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(rel)
  if (pkg !== null) return pkg[1]
  const folder = /^([^/]+\/[^/]+)\//.exec(rel)
  return folder !== null ? folder[1] : rel
}

// Prints and records sizes after minification: the bytes a device stores, the bytes a transfer takes, and what
// each package or project folder contributes (rendered bytes after tree-shaking, before minification).
function sizeReport() {
  return {
    name: 'kin-size-report',
    generateBundle(_options, bundle) {
      for (const chunk of Object.values(bundle)) {
        if (chunk.type !== 'chunk') continue
        const code = Buffer.from(chunk.code, 'utf8')
        const groups = new Map()
        const modules = []
        for (const [id, m] of Object.entries(chunk.modules)) {
          if (m.renderedLength === 0) continue
          const group = groupOf(id)
          groups.set(group, (groups.get(group) ?? 0) + m.renderedLength)
          modules.push({ id: id.startsWith('\0') ? id.slice(1) : id.replace(process.cwd() + '/', ''), rendered: m.renderedLength })
        }
        const rendered = [...groups.values()].reduce((a, b) => a + b, 0)
        const report = {
          file: chunk.fileName,
          minified: code.length,
          gzipped: gzipSync(code, { level: 9 }).length,
          budget: BUDGETS[chunk.fileName],
          rendered,
          groups: [...groups].map(([name, bytes]) => ({ name, rendered: bytes, share: bytes / rendered })).sort((a, b) => b.rendered - a.rendered),
          modules: modules.sort((a, b) => b.rendered - a.rendered),
        }
        this.emitFile({ type: 'asset', fileName: `${chunk.fileName}.sizes.json`, source: JSON.stringify(report, null, 2) + '\n' })
        if (process.env.KIN_BUILD_QUIET !== '1') {
          const kib = n => `${(n / 1024).toFixed(1)} KiB`
          const lines = [`${chunk.fileName}: ${kib(report.minified)} minified, ${kib(report.gzipped)} gzipped` +
            (report.budget ? ` (budget ${kib(report.budget.minified)} / ${kib(report.budget.gzipped)})` : '')]
          for (const g of report.groups.slice(0, 12)) lines.push(`  ${(g.share * 100).toFixed(1).padStart(5)}%  ${kib(g.rendered).padStart(10)}  ${g.name}`)
          process.stdout.write(lines.join('\n') + '\n')
        }
      }
    },
  }
}

const minify = ecma => terser({ ecma, module: true, compress: { passes: 2 }, format: { comments: false } })

/** The `kin` CLI for a device with Node: agent, CLI and their npm dependencies in one file; Node built-ins stay external. */
const device = {
  input: DEVICE_ENTRY,
  external: isBuiltin,
  plugins: [
    deviceEntry(),
    forbid('kin-device.mjs', [
      { test: s => s.startsWith('.') && /(^|\/)(broker|sim)\//.test(s), why: 'L0 services and the simulator stay out of the device bundle; list only device commands in agent/cli/device-main.ts' },
      { test: s => s === 'aedes' || s.startsWith('aedes/'), why: 'the MQTT broker (aedes) runs on L0 only' },
      { test: s => s === 'tsx' || s.startsWith('tsx/'), why: 'the bundle runs on plain node, without tsx' },
    ]),
    typescript(ts.ScriptTarget.ES2022),
    nodeResolve({ preferBuiltins: true, exportConditions: ['node'] }),
    commonjs({ ignoreDynamicRequires: true }),
    json(),
    sizeReport(),
  ],
  output: {
    file: 'dist/kin-device.mjs',
    format: 'es',
    inlineDynamicImports: true,
    sourcemap: true,
    // CommonJS dependencies that call require() at run time (optional native add-ons) get Node's own.
    banner: "#!/usr/bin/env node\nimport { createRequire as __kinCreateRequire } from 'node:module';\nconst require = __kinCreateRequire(import.meta.url);",
    plugins: [minify(2022)],
  },
  onwarn(warning, warn) {
    // mqtt's dependencies use `this` at module level and circular requires; both are harmless once bundled.
    if (warning.code === 'THIS_IS_UNDEFINED' || warning.code === 'CIRCULAR_DEPENDENCY') return
    warn(warning)
  },
}

/** The verifier core for small engines: one ES module, standard ECMAScript only (see agent/core.ts for its API). */
const core = {
  input: 'agent/core.ts',
  plugins: [
    forbid('kin-core.js', [
      { selfContained: true, why: 'kin-core imports nothing: no Node built-in, no other module' },
      { rendered: /node-forge/, why: 'kin-core reads X.509 with its own DER path (agent/core.ts), not node-forge' },
      { rendered: /\/agent\/cli\/|\/firmware-shims\/node\//, why: 'kin-core holds no Node-only code' },
    ]),
    standIns(),
    forgeStub(),
    typescript(ts.ScriptTarget.ES2022),
    // `browser` swaps tweetnacl's and cbor-x's optional Node imports for empty modules (their package.json says so).
    nodeResolve({ browser: true, preferBuiltins: false, exportConditions: ['import', 'default'] }),
    commonjs(),
    sizeReport(),
  ],
  output: {
    file: 'dist/kin-core.js',
    format: 'es',
    sourcemap: false,
    plugins: [minify(2022)],
  },
}

export default [device, core]
