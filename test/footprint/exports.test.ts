/**
 * @module The package's exports map, as a user of the package reaches it: `kinship` and `kinship/core` are kin-core
 * (the verifier a program embeds), `kinship/device` is the device's `kin` as one file (run with node); all resolve
 * by the package's own name once `npm run build` made dist/, and nothing else of the package is importable.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { ROOT, ensureBuilt } from './_build.ts'

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string
  exports: Record<string, string>
}

t.test('kinship and kinship/core are kin-core, by the package name', async t => {
  await ensureBuilt('kin-core.js')
  t.equal(pkg.exports['./core'], './dist/kin-core.js', 'the map names the bundle rollup builds')
  for (const specifier of [pkg.name, `${pkg.name}/core`]) {
    const core = (await import(specifier)) as Record<string, unknown>
    for (const name of ['verifyLedger', 'verifyBundle', 'combineBundles', 'decide', 'decodeCbor', 'encodeCbor']) {
      t.type(core[name], 'function', `${specifier} exports ${name}`)
    }
  }
})

t.test("kinship/device is the device's kin: node runs it and it answers --help", async t => {
  await ensureBuilt('kin-device.mjs')
  const path = createRequire(join(ROOT, 'package.json')).resolve(`${pkg.name}/device`)
  t.equal(path, join(ROOT, 'dist', 'kin-device.mjs'), 'the name resolves to the device bundle')
  const run = spawnSync(process.execPath, [path, '--help'], { encoding: 'utf8', timeout: 120_000 })
  t.equal(run.status, 0, 'it exits 0')
  t.match(run.stdout, /^\s+access\s/m, 'and lists the device commands')
  t.notMatch(run.stdout, /^\s+broker\s/m, "but not L0's")
})

t.test('nothing else of the package can be imported by path', async t => {
  // Node's resolver says so in the error's code; a TypeScript loader in front of it may put it in the message instead.
  let refused = ''
  try {
    await import(`${pkg.name}/agent/core.ts`)
  } catch (e) {
    refused = `${(e as { code?: string }).code ?? ''} ${(e as Error).message}`
  }
  t.match(refused, /ERR_PACKAGE_PATH_NOT_EXPORTED/, 'sources stay private')
})
