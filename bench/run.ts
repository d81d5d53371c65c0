/** @module `npm run bench`: runs every bench/*.bench.ts and prints one JSON line per measurement. */
import { readdirSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { join } from 'node:path'

const dir = fileURLToPath(new URL('.', import.meta.url))
const only = process.argv.slice(2)
const files = readdirSync(dir)
  .filter(f => f.endsWith('.bench.ts'))
  .filter(f => only.length === 0 || only.some(o => f.startsWith(o)))
  .sort()

function emit(row: object): void {
  process.stdout.write(JSON.stringify({ ...row, node: process.version }) + '\n')
}

for (const f of files) {
  const mod = (await import(pathToFileURL(join(dir, f)).href)) as {
    run?: (emit: (row: object) => void) => Promise<void>
  }
  if (typeof mod.run !== 'function') continue
  const started = performance.now()
  try {
    await mod.run(emit)
  } catch (err) {
    emit({ bench: f, error: (err as Error).message })
    process.exitCode = 1
  }
  process.stderr.write(`bench ${f}: ${((performance.now() - started) / 1000).toFixed(1)} s\n`)
}
