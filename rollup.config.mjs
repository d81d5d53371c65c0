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
// The stand-ins kin-core carries (a UTF-8 encoder, a small CBOR in place of cbor-x) live with the codec they stand in
// for; each function's source becomes a virtual module (standIns below).
import { cborLite, utf8Encoder } from './agent/codec/cbor-lite.js'

// kin-device.mjs measured 871.6 KiB minified and 252.8 KiB gzipped without node-forge (1,159 / 329 KiB with it).
const DEVICE_MINIFIED = 900 * 1024
const DEVICE_GZIPPED = 264 * 1024

/** Size budgets in bytes (minified, and gzipped at level 9); docs/DEVICES.md states and explains them. */
export const BUDGETS = {
  'kin-core.js': { minified: 150 * 1024, gzipped: 48 * 1024 },
  // Node builds X.509 natively (@peculiar/x509 on WebCrypto), so node-forge, for engines without WebCrypto, stays out
  // of this Node-only bundle (forgeAbsent below); the budget is what that measures plus a small margin.
  'kin-device.mjs': { minified: DEVICE_MINIFIED, gzipped: DEVICE_GZIPPED },
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
          target,
          module: ts.ModuleKind.ESNext,
          verbatimModuleSyntax: true,
          useDefineForClassFields: true,
          sourceMap: true,
          inlineSources: true,
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
        if (rule.test?.(source, importer))
          this.error(`${label}: ${rule.why} ("${source}" imported by ${importer ?? 'the entry'})`)
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
    resolveId(source) {
      return source === DEVICE_ENTRY ? DEVICE_ENTRY : null
    },
    load(id) {
      if (id !== DEVICE_ENTRY) return null
      return [
        "import { main } from './cli/device-main.ts'",
        "import { runToExit } from './cli/run-to-exit.ts'",
        'const argv = process.argv.slice(2)',
        'await runToExit(() => main(argv), argv)',
      ].join('\n')
    },
  }
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
      if (id === CBOR_LITE)
        return virtualModule(
          cborLite,
          ['Encoder', 'Decoder'],
          [`import { TextEncoder } from '${TEXT_ENCODER}'`],
          ['TextEncoder'],
        )
      return null
    },
    transform(code, id) {
      if (id.includes('/node_modules/') || id.startsWith('\0') || !/\bnew TextEncoder\(/.test(code)) return null
      return { code: `import { TextEncoder } from '${TEXT_ENCODER}';\n${code}`, map: null }
    },
  }
}

// The device bundle runs on Node, which has WebCrypto: agent/pki/builder.ts builds and signs natively there, and no
// other path a device command takes reaches node-forge. Its 890 KiB of CommonJS become a stand-in whose every call
// throws, so a path that did reach it would fail loudly rather than ship forge unseen (the `rendered` rule of the
// device build refuses forge's own files). Module-level reads such as `forge.pki` only see the stand-in.
const FORGE_ABSENT = '\0node-forge (not in kin-device)'
function forgeAbsent() {
  return {
    name: 'kin-device-forge-absent',
    resolveId(source) {
      return source === 'node-forge' || source.startsWith('node-forge/')
        ? { id: FORGE_ABSENT, moduleSideEffects: false }
        : null
    },
    load(id) {
      if (id !== FORGE_ABSENT) return null
      return [
        'const absent = new Proxy(function () {}, {',
        "  get: (_target, key) => (key === 'then' ? undefined : absent),",
        "  apply() { throw new Error('node-forge is not in kin-device.mjs: Node builds X.509 natively (agent/pki/builder.ts)') },",
        "  construct() { throw new Error('node-forge is not in kin-device.mjs: Node builds X.509 natively (agent/pki/builder.ts)') },",
        '})',
        'export default absent',
      ].join('\n')
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
    resolveId(source) {
      return source === 'node-forge' || source.startsWith('node-forge/')
        ? { id: FORGE_STUB, moduleSideEffects: false }
        : null
    },
    load(id) {
      return id === FORGE_STUB ? 'export default undefined' : null
    },
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
          modules.push({
            id: id.startsWith('\0') ? id.slice(1) : id.replace(process.cwd() + '/', ''),
            rendered: m.renderedLength,
          })
        }
        const rendered = [...groups.values()].reduce((a, b) => a + b, 0)
        const report = {
          file: chunk.fileName,
          minified: code.length,
          gzipped: gzipSync(code, { level: 9 }).length,
          budget: BUDGETS[chunk.fileName],
          rendered,
          groups: [...groups]
            .map(([name, bytes]) => ({ name, rendered: bytes, share: bytes / rendered }))
            .sort((a, b) => b.rendered - a.rendered),
          modules: modules.sort((a, b) => b.rendered - a.rendered),
        }
        this.emitFile({
          type: 'asset',
          fileName: `${chunk.fileName}.sizes.json`,
          source: JSON.stringify(report, null, 2) + '\n',
        })
        if (process.env.KIN_BUILD_QUIET !== '1') {
          const kib = n => `${(n / 1024).toFixed(1)} KiB`
          const lines = [
            `${chunk.fileName}: ${kib(report.minified)} minified, ${kib(report.gzipped)} gzipped` +
              (report.budget ? ` (budget ${kib(report.budget.minified)} / ${kib(report.budget.gzipped)})` : ''),
          ]
          for (const g of report.groups.slice(0, 12))
            lines.push(`  ${(g.share * 100).toFixed(1).padStart(5)}%  ${kib(g.rendered).padStart(10)}  ${g.name}`)
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
      {
        test: s => s.startsWith('.') && /(^|\/)(broker|sim)\//.test(s),
        why: 'L0 services and the simulator stay out of the device bundle; list only device commands in cli/device-main.ts',
      },
      { test: s => s === 'aedes' || s.startsWith('aedes/'), why: 'the MQTT broker (aedes) runs on L0 only' },
      { test: s => s === 'tsx' || s.startsWith('tsx/'), why: 'the bundle runs on plain node, without tsx' },
      {
        rendered: /node_modules\/node-forge\//,
        why: 'Node builds X.509 natively; node-forge is for engines without WebCrypto',
      },
    ]),
    forgeAbsent(),
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
    banner:
      "#!/usr/bin/env node\nimport { createRequire as __kinCreateRequire } from 'node:module';\nconst require = __kinCreateRequire(import.meta.url);",
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
