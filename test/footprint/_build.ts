/** @module Builds dist/ for the footprint tests and bench when a bundle is missing or older than its sources (rollup, programmatically). */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { rollup, type OutputOptions, type RollupOptions } from 'rollup'

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** The bundles rollup.config.mjs makes. */
export type BundleName = 'kin-core.js' | 'kin-device.mjs'

/** Minified and gzipped bytes and their budget, as the build records them in dist/<file>.sizes.json. */
export interface SizeReport {
  file: string
  minified: number
  gzipped: number
  budget: { minified: number; gzipped: number }
  rendered: number
  groups: { name: string; rendered: number; share: number }[]
  modules: { id: string; rendered: number }[]
}

// Every source a bundle may hold; a change to any of them makes the bundle stale.
function newestSource(): number {
  let newest = 0
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (/\.(ts|js)$/.test(entry.name)) newest = Math.max(newest, statSync(path).mtimeMs)
    }
  }
  walk(join(ROOT, 'agent'))
  for (const room of ['firmware-shims', 'runtime', 'cli', 'broker', 'sim']) walk(join(ROOT, room))
  for (const file of ['rollup.config.mjs', 'package-lock.json'])
    newest = Math.max(newest, statSync(join(ROOT, file)).mtimeMs)
  return newest
}

/** Path of a bundle in dist/. */
export function distPath(name: BundleName): string {
  return join(ROOT, 'dist', name)
}

// Written next to the target, then renamed over it, so that parallel test files never read half a bundle.
function writeAtomically(path: string, content: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true })
  const tmp = `${path}.tmp-${process.pid}`
  writeFileSync(tmp, content)
  renameSync(tmp, path)
}

async function build(name: BundleName): Promise<void> {
  const url = pathToFileURL(join(ROOT, 'rollup.config.mjs')).href
  const configs = ((await import(url)) as { default: RollupOptions[] }).default
  const config = configs.find(c => (c.output as OutputOptions).file === `dist/${name}`)
  if (config === undefined) throw new Error(`rollup.config.mjs builds no dist/${name}`)
  const cwd = process.cwd()
  process.chdir(ROOT)
  const previousQuiet = process.env.KIN_BUILD_QUIET
  process.env.KIN_BUILD_QUIET = '1'
  try {
    const bundle = await rollup({ ...config, onwarn: () => {} })
    const { output } = await bundle.generate(config.output as OutputOptions)
    await bundle.close()
    for (const item of output) {
      writeAtomically(join(ROOT, 'dist', item.fileName), item.type === 'chunk' ? item.code : item.source)
      if (item.type === 'chunk' && item.map !== null)
        writeAtomically(join(ROOT, 'dist', `${item.fileName}.map`), item.map.toString())
    }
  } finally {
    process.chdir(cwd)
    if (previousQuiet === undefined) delete process.env.KIN_BUILD_QUIET
    else process.env.KIN_BUILD_QUIET = previousQuiet
  }
}

/** Builds `name` when it is missing or older than any source; returns its path. */
export async function ensureBuilt(name: BundleName): Promise<string> {
  const path = distPath(name)
  const sizes = `${path}.sizes.json`
  if (!existsSync(path) || !existsSync(sizes) || statSync(path).mtimeMs < newestSource()) await build(name)
  return path
}

/** The size report the build wrote for `name` (building it first if needed). */
export async function sizeReport(name: BundleName): Promise<SizeReport> {
  const path = await ensureBuilt(name)
  return JSON.parse(readFileSync(`${path}.sizes.json`, 'utf8')) as SizeReport
}
