// The Espruino-target sources (firmware-shims/espruino/*.js; no Espruino bundle is built, they are uploaded as they are)
// parsed with the TypeScript compiler and held to the language Espruino runs (espruino.com/Features).
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from './_build.ts'
import { espruinoViolations } from './_espruino-subset.ts'

const DIR = join(ROOT, 'firmware-shims/espruino')
const files = readdirSync(DIR)
  .filter(f => f.endsWith('.js'))
  .sort()

t.test('the Espruino shims are all there', async t => {
  t.same(files, ['agent.js', 'clock.js', 'crypto.js', 'ledger.js', 'storage.js', 'transport.js', 'verdict.js'])
})

for (const name of files) {
  t.test(`${name} uses only what Espruino runs`, async t => {
    const source = readFileSync(join(DIR, name), 'utf8')
    const found = espruinoViolations(name, source)
    t.same(found, [], found.map(v => `${name}:${v.line} ${v.rule}: ${v.text}`).join('\n') || 'no violations')
    t.ok(source.includes('exports.'), 'exports through `exports`, as Espruino modules do')
  })
}

// Each rule has to be able to fire, or an empty list above would prove nothing.
t.test('the checker catches each construct it is meant to catch', async t => {
  const cases: [string, string][] = [
    ['let/const (treated as var)', 'let a = 1;'],
    ['let/const (treated as var)', 'const a = 1;'],
    ['default parameter value', 'function f(a) {} function g(a = 1) { return a; }'],
    ['rest parameter', 'function f(...a) { return a; }'],
    ['spread', 'var a = [1]; var b = [0].concat([...a]);'],
    ['spread', 'var o = {}; var p = { ...o };'],
    ['destructuring', 'var { a } = {};'],
    ['destructuring', 'var a; [a] = [1];'],
    ['shorthand property', 'var a = 1; var o = { a };'],
    ['computed property name', 'var k = "x"; var o = { [k]: 1 };'],
    ['method shorthand in an object literal', 'var o = { m() { return 1; } };'],
    ['ES module syntax', 'import x from "y";'],
    ['ES module syntax', 'export function f() {}'],
    ['async function', 'async function f() {}'],
    ['await', 'async function f() { await 1; }'],
    ['generator', 'function* g() { yield 1; }'],
    ['for...of (iterators)', 'var a = []; for (var x of a) {}'],
    ['label', 'outer: for (;;) { break outer; }'],
    ['tagged template', 'function tag() {} var s = tag`x`;'],
    ['class field or static block', 'class A { x = 1; }'],
    ['private name', 'class A { #x; }'],
    ['class inheritance from an expression', 'function m() { return Object; } class A extends m() {}'],
    ['optional chaining', 'var o = {}; var v = o?.a;'],
    ['nullish coalescing', 'var o = null; var v = o ?? 1;'],
    ['logical assignment', 'var o = 0; o ||= 1;'],
    ['exponent operator', 'var v = 2 ** 3;'],
    ['BigInt literal', 'var v = 1n;'],
    ['numeric separator', 'var v = 1_000;'],
    ['regular expression flag s, u, y or d', 'var r = /a/u;'],
    [
      'regular expression quantifier ? or {m,n} (Espruino matches them literally)',
      'var r = /^[A-Za-z0-9+\\/]*={0,2}$/;',
    ],
    ['regular expression quantifier ? or {m,n} (Espruino matches them literally)', 'var r = /^-?[0-9]+$/;'],
    ['regular expression quantifier ? or {m,n} (Espruino matches them literally)', 'var r = new RegExp("a{2}");'],
    ['multiline string literal', 'var s = "a\\\nb";'],
    ['strict mode', '"use strict";'],
    ['statement without a semicolon', 'var a = 1\nvar b = 2;'],
    ['missing global Map', 'var m = new Map();'],
    ['missing global BigInt', 'var b = BigInt(1);'],
    ['missing Object.freeze', 'var o = Object.freeze({});'],
    ['missing Number.isSafeInteger', 'var ok = Number.isSafeInteger(1);'],
    ['missing method .padStart()', 'var s = "1".padStart(2, "0");'],
    ['missing method .includes()', 'var s = [1].includes(1);'],
    ['function used before its declaration (no hoisting)', 'f(); function f() {}'],
    ['comment inside a function body', 'function f() {\n  // why\n  return 1;\n}'],
    ['comment inside a function body', 'var g = function () { return /* inline */ 1; };'],
  ]
  for (const [rule, snippet] of cases) {
    const found = espruinoViolations('case.js', snippet).map(v => v.rule)
    t.ok(found.includes(rule), `${rule}: ${JSON.stringify(snippet)} → ${found.join(', ') || 'nothing'}`)
  }
  t.same(
    espruinoViolations('class.js', 'var r = /^[?{}|]*$/; var e = /\\?\\{1\\}/;'),
    [],
    '"?" and braces inside a class or escaped are characters, and pass',
  )
  const clean =
    'var a = 1;\n/** outside */\nfunction f(b) {\n  var c = b + a;\n  return c;\n}\nf(2);\nvar s = `t${a}`;\nvar g = function (x) { return x * 2; };\nfor (var k in {}) {}\n'
  t.same(
    espruinoViolations('clean.js', clean),
    [],
    'plain ES5 with template literals and comments outside bodies passes',
  )
})
