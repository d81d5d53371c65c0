// The two device bundles: sizes within the budgets docs/DEVICES.md states, kin-core self-contained and on standard
// ECMAScript globals only, kin-device.mjs running on plain node from a directory with no node_modules.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import ts from 'typescript'
import { ROOT, ensureBuilt, sizeReport, type BundleName } from './_build.ts'

const { BUDGETS } = (await import(pathToFileURL(join(ROOT, 'rollup.config.mjs')).href)) as {
  BUDGETS: Record<BundleName, { minified: number; gzipped: number }>
}

t.test('both bundles are within their budgets, and the build says what takes the room', async t => {
  for (const name of ['kin-core.js', 'kin-device.mjs'] as const) {
    const report = await sizeReport(name)
    const onDisk = readFileSync(await ensureBuilt(name))
    t.equal(report.minified, onDisk.length, `${name}: the report measures the file on disk`)
    t.same(report.budget, BUDGETS[name], `${name}: the report carries the budget`)
    t.ok(
      report.minified <= BUDGETS[name].minified,
      `${name}: ${report.minified} bytes minified, budget ${BUDGETS[name].minified}`,
    )
    t.ok(
      report.gzipped <= BUDGETS[name].gzipped,
      `${name}: ${report.gzipped} bytes gzipped, budget ${BUDGETS[name].gzipped}`,
    )
    const shares = report.groups.reduce((sum, g) => sum + g.share, 0)
    t.ok(
      Math.abs(shares - 1) < 1e-9 && report.groups.length > 3,
      `${name}: ${report.groups.length} groups account for the whole bundle`,
    )
  }
})

// ECMAScript 2024's global object (ECMA-262 §19) and Annex B's escape/unescape.
const ECMASCRIPT_GLOBALS = new Set([
  'globalThis',
  'Infinity',
  'NaN',
  'undefined',
  'eval',
  'isFinite',
  'isNaN',
  'parseFloat',
  'parseInt',
  'decodeURI',
  'decodeURIComponent',
  'encodeURI',
  'encodeURIComponent',
  'escape',
  'unescape',
  'AggregateError',
  'Array',
  'ArrayBuffer',
  'BigInt',
  'BigInt64Array',
  'BigUint64Array',
  'Boolean',
  'DataView',
  'Date',
  'Error',
  'EvalError',
  'FinalizationRegistry',
  'Float32Array',
  'Float64Array',
  'Function',
  'Int8Array',
  'Int16Array',
  'Int32Array',
  'Map',
  'Number',
  'Object',
  'Promise',
  'Proxy',
  'RangeError',
  'ReferenceError',
  'RegExp',
  'Set',
  'SharedArrayBuffer',
  'String',
  'Symbol',
  'SyntaxError',
  'TypeError',
  'Uint8Array',
  'Uint8ClampedArray',
  'Uint16Array',
  'Uint32Array',
  'URIError',
  'WeakMap',
  'WeakRef',
  'WeakSet',
  'Atomics',
  'JSON',
  'Math',
  'Reflect',
  'arguments',
])

// Non-standard names the bundled dependencies mention, each behind a guard on a path kin-core never takes.
const TOLERATED: Record<string, string> = {
  self: "tweetnacl's PRNG lookup, behind typeof self !== 'undefined'; kin-core only verifies",
}

function isDeclarationName(id: ts.Identifier): boolean {
  const p = id.parent
  return (
    (ts.isVariableDeclaration(p) ||
      ts.isFunctionDeclaration(p) ||
      ts.isFunctionExpression(p) ||
      ts.isClassDeclaration(p) ||
      ts.isClassExpression(p) ||
      ts.isParameter(p) ||
      ts.isBindingElement(p) ||
      ts.isImportSpecifier(p) ||
      ts.isImportClause(p) ||
      ts.isNamespaceImport(p) ||
      ts.isLabeledStatement(p)) &&
    (p as { name?: ts.Node }).name === id
  )
}

function isPropertyName(id: ts.Identifier): boolean {
  const p = id.parent
  if (ts.isPropertyAccessExpression(p) && p.name === id) return true
  if (
    (ts.isPropertyAssignment(p) ||
      ts.isMethodDeclaration(p) ||
      ts.isPropertyDeclaration(p) ||
      ts.isGetAccessorDeclaration(p) ||
      ts.isSetAccessorDeclaration(p) ||
      ts.isEnumMember(p)) &&
    p.name === id
  )
    return true
  if (ts.isBindingElement(p) && p.propertyName === id) return true
  // `export { local as exported }`: the exported name is no reference; `import { remote as local }`: the remote one is none.
  if (ts.isExportSpecifier(p) && p.propertyName !== undefined && p.name === id) return true
  if (ts.isImportSpecifier(p) && p.propertyName === id) return true
  if ((ts.isBreakStatement(p) || ts.isContinueStatement(p)) && p.label === id) return true
  if (ts.isMetaProperty(p)) return true
  return false
}

/** Names the file reads but declares nowhere: the globals it relies on. */
function freeNames(source: string): Set<string> {
  const file = ts.createSourceFile('kin-core.js', source, ts.ScriptTarget.ES2022, true, ts.ScriptKind.JS)
  const declared = new Set<string>()
  const used = new Set<string>()
  const visit = (node: ts.Node): void => {
    if (ts.isIdentifier(node)) {
      if (isDeclarationName(node)) declared.add(node.text)
      else if (!isPropertyName(node)) used.add(node.text)
    }
    ts.forEachChild(node, visit)
  }
  visit(file)
  return new Set([...used].filter(n => !declared.has(n)))
}

t.test('kin-core.js imports nothing and reads only ECMAScript globals', async t => {
  const source = readFileSync(await ensureBuilt('kin-core.js'), 'utf8')
  const file = ts.createSourceFile('kin-core.js', source, ts.ScriptTarget.ES2022, true, ts.ScriptKind.JS)
  let imports = 0,
    dynamicImports = 0,
    importMeta = 0
  const visit = (node: ts.Node): void => {
    if (
      ts.isImportDeclaration(node) ||
      ts.isImportEqualsDeclaration(node) ||
      (ts.isExportDeclaration(node) && node.moduleSpecifier !== undefined)
    )
      imports++
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) dynamicImports++
    if (ts.isMetaProperty(node) && node.keywordToken === ts.SyntaxKind.ImportKeyword) importMeta++
    ts.forEachChild(node, visit)
  }
  visit(file)
  t.equal(imports, 0, 'no static import or re-export')
  t.equal(dynamicImports, 0, 'no dynamic import()')
  t.equal(importMeta, 0, 'no import.meta')
  const free = [...freeNames(source)].filter(n => !ECMASCRIPT_GLOBALS.has(n)).sort()
  t.same(
    free.filter(n => TOLERATED[n] === undefined),
    [],
    `non-standard globals read: ${free.join(', ') || 'none'}`,
  )
  for (const n of free) t.comment(`tolerated ${n}: ${TOLERATED[n]}`)
  t.notOk(free.includes('require') || free.includes('process'), 'no require, no process')
  const exported =
    /export\s*\{([^}]*)\}\s*;?\s*$/
      .exec(source)?.[1]
      ?.split(',')
      .map(s =>
        s
          .trim()
          .split(/\s+as\s+/)
          .pop(),
      ) ?? []
  for (const api of [
    'verifyLedger',
    'verifyBundle',
    'combineBundles',
    'decide',
    'verifyCertificateChain',
    'verifyInclusion',
    'verifyConsistency',
    'decodeHead',
  ]) {
    t.ok(exported.includes(api), `exports ${api}`)
  }
})

t.test('the free-name scan finds a global when one is read', async t => {
  t.same([...freeNames('const a = 1; function f(b) { return a + b + Buffer.from(c) } export { f }')].sort(), [
    'Buffer',
    'c',
  ])
  t.same(
    [...freeNames('class K { m() { return this.x } } const o = { Buffer: 1 }; o.Buffer; export { K, o as process }')],
    [],
  )
})

t.test(
  'kin-device.mjs is the kin CLI on plain node, without node_modules, tsx, the broker or the simulator',
  async t => {
    const bundle = await ensureBuilt('kin-device.mjs')
    const report = await sizeReport('kin-device.mjs')
    for (const banned of [/(^|\/)node_modules\/aedes\//, /(^|\/)node_modules\/tsx\//, /^broker\//, /^sim\//]) {
      t.notOk(
        report.modules.some(m => banned.test(m.id)),
        `nothing from ${banned.source} in the bundle`,
      )
    }
    t.ok(
      report.groups.some(g => g.name === 'mqtt'),
      'mqtt.js is bundled',
    )
    t.notOk(
      report.modules.some(m => /(^|\/)node_modules\/node-forge\//.test(m.id)),
      'node-forge is not: Node builds X.509 natively',
    )

    // A home made by the TypeScript CLI (tsx), then verified by the bundle copied somewhere without node_modules.
    const dir = mkdtempSync(join(tmpdir(), 'kin-device-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const home = join(dir, 'l0')
    const init = spawnSync(
      process.execPath,
      [join(ROOT, 'bin/kin.mjs'), 'init', '--home', home, '--fleet', 'smith.home.arpa', '--json'],
      { encoding: 'utf8' },
    )
    t.equal(init.status, 0, init.stderr)
    const alone = join(dir, 'kin-device.mjs')
    copyFileSync(bundle, alone)
    const run = (...args: string[]) =>
      spawnSync(process.execPath, [alone, ...args], {
        cwd: dir,
        encoding: 'utf8',
        env: { PATH: process.env.PATH ?? '' },
      })

    const help = run('--help')
    t.equal(help.status, 0, help.stderr)
    for (const command of [
      'ledger verify',
      'ledger show',
      'ledger bundle',
      'invite',
      'enroll',
      'serve',
      'access',
      'check',
      'sync',
      'revoke',
    ]) {
      t.match(help.stdout, new RegExp(`\\n  ${command} `), `--help lists ${command}`)
    }
    for (const command of ['broker', 'init', 'sim house', 'sim attacks', 'sim fleet']) {
      t.notMatch(help.stdout, new RegExp(`\\n  ${command} `), `--help leaves out ${command} (L0 and the simulator)`)
    }

    const verified = run('ledger', 'verify', '--home', home, '--json')
    t.equal(verified.status, 0, verified.stderr)
    const out = JSON.parse(verified.stdout) as { ok: boolean; events: number; fleet: string }
    t.equal(out.ok, true)
    t.equal(out.fleet, 'smith.home.arpa')
    t.ok(out.events >= 2, `${out.events} events (genesis and L0's certificate)`)

    // One flipped byte inside the genesis signature: exit 1, the offset named.
    const ledgerPath = join(home, 'ledger.cbor')
    const ledger = readFileSync(ledgerPath)
    const genesisEnd = out.events > 0 ? ledger.indexOf(Buffer.from([0x58, 0x40])) : -1
    t.ok(genesisEnd > 0, 'found a 64-byte signature in the ledger file')
    ledger[genesisEnd + 10]! ^= 0x01
    writeFileSync(ledgerPath, ledger)
    const damaged = run('ledger', 'verify', '--home', home, '--json')
    t.equal(damaged.status, 1, damaged.stderr)
    t.match(JSON.parse(damaged.stdout), { ok: false, code: 'STORAGE_DAMAGED' })

    const unknown = run('broker', '--home', home)
    t.equal(unknown.status, 2, 'kin broker is not a device command')
    t.match(unknown.stderr, /unknown command/)
  },
)
