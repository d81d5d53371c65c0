/**
 * @module The house's walls: the layout reads top-down — cli → sim → broker (L0's services) → runtime (Node) →
 * agent (the core) — no room imports a room above it, nothing under agent/ imports outside agent/ except pure npm
 * packages, and no source file takes part in an import loop.
 */
import t from 'tap'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { dirname, join, normalize } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
/** The rooms in order, lowest first: a room may import only rooms at or below its own rank. */
const RANK: Record<string, number> = { agent: 0, runtime: 1, broker: 2, sim: 3, cli: 4 }
const SOURCE = Object.keys(RANK)

const walk = (dir: string): string[] =>
  readdirSync(join(root, dir)).flatMap(name => {
    const path = join(dir, name)
    if (statSync(join(root, path)).isDirectory()) return walk(path)
    return /\.(ts|mjs|js)$/.test(name) ? [path] : []
  })

const SPEC = /(?:^|[^.\w])(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g
/** Every module specifier a file names in an import or export (static or dynamic), comments left out. */
const specifiers = (file: string): string[] => {
  const text = readFileSync(join(root, file), 'utf8').replace(/\/\*[\s\S]*?\*\/|^\s*\/\/.*$/gm, '')
  return [...text.matchAll(SPEC)].map(m => m[1]!)
}
const roomOf = (path: string): string => path.split('/')[0]!
const resolveIn = (file: string, spec: string): string => normalize(join(dirname(file), spec))

const files = SOURCE.flatMap(walk)
const edges = new Map<string, string[]>()
for (const file of files)
  edges.set(
    file,
    specifiers(file)
      .filter(s => s.startsWith('.'))
      .map(s => resolveIn(file, s)),
  )

t.test('nothing under agent/ imports outside agent/, nor a Node built-in', async t => {
  const builtins = new Set(builtinModules.flatMap(m => [m, `node:${m}`]))
  const outside: string[] = []
  const core = walk('agent')
  for (const file of core) {
    for (const spec of specifiers(file)) {
      if (spec.startsWith('.')) {
        const target = resolveIn(file, spec)
        if (roomOf(target) !== 'agent') outside.push(`${file} → ${target}`)
      } else if (builtins.has(spec) || spec.startsWith('node:')) outside.push(`${file} → ${spec}`)
    }
  }
  t.same(outside, [], 'every import of the core stays in the core or names an npm package')
  t.ok(core.length > 50, `and the walk saw the core (${core.length} files)`)
})

t.test('no room imports a room above it', async t => {
  const upward: string[] = []
  for (const [file, targets] of edges) {
    for (const target of targets) {
      const to = RANK[roomOf(target)]
      if (to !== undefined && to > RANK[roomOf(file)]!) upward.push(`${file} → ${target}`)
    }
  }
  t.same(upward, [], `each room imports only rooms below it (${SOURCE.join(' < ')})`)
})

t.test('no room imports the tests: what a test and the simulator share lives in the simulator', async t => {
  const intoTests = [...edges].flatMap(([file, targets]) =>
    targets.filter(target => roomOf(target) === 'test').map(target => `${file} → ${target}`),
  )
  t.same(intoTests, [], `none of ${SOURCE.join(', ')} imports test/`)
})

t.test('no source file takes part in an import loop', async t => {
  const state = new Map<string, 'open' | 'done'>()
  const loops: string[] = []
  const visit = (file: string, path: string[]): void => {
    state.set(file, 'open')
    for (const next of edges.get(file) ?? []) {
      if (!edges.has(next)) continue
      if (state.get(next) === 'open') loops.push([...path.slice(path.indexOf(next)), next].join(' → '))
      else if (state.get(next) === undefined) visit(next, [...path, next])
    }
    state.set(file, 'done')
  }
  for (const file of edges.keys()) if (!state.has(file)) visit(file, [file])
  t.same(loops, [], 'the import graph of agent, runtime, broker, sim and cli is acyclic')
})
