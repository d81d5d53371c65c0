/**
 * @module The formatter's line: every tracked .ts, .mjs and .js file is as `prettier --write` leaves it
 * (`.prettierrc.json`: 120 columns, no semicolons, single quotes). Fix a failure with `npm run format`.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as prettier from 'prettier'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const tracked = execFileSync('git', ['ls-files', '-z', '*.ts', '*.mjs', '*.js'], { cwd: root, encoding: 'utf8' })
  .split('\0')
  .filter(Boolean)

t.test('every tracked source file is formatted', async t => {
  t.ok(tracked.length > 100, `the file list is the repository's (${tracked.length} files)`)
  const unformatted: string[] = []
  const unconfigured: string[] = []
  for (const file of tracked) {
    const filepath = join(root, file)
    const info = await prettier.getFileInfo(filepath, { ignorePath: join(root, '.prettierignore') })
    if (info.ignored) continue
    const options = await prettier.resolveConfig(filepath)
    if (!options) unconfigured.push(file)
    if (!(await prettier.check(readFileSync(filepath, 'utf8'), { ...options, filepath }))) unformatted.push(file)
  }
  t.same(unconfigured, [], 'every file is under .prettierrc.json')
  t.same(unformatted, [], 'run `npm run format` to format these files')
})

t.test('the check sees a badly formatted file', async t => {
  const filepath = join(root, 'agent', 'example.ts')
  const options = await prettier.resolveConfig(filepath)
  t.notOk(
    await prettier.check('const  x = {a:1};\n', { ...options, filepath }),
    'double space and semicolon are caught',
  )
  t.ok(await prettier.check('const x = { a: 1 }\n', { ...options, filepath }), 'the formatted form passes')
})
